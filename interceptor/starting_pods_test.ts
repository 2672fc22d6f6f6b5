import assert from "node:assert/strict";
import type { V1Pod } from "@kubernetes/client-node";
import { createLogger } from "../shared/log.ts";
import { MAX_PROBED_PER_NAMESPACE, type PodRead, StartingPods } from "./starting_pods.ts";

function readyPod(port: number): V1Pod {
  return {
    metadata: { name: "web-1", namespace: "ns", uid: "uid-1" },
    status: { podIP: "127.0.0.1", podIPs: [{ ip: "127.0.0.1" }] },
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

Deno.test("no held request, no probing; a pod read refused stops probing in its namespace, logged once", async () => {
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

Deno.test("only a busy target takes on new pods; a pod already probed keeps its loop", async () => {
  const a = app();
  const sp = new StartingPods({
    log: createLogger({ sink: () => {} }),
    getPod: () => Promise.resolve(readyPod(a.port)),
    wanted: () => true,
    onChange: () => {},
  });
  try {
    const ep = { ip: "127.0.0.1", port: a.port, pod: { namespace: "ns", name: "web-1" } };
    sp.update("ns/web:80", [ep], false);
    assert.equal(sp.active, 0, "an idle target starts no loop");
    sp.update("ns/web:80", [ep], true);
    assert.equal(sp.active, 1);
    sp.update("ns/web:80", [ep, { ...ep, port: a.port + 1 }], false);
    assert.equal(sp.active, 1, "kept, and the new address is not taken on while idle");
    a.state.ready = true;
    await until("the pod to pass", () => sp.passed("ns/web:80").length === 1);
  } finally {
    sp.close();
    await a.server.shutdown();
  }
});

Deno.test("a slice naming a pod that does not own the address, or another uid, is never probed", async () => {
  const a = app();
  a.state.ready = true;
  const lines: string[] = [];
  let pod = readyPod(a.port);
  const sp = new StartingPods({
    log: createLogger({ sink: (l) => lines.push(l) }),
    getPod: () => Promise.resolve(pod),
    wanted: () => true,
    onChange: () => {},
  });
  try {
    pod = { ...pod, status: { podIP: "10.9.9.9", podIPs: [{ ip: "10.9.9.9" }] } };
    sp.update("ns/web:80", [{
      ip: "127.0.0.1",
      port: a.port,
      pod: { namespace: "ns", name: "web-1" },
    }]);
    await until("the loop to end", () => sp.active === 0);
    assert.equal(a.state.probes, 0, "another pod's address");
    assert.equal(lines.filter((l) => l.includes("its pod does not have")).length, 1);
    pod = readyPod(a.port);
    sp.update("ns/web:80", []);
    sp.update("ns/web:80", [{
      ip: "127.0.0.1",
      port: a.port,
      pod: { namespace: "ns", name: "web-1", uid: "uid-of-an-older-pod" },
    }]);
    await until("the loop to end", () => sp.active === 0);
    assert.equal(a.state.probes, 0, "another pod of that name");
    assert.deepEqual(sp.passed("ns/web:80"), []);
  } finally {
    sp.close();
    await a.server.shutdown();
  }
});

Deno.test("a namespace whose pods cannot be read does not stop probing in others", async () => {
  const a = app();
  a.state.ready = true;
  const sp = new StartingPods({
    log: createLogger({ sink: () => {} }),
    getPod: (ns) => Promise.resolve(ns === "locked" ? "forbidden" : readyPod(a.port)),
    wanted: () => true,
    onChange: () => {},
  });
  try {
    sp.update("locked/x:80", [{
      ip: "127.0.0.2",
      port: a.port,
      pod: { namespace: "locked", name: "x-1" },
    }]);
    await until("the locked loop to end", () => sp.active === 0);
    sp.update("ns/web:80", [{
      ip: "127.0.0.1",
      port: a.port,
      pod: { namespace: "ns", name: "web-1" },
    }]);
    await until("the other namespace's pod to pass", () => sp.passed("ns/web:80").length === 1);
  } finally {
    sp.close();
    await a.server.shutdown();
  }
});

Deno.test("a pod that is not there yet is read with backoff, not every 100 ms", async () => {
  let reads = 0;
  const sp = new StartingPods({
    log: createLogger({ sink: () => {} }),
    getPod: () => {
      reads++;
      return Promise.resolve(null);
    },
    wanted: () => true,
    onChange: () => {},
  });
  try {
    sp.update("ns/web:80", [{ ip: "127.0.0.1", port: 1, pod: { namespace: "ns", name: "gone" } }]);
    await new Promise((r) => setTimeout(r, 1_600));
    // 100, 200, 400, 800 ms apart: at most 5 reads in 1.6 s (a slower machine reads fewer).
    assert.ok(reads >= 2 && reads <= 5, `${reads} reads`);
  } finally {
    sp.close();
  }
});

Deno.test("one namespace gets at most its share of the probe slots; a new uid at an address restarts", async () => {
  const reads: string[] = [];
  const sp = new StartingPods({
    log: createLogger({ sink: () => {} }),
    getPod: (ns, name) => {
      reads.push(`${ns}/${name}`);
      return Promise.resolve(null);
    },
    wanted: () => true,
    onChange: () => {},
  });
  try {
    const many = Array.from({ length: MAX_PROBED_PER_NAMESPACE + 5 }, (_, i) => ({
      ip: `10.0.0.${i + 1}`,
      port: 8080,
      pod: { namespace: "greedy", name: `p${i}` },
    }));
    sp.update("greedy/web:80", many);
    assert.equal(sp.active, MAX_PROBED_PER_NAMESPACE);
    sp.update("other/web:80", [{
      ip: "10.1.0.1",
      port: 8080,
      pod: { namespace: "other", name: "o" },
    }]);
    assert.equal(sp.active, MAX_PROBED_PER_NAMESPACE + 1, "another namespace still gets a slot");
    const ep = { ip: "10.2.0.1", port: 8080, pod: { namespace: "sts", name: "web-0", uid: "a" } };
    sp.update("sts/web:80", [ep]);
    const before = sp.active;
    sp.update("sts/web:80", [{ ...ep, pod: { ...ep.pod, uid: "b" } }]);
    // The old loop ends asynchronously once aborted.
    await until("the old loop to be replaced, not added to", () => sp.active === before);
    await until("the new pod to be read", () => reads.filter((r) => r === "sts/web-0").length >= 2);
  } finally {
    sp.close();
  }
});
