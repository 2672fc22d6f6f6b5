import assert from "node:assert/strict";
import { createLogger } from "../shared/log.ts";
import { parseQueueCounts, RouteStatusSchema } from "../shared/queue_counts.ts";
import { buildRoutingTable } from "../shared/routing_table.ts";
import type { QueueCounts } from "../shared/queue_counts.ts";
import { type AdminDeps, adminHandler } from "./admin.ts";

function deps(over: Partial<AdminDeps> = {}) {
  const table = buildRoutingTable([{
    metadata: { name: "app", namespace: "ns" },
    spec: { hosts: ["a.test"], scaleTargetRef: { name: "app", service: "app", port: 80 } },
  }]);
  const watchers = new Set<(c: QueueCounts) => void>();
  let pinged = 0;
  const d: AdminDeps & { watchers: typeof watchers; pinged: () => number } = {
    queueCounts: () => ({ "ns/app": { Concurrency: 2, RequestCount: 10 } }),
    watchQueue: (send) => {
      watchers.add(send);
      return () => watchers.delete(send);
    },
    routingTable: () => table,
    routingPing: () => {
      pinged++;
      return Promise.resolve(table);
    },
    routeStatus: () => ({
      routes: { "ns/app": { held: 1, readyPods: 0, pods: 1 } },
      coldStarts: [{
        route: "ns/app",
        target: "ns/app:80",
        heldAt: 1000,
        podSeenAt: 1000,
        outcome: "waiting",
        held: 1,
      }],
    }),
    deployments: () => ({
      "ns/app:80": {
        namespace: "ns",
        service: "app",
        port: 80,
        ready: ["10.0.0.1:8080"],
        notReady: 0,
        replicas: 1,
        routes: ["ns/app"],
      },
    }),
    ready: () => true,
    draining: () => false,
    metrics: () => Promise.resolve("interceptor_open_connections 0\n"),
    log: createLogger({ sink: () => {} }),
    watchers,
    pinged: () => pinged,
    ...over,
  };
  return d;
}

const req = (path: string, method = "GET") => new Request(`http://admin${path}`, { method });

Deno.test("admin: /queue answers in the Go add-on's format", async () => {
  const res = await adminHandler(deps())(req("/queue"));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/json");
  assert.deepEqual(parseQueueCounts(await res.text()), {
    "ns/app": { Concurrency: 2, RequestCount: 10 },
  });
});

Deno.test("admin: /queue/watch sends a snapshot, then changes as they happen", async () => {
  const d = deps();
  const stop = new AbortController();
  const res = await adminHandler({ ...d, signal: stop.signal })(req("/queue/watch"));
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const first = await reader.read();
  assert.deepEqual(JSON.parse(first.value!), { "ns/app": { Concurrency: 2, RequestCount: 10 } });
  for (const w of d.watchers) w({ "ns/app": { Concurrency: 0, RequestCount: 11 } });
  const second = await reader.read();
  assert.deepEqual(JSON.parse(second.value!), { "ns/app": { Concurrency: 0, RequestCount: 11 } });
  stop.abort();
  await reader.cancel();
  assert.equal(d.watchers.size, 0, "the watcher unsubscribes");
});

Deno.test("admin: /routing_table, /routing_ping (relists), /deployments", async () => {
  const d = deps();
  const h = adminHandler(d);
  const table = await (await h(req("/routing_table"))).json();
  assert.deepEqual(Object.keys(table.routes), ["ns/app"]);
  assert.deepEqual(table.routes["ns/app"].rules[0].hosts, ["a.test"]);
  assert.deepEqual(table.invalid, {});
  const pinged = await h(req("/routing_ping", "POST"));
  assert.equal(pinged.status, 200);
  assert.equal(d.pinged(), 1);
  const dep = await (await h(req("/deployments"))).json();
  assert.deepEqual(dep["ns/app:80"].ready, ["10.0.0.1:8080"]);
});

Deno.test("admin: /readyz is 503 before the first sync and while draining; /livez is 200", async () => {
  const notSynced = adminHandler(deps({ ready: () => false }));
  const r1 = await notSynced(req("/readyz"));
  assert.equal(r1.status, 503);
  assert.match(await r1.text(), /has not been synced/);
  const draining = adminHandler(deps({ draining: () => true }));
  const r2 = await draining(req("/readyz"));
  assert.equal(r2.status, 503);
  assert.match(await r2.text(), /shutting down/);
  assert.equal((await adminHandler(deps())(req("/readyz"))).status, 200);
  assert.equal((await notSynced(req("/livez"))).status, 200);
});

Deno.test("admin: /metrics is Prometheus text; unknown paths and methods are explained", async () => {
  const h = adminHandler(deps());
  const m = await h(req("/metrics"));
  assert.match(m.headers.get("content-type")!, /^text\/plain; version=0.0.4/);
  assert.equal(await m.text(), "interceptor_open_connections 0\n");
  const missing = await h(req("/nope"));
  assert.equal(missing.status, 404);
  assert.match(await missing.text(), /try one of \/queue/);
  const wrong = await h(req("/queue", "DELETE"));
  assert.equal(wrong.status, 405);
  assert.equal(wrong.headers.get("allow"), "GET, HEAD");
});

Deno.test("admin: a failing source is a 500 that says what failed, not a crash", async () => {
  const h = adminHandler(deps({ routingPing: () => Promise.reject(new Error("apiserver away")) }));
  const r = await h(req("/routing_ping"));
  assert.equal(r.status, 500);
  assert.match(await r.text(), /\/routing_ping failed: apiserver away/);
});

Deno.test("admin: /route_status answers held requests, pods and cold starts in the shared schema", async () => {
  const res = await adminHandler(deps())(req("/route_status"));
  assert.equal(res.status, 200);
  const body = RouteStatusSchema.parse(await res.json());
  assert.deepEqual(body.routes["ns/app"], { held: 1, readyPods: 0, pods: 1 });
  assert.equal(body.coldStarts[0]?.outcome, "waiting");
  assert.equal((await adminHandler(deps())(req("/route_status", "POST"))).status, 405);
});
