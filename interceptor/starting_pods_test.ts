import assert from "node:assert/strict";
import type { V1Pod } from "@kubernetes/client-node";
import { createLogger } from "../shared/log.ts";
import { type PodRead, StartingPods } from "./starting_pods.ts";

function readyPod(port: number): V1Pod {
  return {
    metadata: { name: "web-1", namespace: "ns" },
    spec: {
      containers: [{
        name: "app",
        image: "x",
        ports: [{ containerPort: port }],
        readinessProbe: { httpGet: { path: "/ready", port }, periodSeconds: 10 },
      }],
    },
  } as V1Pod;
}

async function until(what: string, fn: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** An app whose /ready answers 503 until `ready` is set, counting probes. */
function app() {
  const state = { ready: false, probes: 0 };
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    if (new URL(req.url).pathname === "/ready") state.probes++;
    return new Response(null, { status: state.ready ? 200 : 503 });
  });
  return { state, server, port: server.addr.port };
}

Deno.test("a starting pod becomes an early endpoint once its own readiness check passes", async () => {
  const a = app();
  const changes: string[] = [];
  const lines: string[] = [];
  const sp = new StartingPods({
    log: createLogger({ sink: (l) => lines.push(l) }),
    getPod: () => Promise.resolve(readyPod(a.port)),
    wanted: () => true,
    onChange: (k) => changes.push(k),
  });
  try {
    sp.update("ns/web:80", [{
      ip: "127.0.0.1",
      port: a.port,
      pod: { namespace: "ns", name: "web-1" },
    }]);
    await until("a few failing probes", () => a.state.probes >= 3);
    assert.deepEqual(sp.passed("ns/web:80"), [], "a failing probe is never early");
    assert.deepEqual(changes, []);
    a.state.ready = true;
    await until("the pod to pass", () => sp.passed("ns/web:80").length === 1);
    assert.deepEqual(sp.passed("ns/web:80"), [{ ip: "127.0.0.1", port: a.port }]);
    assert.deepEqual(changes, ["ns/web:80"]);
    // The kubelet's verdict takes over: no starting endpoints, probing stops.
    sp.update("ns/web:80", []);
    assert.deepEqual(sp.passed("ns/web:80"), []);
    assert.deepEqual(changes, ["ns/web:80", "ns/web:80"]);
    await until("the loop to end", () => sp.active === 0);
  } finally {
    sp.close();
    await a.server.shutdown();
  }
});

Deno.test("no held request, no probing; a pod read refused turns probing off, logged once", async () => {
  const a = app();
  a.state.ready = true;
  let wanted = false;
  const lines: string[] = [];
  let reads = 0;
  let answer: PodRead = readyPod(a.port);
  const sp = new StartingPods({
    log: createLogger({ sink: (l) => lines.push(l) }),
    getPod: () => {
      reads++;
      return Promise.resolve(answer);
    },
    wanted: () => wanted,
    onChange: () => {},
  });
  try {
    const ep = { ip: "127.0.0.1", port: a.port, pod: { namespace: "ns", name: "web-1" } };
    sp.update("ns/web:80", [ep]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(a.state.probes, 0);
    assert.equal(reads, 0);
    answer = "forbidden";
    wanted = true;
    await until("the loop to end", () => sp.active === 0);
    sp.update("ns/other:80", [{ ...ep, pod: { namespace: "ns", name: "other-1" } }]);
    assert.equal(sp.active, 0, "no new loops once pods cannot be read");
    assert.equal(a.state.probes, 0);
    assert.equal(lines.filter((l) => l.includes("cannot read pods")).length, 1);
  } finally {
    sp.close();
    await a.server.shutdown();
  }
});
