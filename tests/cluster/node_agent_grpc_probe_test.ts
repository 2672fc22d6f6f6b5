/**
 * The node agent's gRPC probe (GrpcProbeClients, what `probe.grpc` runs)
 * against a real grpc.health.v1.Health server: it passes only on SERVING for
 * the probe's service name, fails on NOT_FOUND, NOT_SERVING, a refused
 * connection and the probe's timeout, and asks "" when the probe names no
 * service.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { GrpcProbeClients } from "./node_agent.ts";
import { REPO_ROOT } from "./paths.ts";

type Status = "SERVING" | "NOT_SERVING";

/**
 * A health server on 127.0.0.1 (`port`, 0 = any): `statuses` by service
 * name, NOT_FOUND for any other; a service in `slowMs` answers that late.
 */
async function healthServer(
  statuses: Record<string, Status>,
  slowMs: Record<string, number> = {},
  port = 0,
) {
  const def = protoLoader.loadSync(`${REPO_ROOT}/proto/health.proto`, {
    keepCase: true,
    enums: String,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  const asked: string[] = [];
  const server = new grpc.Server();
  server.addService(pkg.grpc.health.v1.Health.service, {
    Check(
      call: grpc.ServerUnaryCall<{ service: string }, unknown>,
      cb: grpc.sendUnaryData<{ status: Status }>,
    ) {
      const service = call.request.service;
      asked.push(service);
      const answer = () => {
        const status = statuses[service];
        if (status) cb(null, { status });
        else cb({ code: grpc.status.NOT_FOUND, details: `unknown service "${service}"` });
      };
      const delay = slowMs[service];
      if (delay) setTimeout(answer, delay);
      else answer();
    },
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `127.0.0.1:${port}`,
      grpc.ServerCredentials.createInsecure(),
      (err, p) => err ? reject(err) : resolve(p),
    )
  );
  return { port: bound, asked, stop: () => server.forceShutdown() };
}

Deno.test({
  name: "node agent gRPC probe: Health/Check with the probe's service, SERVING only",
  // grpc-js keeps channel timers until its clients are closed.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const server = await healthServer(
      { liveness: "SERVING", "": "SERVING", draining: "NOT_SERVING" },
      { slow: 1_500 },
    );
    const probes = new GrpcProbeClients();
    try {
      const probe = (service: string, timeoutMs = 1_000) =>
        probes.check("pod-a", "127.0.0.1", server.port, service, timeoutMs);

      assert.equal(await probe("liveness"), true, "SERVING passes");
      assert.equal(await probe("readiness"), false, "NOT_FOUND (an unknown service) fails");
      assert.equal(await probe("draining"), false, "NOT_SERVING fails");
      assert.equal(await probe(""), true, "no service: the server's own status");
      assert.deepEqual(server.asked, ["liveness", "readiness", "draining", ""]);

      // The probe's timeout bounds the call: an answer after it fails the probe.
      const t0 = Date.now();
      assert.equal(await probe("slow", 300), false, "an answer after the timeout fails");
      const ms = Date.now() - t0;
      assert.ok(ms >= 250 && ms < 1_200, `the timeout (300 ms) bounded the probe: ${ms} ms`);

      // The same channel serves the next probes (one per pod address).
      assert.equal(await probe("liveness"), true);
    } finally {
      probes.closeAll();
      server.stop();
    }

    // Nothing listening: the probe fails, within its timeout.
    const closed = new GrpcProbeClients();
    try {
      const t0 = Date.now();
      assert.equal(await closed.check("pod-b", "127.0.0.1", server.port, "liveness", 1_000), false);
      assert.ok(Date.now() - t0 < 1_500, `a refused connection fails fast: ${Date.now() - t0} ms`);
    } finally {
      closed.closeAll();
    }
  },
});

Deno.test({
  name: "node agent gRPC probe: a restarted server on the same address is probed again",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const first = await healthServer({ liveness: "SERVING" });
    const probes = new GrpcProbeClients();
    let second: Awaited<ReturnType<typeof healthServer>> | undefined;
    try {
      assert.equal(await probes.check("pod", "127.0.0.1", first.port, "liveness", 1_000), true);
      first.stop();
      assert.equal(await probes.check("pod", "127.0.0.1", first.port, "liveness", 500), false);
      // A container restart: a new server on the same port.
      second = await healthServer({ liveness: "SERVING" }, {}, first.port);
      const deadline = Date.now() + 5_000;
      let ok = false;
      while (!ok && Date.now() < deadline) {
        ok = await probes.check("pod", "127.0.0.1", first.port, "liveness", 1_000);
        if (!ok) await new Promise((r) => setTimeout(r, 200));
      }
      assert.ok(ok, "the probe passes again within 5 s of the restart (reconnect backoff ≤ 1 s)");
    } finally {
      probes.closeAll();
      second?.stop();
    }
  },
});
