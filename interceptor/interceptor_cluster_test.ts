/**
 * The interceptor as a process against a real kube-apiserver: routes from
 * HTTPScaledObjects, endpoints from EndpointSlices (written by the test, as
 * the EndpointSlice controller would for a Deployment scaled 0 → 1), apps in
 * network namespaces the test creates.
 */
import assert from "node:assert/strict";
import { startCluster } from "../tests/cluster/mod.ts";
import type { KubeObject } from "../tests/cluster/mod.ts";
import { parseQueueCounts, watchQueueCounts } from "../shared/queue_counts.ts";
import {
  appObjects,
  type AppProcess,
  endpointSlice,
  Netns,
  startInterceptor,
} from "./cluster_testing.ts";
import { programSpecs } from "../build/programs.ts";
import * as grpc from "@grpc/grpc-js";
import {
  bidi,
  clientFor,
  clientStream,
  serverStream,
  unary,
} from "../tests/fixtures/grpc_client_testing.ts";
import { nodeRequests } from "./h2_testing.ts";

const GRPC_APP = new URL("../tests/fixtures/grpc_app.ts", import.meta.url).pathname;

type Obj = KubeObject;

Deno.test({
  name: "interceptor against a cluster",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await using cluster = await startCluster({ node: false, controllers: false });
  const ns = await cluster.createNamespace("icpt");
  await using netA = await Netns.create();
  await using netB = await Netns.create();
  await using netH2 = await Netns.create();
  await using netGrpc = await Netns.create();
  const [appA, appB, appH2, appGrpc] = await Promise.all([
    netA.startApp({ name: "a" }),
    netB.startApp({ name: "b" }),
    netH2.startApp({ name: "h2", h2c: true }),
    netGrpc.startApp({ name: "grpc", script: `${GRPC_APP}`, port: 8080 }),
  ]);

  const apply = (objs: unknown[]) => cluster.applyYaml(objs as Obj[], { namespace: ns });
  const scaleTo = (service: string, apps: AppProcess[], ready = true) =>
    apply([endpointSlice({
      namespace: ns,
      service,
      endpoints: apps.map((a) => ({ ip: a.ip, ready })),
    })]);

  // Routes: "a" (starts at zero endpoints), "slow" (short conditionWait), "fb" (fallback to b),
  // "ws" (path-routed, catch-all host), "h2" (appProtocol h2c), service "b" as fallback target.
  const a = appObjects({ namespace: ns, name: "a", spec: { hosts: ["a.test"] } });
  const slow = appObjects({
    namespace: ns,
    name: "slow",
    spec: { hosts: ["slow.test"], timeouts: { conditionWait: "1s" } },
  });
  const fb = appObjects({
    namespace: ns,
    name: "fb",
    spec: {
      hosts: ["fb.test"],
      coldStartTimeoutFailoverRef: { service: "b", port: 80, timeoutSeconds: 1 },
    },
  });
  const ws = appObjects({ namespace: ns, name: "ws", spec: { pathPrefixes: ["/ws"] } });
  const h2 = appObjects({
    namespace: ns,
    name: "h2",
    spec: { hosts: ["h2.test"] },
    appProtocol: "kubernetes.io/h2c",
  });
  const grpcApp = appObjects({
    namespace: ns,
    name: "grpc",
    spec: { hosts: ["grpc.test"] },
    appProtocol: "kubernetes.io/h2c",
  });
  const b = appObjects({ namespace: ns, name: "b" });
  await apply([
    grpcApp.service,
    grpcApp.httpso,
    a.service,
    a.httpso,
    slow.service,
    slow.httpso,
    fb.service,
    fb.httpso,
    ws.service,
    ws.httpso,
    h2.service,
    h2.httpso,
    b.service,
  ]);
  await scaleTo("a", []);
  await scaleTo("b", [appB]);
  await scaleTo("ws", [appA]);
  const grpcSlice = (ready: boolean) =>
    endpointSlice({
      namespace: ns,
      service: "grpc",
      endpoints: ready ? [{ ip: appGrpc.ip, ready: true }] : [],
      appProtocol: "kubernetes.io/h2c",
    });
  await apply([grpcSlice(false)]);
  await apply([endpointSlice({
    namespace: ns,
    service: "h2",
    endpoints: [{ ip: appH2.ip, ready: true }],
    appProtocol: "kubernetes.io/h2c",
  })]);

  await using ic = await startInterceptor({ kubeconfigPath: cluster.kubeconfigPath });
  const routeKeys = ["a", "slow", "fb", "ws", "h2", "grpc"].map((n) => `${ns}/${n}`);
  await cluster.waitFor(async () => {
    const table = await ic.adminJson<{ routes: Record<string, unknown> }>("/routing_table");
    return routeKeys.every((k) => k in table.routes);
  }, { what: "all routes in the interceptor's table" });
  await cluster.waitFor(async () => {
    const d = await ic.adminJson<Record<string, { ready: string[] }>>("/deployments");
    return d[`${ns}/b:80`]?.ready.length === 1 && d[`${ns}/h2:80`]?.ready.length === 1;
  }, { what: "endpoints of b and h2" });
  const queue = async () => parseQueueCounts(await (await ic.admin("/queue")).text());

  await t.step("a request to an app at zero replicas is held until it is scaled to 1", async () => {
    const watched: Array<Record<string, { Concurrency: number }>> = [];
    const stopWatch = new AbortController();
    const watching = watchQueueCounts(ic.adminUrl, (c) => watched.push(c), {
      signal: stopWatch.signal,
    }).catch(() => {});
    let answered = false;
    const pending = ic.request("a.test", "/hello").finally(() => (answered = true));
    await cluster.waitFor(async () => (await queue())[`${ns}/a`]?.Concurrency === 1, {
      what: "the request to be counted while held",
    });
    // The scaler learns about the held request at once from /queue/watch.
    await cluster.waitFor(() => watched.some((c) => c[`${ns}/a`]?.Concurrency === 1), {
      what: "a /queue/watch line for the activation",
    });
    // Held: nothing answered it while the app had no pod.
    assert.equal(answered, false, "answered before the app had a ready pod");
    await scaleTo("a", [appA]);
    const res = await pending;
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello from a");
    assert.equal(res.headers.get("x-keda-http-cold-start"), "true");
    await cluster.waitFor(async () => (await queue())[`${ns}/a`]?.Concurrency === 0, {
      what: "concurrency back to 0",
    });
    assert.equal((await queue())[`${ns}/a`]?.RequestCount, 1);
    stopWatch.abort();
    await watching;
    // Warm now: no cold start.
    const warm = await ic.request("a.test", "/hello");
    assert.equal(await warm.text(), "hello from a");
    assert.equal(warm.headers.get("x-keda-http-cold-start"), "false");
  });

  await t.step("readiness timeout → 504 saying the app did not become ready", async () => {
    await scaleTo("slow", []);
    const t0 = Date.now();
    const res = await ic.request("slow.test", "/");
    const body = await res.text();
    assert.equal(res.status, 504);
    assert.match(body, new RegExp(`${ns}/slow did not become ready within 1s`));
    assert.ok(Date.now() - t0 >= 950);
  });

  await t.step("the fallback Service answers after timeoutSeconds", async () => {
    const t0 = Date.now();
    const res = await ic.request("fb.test", "/hello");
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello from b");
    assert.ok(Date.now() - t0 >= 950);
  });

  await t.step("WebSocket echo", async () => {
    const sock = new WebSocket(`ws://127.0.0.1:${ic.proxyPort}/ws`);
    const got = await new Promise<string>((resolve, reject) => {
      sock.onopen = () => sock.send("ping");
      sock.onmessage = (e) => {
        resolve(String(e.data));
        sock.close();
      };
      sock.onerror = () => reject(new Error("websocket failed"));
    });
    assert.equal(got, "echo: ping");
    await new Promise((r) => (sock.readyState === WebSocket.CLOSED ? r(0) : (sock.onclose = r)));
  });

  await t.step("a 50 MB body streams both ways", async () => {
    const size = 50 * 1024 * 1024;
    const chunk = new Uint8Array(1024 * 1024);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) & 0xff;
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= size) return c.close();
        c.enqueue(chunk.slice());
        sent += chunk.length;
      },
    });
    const res = await ic.request("a.test", "/echo", { method: "POST", body });
    assert.equal(res.status, 200);
    let got = 0;
    let wrong = 0;
    for await (const part of res.body!) {
      for (let i = 0; i < part.length; i++) {
        if (part[i] !== (((got + i) % chunk.length) * 7 & 0xff)) wrong++;
      }
      got += part.length;
    }
    assert.equal(got, size);
    assert.equal(wrong, 0);
  });

  await t.step(
    "a client that hangs up cancels the app's request; counters return to 0",
    async () => {
      const before = await (await fetch(`http://${appA.ip}:${appA.port}/stats`)).json();
      const abort = new AbortController();
      const pending = ic.request("a.test", "/hang", { signal: abort.signal }).catch((e) => e);
      await cluster.waitFor(async () => (await queue())[`${ns}/a`]?.Concurrency === 1, {
        what: "the request in flight",
      });
      abort.abort();
      await pending;
      await cluster.waitFor(async () => (await queue())[`${ns}/a`]?.Concurrency === 0, {
        what: "concurrency back to 0",
      });
      await cluster.waitFor(async () => {
        const after = await (await fetch(`http://${appA.ip}:${appA.port}/stats`)).json();
        return after.aborted === before.aborted + 1;
      }, { what: "the app to see its request cancelled" });
      await cluster.waitFor(() => ic.logs().some((l) => l.includes('"status":499')), {
        what: "a 499 in the interceptor log",
      });
      const metrics = await (await ic.admin("/metrics")).text();
      assert.match(
        metrics,
        new RegExp(
          `interceptor_request_count_total\\{code="499",method="GET",route_name="a",route_namespace="${ns}"\\} 1`,
        ),
      );
    },
  );

  await t.step("h2c upstream when the Service port's appProtocol says so", async () => {
    const res = await ic.request("h2.test", "/json?x=1");
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.httpVersion, "2.0");
    assert.equal(body.path, "/json?x=1");
    assert.equal(body.headers["x-forwarded-for"], "127.0.0.1");
    const echo = await ic.request("h2.test", "/e", { method: "POST", body: "over h2c" });
    assert.equal(await echo.text(), "over h2c");
  });

  await t.step(
    "gRPC: the four call types, from zero replicas and warm, over h2c both ways",
    async () => {
      const c = clientFor(`127.0.0.1:${ic.proxyPort}`, "grpc.test");
      try {
        const cold = unary(c, { text: "cold" });
        await cluster.waitFor(async () => (await queue())[`${ns}/grpc`]?.Concurrency === 1, {
          what: "the gRPC call held at zero",
        });
        await apply([grpcSlice(true)]);
        const r = await cold;
        assert.equal(r.text, "unary:cold");
        assert.equal(r.authority, "grpc.test");
        assert.equal(
          (await serverStream(c, { text: "s", count: 3 })).map((x) => x.text).join(),
          "s#0,s#1,s#2",
        );
        assert.equal((await clientStream(c, ["a", "b"])).text, "a+b");
        assert.deepEqual(await bidi(c, ["x", "y"]), ["bidi:x", "bidi:y"]);
        await assert.rejects(
          unary(c, { text: "no", fail_code: grpc.status.NOT_FOUND }),
          (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND && e.details === "no",
        );
      } finally {
        c.close();
      }
      await cluster.waitFor(async () => (await queue())[`${ns}/grpc`]?.Concurrency === 0, {
        what: "gRPC concurrency back to 0",
      });
    },
  );

  await t.step(
    "HTTP/2 clients with prior knowledge, to an HTTP/1.1 app and to an h2c one",
    async () => {
      const results = await nodeRequests(`http://127.0.0.1:${ic.proxyPort}`, [
        { id: 1, headers: { ":path": "/json", ":authority": "h2.test" } },
        { id: 2, headers: { ":path": "/ws/x", ":authority": "any.test" } },
      ]);
      const byId = new Map(results.map((r) => [r.id, r]));
      assert.equal(byId.get(1)!.status, 200);
      assert.equal(JSON.parse(byId.get(1)!.body).httpVersion, "2.0");
      assert.equal(byId.get(2)!.status, 200);
    },
  );

  await t.step("admin endpoints answer as documented", async () => {
    const q = await queue();
    for (const k of routeKeys) assert.ok(k in q, `/queue lists ${k}`);
    assert.deepEqual(Object.keys(q[`${ns}/a`]!).sort(), ["Concurrency", "RequestCount"]);
    const table = await ic.adminJson<
      { routes: Record<string, { kind: string; rules: Array<{ hosts: string[] }> }> }
    >("/routing_table");
    assert.deepEqual(table.routes[`${ns}/a`]!.rules[0]!.hosts, ["a.test"]);
    assert.equal(table.routes[`${ns}/a`]!.kind, "HTTPScaledObject");
    // A new object shows up at once on /routing_ping (a fresh list).
    const extra = appObjects({ namespace: ns, name: "extra", spec: { hosts: ["extra.test"] } });
    await apply([extra.httpso]);
    const pinged = await (await ic.admin("/routing_ping", { method: "POST" })).json();
    assert.ok(`${ns}/extra` in pinged.routes);
    const d = await ic.adminJson<Record<string, { ready: string[]; replicas: number }>>(
      "/deployments",
    );
    assert.deepEqual(d[`${ns}/a:80`]!.ready, [`${appA.ip}:8080`]);
    assert.equal(d[`${ns}/a:80`]!.replicas, 1);
    const metrics = await (await ic.admin("/metrics")).text();
    assert.match(metrics, /# TYPE interceptor_request_count_total counter/);
    assert.match(
      metrics,
      new RegExp(
        `interceptor_request_count_total\\{code="200",method="GET",route_name="a",route_namespace="${ns}"\\} \\d+`,
      ),
    );
    assert.match(metrics, /# TYPE interceptor_request_duration_seconds histogram/);
    assert.match(
      metrics,
      new RegExp(`interceptor_request_concurrency\\{route_name="a",route_namespace="${ns}"\\} 0`),
    );
    assert.equal((await ic.admin("/livez")).status, 200);
    assert.equal((await ic.admin("/readyz")).status, 200);
    const missing = await ic.admin("/nope");
    assert.equal(missing.status, 404);
    assert.match(await missing.text(), /try one of/);
  });

  await t.step(
    "with its deployed V8 flags it gives memory back once quiet after startup",
    async () => {
      // The flags `deno task interceptor` and `deno compile` use (deno.json).
      const flags = programSpecs().find((p) => p.name === "interceptor")!.permissions
        .filter((f) => f === "--no-code-cache" || f.startsWith("--v8-flags="));
      await using deployed = await startInterceptor({
        kubeconfigPath: cluster.kubeconfigPath,
        env: { LOG_LEVEL: "debug", KEDA_HTTP_PROXY_WORKERS: "1" },
        denoFlags: flags,
      });
      let line: { heapMb: [number, number]; pauseMs: number } | undefined;
      await cluster.waitFor(() => {
        const found = deployed.logs().find((l) => l.includes('"memory given back"'));
        if (found) line = JSON.parse(found);
        return Promise.resolve(found !== undefined);
      }, { what: "the collection after startup", timeoutMs: 20_000 });
      const [before, after] = line!.heapMb;
      assert.ok(after < before, `the heap shrank: ${before} → ${after} MB`);
    },
  );

  await t.step("past the hold cap → 503 with Retry-After", async () => {
    await using capped = await startInterceptor({
      kubeconfigPath: cluster.kubeconfigPath,
      env: { KEDA_HTTP_MAX_HELD_REQUESTS: "2", KEDA_HTTP_PROXY_WORKERS: "1" },
    });
    await cluster.waitFor(async () => {
      const table = await capped.adminJson<{ routes: Record<string, unknown> }>("/routing_table");
      return `${ns}/slow` in table.routes;
    }, { what: "routes in the second interceptor" });
    const aborts = [new AbortController(), new AbortController()];
    const held = aborts.map((c) =>
      capped.request("slow.test", "/", { signal: c.signal }).catch((e) => e)
    );
    await cluster.waitFor(async () => {
      const q = parseQueueCounts(await (await capped.admin("/queue")).text());
      return q[`${ns}/slow`]?.Concurrency === 2;
    }, { what: "two held requests" });
    const res = await capped.request("slow.test", "/");
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("retry-after"), "2");
    assert.match(await res.text(), /too many requests are waiting/);
    for (const c of aborts) c.abort();
    await Promise.all(held);
    await cluster.waitFor(async () => {
      const q = parseQueueCounts(await (await capped.admin("/queue")).text());
      return q[`${ns}/slow`]?.Concurrency === 0;
    }, { what: "held requests released" });
  });

  await t.step("SIGTERM drains requests in flight, then exits", async () => {
    const draining = await startInterceptor({
      kubeconfigPath: cluster.kubeconfigPath,
      env: { KEDA_HTTP_SHUTDOWN_DELAY: "500ms", KEDA_HTTP_DRAIN_TIMEOUT: "10s" },
    });
    try {
      await cluster.waitFor(async () => {
        const table = await draining.adminJson<{ routes: Record<string, unknown> }>(
          "/routing_table",
        );
        return `${ns}/a` in table.routes;
      }, { what: "routes in the draining interceptor" });
      await cluster.waitFor(async () => {
        const d = await draining.adminJson<Record<string, { ready: string[] }>>("/deployments");
        return d[`${ns}/a:80`]?.ready.length === 1;
      }, { what: "endpoints in the draining interceptor" });
      const inflight = [1, 2, 3].map(() => draining.request("a.test", "/slow?ms=1500"));
      await cluster.waitFor(async () => {
        const q = parseQueueCounts(await (await draining.admin("/queue")).text());
        return q[`${ns}/a`]?.Concurrency === 3;
      }, { what: "three requests in flight" });
      draining.signal("SIGTERM");
      await cluster.waitFor(async () => (await draining.admin("/readyz")).status === 503, {
        what: "/readyz to fail while draining",
      });
      const results = await Promise.all(inflight);
      for (const r of results) {
        assert.equal(r.status, 200);
        assert.equal(await r.text(), "slow done after 1500 ms");
      }
      const status = await draining.exited();
      assert.equal(status.code, 0);
      assert.ok(draining.logs().some((l) => l.includes('"msg":"drained"')));
    } finally {
      await draining.stop();
    }
  });
});
