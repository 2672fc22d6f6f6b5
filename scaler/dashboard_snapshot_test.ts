import assert from "node:assert/strict";
import type { ColdStartRecord, RouteStatus } from "../shared/queue_counts.ts";
import { parseInterceptorRoute } from "../shared/interceptor_route.ts";
import { parseHTTPScaledObject } from "../shared/httpso.ts";
import { routeEntryOf, routeEntryOfRoute } from "../shared/routing_table.ts";
import {
  buildSnapshot,
  desiredReplicas,
  mergeColdStarts,
  type SnapshotInput,
} from "./dashboard_snapshot.ts";
import type { PodStatus } from "./queue_aggregator.ts";
import { httpsoObject, interceptorRouteObject } from "./testing/harness.ts";

const pod = (n: number): PodStatus => ({
  id: `uid-${n}`,
  name: `interceptor-${n}`,
  url: `http://10.0.0.${n}:9090`,
  ready: true,
  health: "ok",
  lastSeenAgeMs: 12.4,
  consecutiveFailures: 0,
});

const cold = (over: Partial<ColdStartRecord>): ColdStartRecord => ({
  route: "apps/shop",
  target: "apps/shop:8080",
  heldAt: 1000,
  outcome: "ready",
  held: 1,
  ...over,
});

function input(over: Partial<SnapshotInput> = {}): SnapshotInput {
  const shop = routeEntryOfRoute(parseInterceptorRoute(interceptorRouteObject("apps", "shop")));
  const web = routeEntryOf(
    parseHTTPScaledObject(
      httpsoObject("apps", "web", { replicas: { min: 1, max: 4 }, targetPendingRequests: 10 }),
    ),
  );
  return {
    now: 10_000,
    entries: new Map([[shop.key, shop], [web.key, web]]),
    invalid: new Map([["apps/broken", "spec.target: required"]]),
    totals: {
      "apps/shop": { Concurrency: 3, RequestCount: 9, RPS: 1.5 },
      "apps/web": { Concurrency: 95, RequestCount: 500, RPS: 20 },
    },
    scaling: new Map([
      ["apps/shop", {
        metrics: [{
          metricName: "http_shop_concurrency",
          type: "concurrency",
          value: 3,
          target: 2,
        }],
        active: true,
      }],
      ["apps/web", {
        metrics: [{ metricName: "http-apps_002Fweb", type: "concurrency", value: 95, target: 10 }],
        active: true,
      }],
    ]),
    pods: [pod(1), pod(2)],
    statuses: new Map(),
    ...over,
  };
}

Deno.test("desiredReplicas: KEDA's HPA rule, the largest ceil(value/target), within known bounds", () => {
  const m = (value: number, target: number) => ({
    metricName: "m",
    type: "concurrency",
    value,
    target,
  });
  assert.equal(desiredReplicas([m(0, 10)], null), 0);
  assert.equal(desiredReplicas([m(11, 10)], null), 2);
  assert.equal(desiredReplicas([m(11, 10), m(0.5, 0.1)], null), 5);
  assert.equal(desiredReplicas([m(95, 10)], { min: 1, max: 4 }), 4);
  assert.equal(desiredReplicas([m(0, 10)], { min: 1, max: 4 }), 1);
  assert.equal(desiredReplicas([], null), null);
});

Deno.test("buildSnapshot: held summed over interceptors, pods as the freshest one sees them", () => {
  const status = (held: number, readyPods: number, pods: number): RouteStatus => ({
    routes: { "apps/shop": { held, readyPods, pods } },
    coldStarts: [],
  });
  const s = buildSnapshot(input({
    statuses: new Map([
      ["uid-1", { status: status(1, 0, 1) }],
      ["uid-2", { status: status(2, 1, 1) }],
    ]),
  }));
  assert.deepEqual(s.routes.map((r) => r.key), ["apps/broken", "apps/shop", "apps/web"]);
  const [broken, shop, web] = s.routes;
  assert.equal(broken!.kind, "invalid");
  assert.equal(broken!.problem, "spec.target: required");
  assert.equal(shop!.kind, "InterceptorRoute");
  assert.deepEqual(shop!.rules, [{ hosts: ["shop.example.com"], paths: [], headers: [] }]);
  assert.equal(shop!.target, "shop:8080");
  assert.equal(shop!.inFlight, 3);
  assert.equal(shop!.held, 3);
  assert.equal(shop!.readyPods, 1);
  assert.equal(shop!.pods, 1);
  assert.equal(shop!.rps, 1.5);
  // No bounds known for an InterceptorRoute: they are in the user's ScaledObject.
  assert.equal(shop!.scaling.desired, 2);
  assert.equal(shop!.scaling.bounds, null);
  assert.equal(web!.kind, "HTTPScaledObject");
  assert.equal(web!.scaling.desired, 4);
  assert.deepEqual(web!.scaling.bounds, { min: 1, max: 4 });
  // No interceptor reported the route: unknown, not zero.
  assert.equal(web!.readyPods, null);
  assert.deepEqual(s.interceptors.map((i) => [i.name, i.status, i.lastSeenAgeMs]), [
    ["interceptor-1", "ok", 12],
    ["interceptor-2", "ok", 12],
  ]);
});

Deno.test("buildSnapshot: an interceptor whose /route_status failed says why and adds nothing", () => {
  const s = buildSnapshot(input({
    statuses: new Map([
      ["uid-1", {
        status: { routes: { "apps/shop": { held: 1, readyPods: 0, pods: 0 } }, coldStarts: [] },
      }],
      ["uid-2", { error: "no answer to /route_status within 1000 ms" }],
    ]),
  }));
  assert.equal(s.routes.find((r) => r.key === "apps/shop")!.held, 1);
  assert.equal(s.interceptors[1]!.status, "no answer to /route_status within 1000 ms");
});

Deno.test("mergeColdStarts: one cold start seen by two interceptors is one row", () => {
  const statuses = new Map([
    ["uid-1", {
      status: {
        routes: {},
        coldStarts: [cold({ heldAt: 1000, podSeenAt: 1500, readyAt: 3000, readyBy: "kubelet" })],
      },
    }],
    ["uid-2", {
      status: {
        routes: {},
        coldStarts: [
          // Held while the first was still waiting: the same cold start.
          cold({ heldAt: 1200, podSeenAt: 1400, readyAt: 3100, readyBy: "probe", held: 2 }),
          // After the release: a cold start of its own.
          cold({ heldAt: 8000, outcome: "waiting", held: 1 }),
          cold({
            route: "apps/other",
            target: "apps/other:80",
            heldAt: 500,
            endedAt: 900,
            outcome: "abandoned",
          }),
        ],
      },
    }],
  ]);
  const rows = mergeColdStarts({ now: 9000, pods: [pod(1), pod(2)], statuses });
  assert.deepEqual(rows.map((r) => [r.route, r.heldAt, r.outcome]), [
    ["apps/shop", 8000, "waiting"],
    ["apps/shop", 1000, "ready"],
    ["apps/other", 500, "abandoned"],
  ]);
  const [waiting, merged, abandoned] = rows;
  assert.equal(waiting!.durationMs, 1000);
  assert.deepEqual(waiting!.phases, { waitingForPodMs: 1000 });
  assert.deepEqual(merged!.interceptors, ["interceptor-1", "interceptor-2"]);
  assert.equal(merged!.held, 3);
  assert.equal(merged!.durationMs, 2100);
  assert.equal(merged!.readyBy, "probe");
  assert.deepEqual(merged!.phases, { waitingForPodMs: 400, podStartingMs: 1700 });
  assert.equal(abandoned!.durationMs, 400);
});

Deno.test("mergeColdStarts: keeps the newest ones only", () => {
  const coldStarts = Array.from(
    { length: 30 },
    (_, i) => cold({ heldAt: i * 100, readyAt: i * 100 + 10 }),
  );
  const rows = mergeColdStarts(
    {
      now: 5000,
      pods: [pod(1)],
      statuses: new Map([["uid-1", { status: { routes: {}, coldStarts } }]]),
    },
    5,
  );
  assert.deepEqual(rows.map((r) => r.heldAt), [2900, 2800, 2700, 2600, 2500]);
});
