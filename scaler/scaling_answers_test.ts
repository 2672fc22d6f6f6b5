import assert from "node:assert/strict";
import { HTTPScaledObjectIndex } from "./httpso_index.ts";
import { QueueAggregator } from "./queue_aggregator.ts";
import { InterceptorRouteIndex, rateConfigOf } from "./route_index.ts";
import { ScalerError, ScalingAnswers } from "./scaling_answers.ts";
import { httpsoObject, interceptorRouteObject } from "./testing/harness.ts";

function setup() {
  let now = 0;
  const store = new Map<string, unknown>([
    [
      "ns/rated",
      httpsoObject("ns", "rated", {
        scalingMetric: { requestRate: { targetValue: 5, window: "10s", granularity: "500ms" } },
      }),
    ],
    ["ns/plain", httpsoObject("ns", "plain")],
  ]);
  const index = new HTTPScaledObjectIndex(store);
  const aggregator = new QueueAggregator({
    staleTtlMs: 1000,
    now: () => now,
    rateConfigOf: (k) => index.rateConfigOf(k),
  });
  aggregator.setPods([{ id: "p", name: "p", url: "http://x", ready: true }]);
  const answers = new ScalingAnswers({
    lookup: (ns, name) => index.lookup(ns, name),
    aggregator,
    watchNamespace: "ns",
  });
  return { answers, aggregator, store, advance: (ms: number) => (now += ms), now: () => now };
}

const ref = (name: string, namespace = "ns") => ({
  name,
  namespace,
  scalerMetadata: { httpScaledObject: name },
});

Deno.test("a requestRate route is active while a request is held, before any rate exists", () => {
  const t = setup();
  const target = t.answers.resolve(ref("rated"));
  t.aggregator.applyPoll("p", t.now(), { "ns/rated": { Concurrency: 0, RequestCount: 0 } });
  assert.equal(t.answers.isActive(target), false);
  t.aggregator.applyWatch("p", { "ns/rated": { Concurrency: 1, RequestCount: 1 } }, false);
  assert.equal(t.answers.metricValues(target)[0]?.metricValue, 0);
  assert.equal(t.answers.isActive(target), true);
});

Deno.test("requestRate value is the ceil of the rate; the rate window comes from the HTTPScaledObject", () => {
  const t = setup();
  const target = t.answers.resolve(ref("rated"));
  t.aggregator.applyPoll("p", t.now(), { "ns/rated": { Concurrency: 0, RequestCount: 0 } });
  for (let i = 1; i <= 20; i++) {
    t.advance(500);
    t.aggregator.applyPoll("p", t.now(), { "ns/rated": { Concurrency: 0, RequestCount: 11 * i } });
  }
  // 22 req/s measured over the 10 s window → 22; 11 per 500ms is exact.
  assert.equal(t.answers.metricValues(target)[0]?.metricValue, 22);
  assert.deepEqual(t.answers.metricValues(target)[0], {
    metricName: "http-ns_002Frated",
    metricValue: 22,
    metricValueFloat: 22,
  });
  t.aggregator.applyPoll("p", t.now(), { "ns/rated": { Concurrency: 0, RequestCount: 221 } });
  assert.equal(t.answers.metricValues(target)[0]?.metricValue, 23, "22.1 rounds up");
});

Deno.test("resolve: a namespace outside KEDA_HTTP_WATCH_NAMESPACE is named in the error", () => {
  const t = setup();
  assert.throws(() => t.answers.resolve(ref("plain", "other")), (e: unknown) => {
    assert.ok(e instanceof ScalerError);
    assert.equal(e.code, "NOT_FOUND");
    assert.match(e.message, /only reads namespace "ns" \(KEDA_HTTP_WATCH_NAMESPACE\)/);
    return true;
  });
});

Deno.test("resolve: a changed HTTPScaledObject is re-read (parsed once per object version)", () => {
  const t = setup();
  assert.equal(t.answers.metricSpecs(t.answers.resolve(ref("plain")))[0]?.targetSize, 100);
  t.store.set(
    "ns/plain",
    httpsoObject("ns", "plain", { scalingMetric: { concurrency: { targetValue: 3 } } }),
  );
  assert.equal(t.answers.metricSpecs(t.answers.resolve(ref("plain")))[0]?.targetSize, 3);
});

function setupRoutes() {
  let now = 0;
  const httpsos = new Map<string, unknown>([
    [
      "ns/both-kinds",
      httpsoObject("ns", "both-kinds", {
        scalingMetric: { requestRate: { targetValue: 5, window: "30s", granularity: "1s" } },
      }),
    ],
    [
      "ns/migrating",
      httpsoObject("ns", "migrating", {
        scalingMetric: { requestRate: { targetValue: 5, window: "30s", granularity: "1s" } },
      }),
    ],
  ]);
  const routes = new Map<string, unknown>();
  const add = (o: Record<string, unknown>) => {
    const m = o.metadata as { namespace: string; name: string };
    routes.set(`${m.namespace}/${m.name}`, o);
  };
  add(interceptorRouteObject("ns", "rated", {
    scalingMetric: { requestRate: { targetValue: 4, window: "10s", granularity: "500ms" } },
  }));
  add(interceptorRouteObject("ns", "both-kinds", {
    scalingMetric: {
      concurrency: { targetValue: 3 },
      requestRate: { targetValue: 4, window: "10s", granularity: "1s" },
    },
  }));
  add(interceptorRouteObject("ns", "migrating", { target: { service: "x" } as never }));
  add(interceptorRouteObject("ns", "sleepy", {
    scalingMetric: { concurrency: { targetValue: 1 } },
    coldStart: { placeholder: { response: { body: "starting" } } },
  }));
  add(interceptorRouteObject("ns", "plain"));
  const httpsoIndex = new HTTPScaledObjectIndex(httpsos);
  const routeIndex = new InterceptorRouteIndex(routes);
  const aggregator = new QueueAggregator({
    staleTtlMs: 1000,
    now: () => now,
    rateConfigOf: (k) => rateConfigOf(k, routeIndex, httpsoIndex),
  });
  aggregator.setPods([{ id: "p", name: "p", url: "http://x", ready: true }]);
  const answers = new ScalingAnswers({
    lookup: (ns, name) => httpsoIndex.lookup(ns, name),
    lookupRoute: (ns, name) => routeIndex.lookup(ns, name),
    aggregator,
  });
  return {
    answers,
    aggregator,
    advance: (ms: number) => (now += ms),
    now: () => now,
    poll: (counts: Record<string, [number, number]>) =>
      aggregator.applyPoll(
        "p",
        now,
        Object.fromEntries(
          Object.entries(counts).map(([k, [c, r]]) => [k, { Concurrency: c, RequestCount: r }]),
        ),
      ),
  };
}

const routeRef = (name: string) => ({
  name: `${name}-so`,
  namespace: "ns",
  scalerMetadata: { interceptorRoute: name },
});

Deno.test("interceptorRoute: the rate is a float, unrounded; the int field is its ceil", () => {
  const t = setupRoutes();
  const target = t.answers.resolve(routeRef("rated"));
  t.poll({ "ns/rated": [0, 0] });
  for (let i = 1; i <= 20; i++) {
    t.advance(500);
    t.poll({ "ns/rated": [0, Math.round(1.25 * i)] });
  }
  // 25 requests over the 10 s window of the InterceptorRoute (not the default 1 m).
  assert.deepEqual(t.answers.metricValues(target), [
    { metricName: "http_rated_rate", metricValue: 3, metricValueFloat: 2.5 },
  ]);
  assert.equal(t.answers.isActive(target), true);
});

Deno.test("interceptorRoute: a valid InterceptorRoute sets the rate window of its key, an invalid one does not", () => {
  const t = setupRoutes();
  // both-kinds: the InterceptorRoute's 10 s window, not the HTTPScaledObject's 30 s.
  t.poll({ "ns/both-kinds": [0, 0], "ns/migrating": [0, 0] });
  t.advance(10_000);
  t.poll({ "ns/both-kinds": [0, 0], "ns/migrating": [0, 0] });
  // 30 requests between 10 s and 11 s; at 35 s only a 30 s window still holds them.
  t.advance(1000);
  t.poll({ "ns/both-kinds": [0, 30], "ns/migrating": [0, 30] });
  t.advance(24_000);
  t.poll({ "ns/both-kinds": [0, 30], "ns/migrating": [0, 30] });
  assert.equal(t.aggregator.rate("ns/both-kinds"), 0, "the 10 s window has passed");
  // migrating: its InterceptorRoute is invalid, so the HTTPScaledObject's 30 s window holds
  // (the default 1 m window would read 30 / 35 s).
  assert.equal(t.aggregator.rate("ns/migrating"), 1);
  assert.throws(() => t.answers.resolve(routeRef("migrating")), (e: unknown) => {
    assert.ok(e instanceof ScalerError);
    assert.equal(e.code, "FAILED_PRECONDITION");
    assert.match(e.message, /InterceptorRoute ns\/migrating is invalid: .*port/);
    return true;
  });
});

Deno.test("interceptorRoute: both metrics, each answered by name", () => {
  const t = setupRoutes();
  const target = t.answers.resolve(routeRef("both-kinds"));
  assert.deepEqual(t.answers.metricSpecs(target), [
    { metricName: "http_both-kinds_concurrency", targetSize: 3, targetSizeFloat: 3 },
    { metricName: "http_both-kinds_rate", targetSize: 4, targetSizeFloat: 4 },
  ]);
  t.poll({ "ns/both-kinds": [2, 0] });
  assert.deepEqual(t.answers.metricValues(target, "http_both-kinds_concurrency"), [
    { metricName: "http_both-kinds_concurrency", metricValue: 2, metricValueFloat: 2 },
  ]);
  assert.deepEqual(t.answers.metricValues(target, "http_both-kinds_rate"), [
    { metricName: "http_both-kinds_rate", metricValue: 0, metricValueFloat: 0 },
  ]);
  assert.equal(t.answers.metricValues(target).length, 2);
  assert.throws(
    () => t.answers.metricValues(target, "http-ns_002Fboth-kinds"),
    (e: unknown) => {
      assert.ok(e instanceof ScalerError);
      assert.equal(e.code, "NOT_FOUND");
      assert.match(e.message, /its metrics are http_both-kinds_concurrency, http_both-kinds_rate/);
      return true;
    },
  );
});

Deno.test("interceptorRoute: a placeholder route is active from its requests; others only while one is in flight", () => {
  const t = setupRoutes();
  const sleepy = t.answers.resolve(routeRef("sleepy"));
  const plain = t.answers.resolve(routeRef("plain"));
  t.poll({ "ns/sleepy": [0, 0], "ns/plain": [0, 0] });
  assert.equal(t.answers.isActive(sleepy), false);
  // One request each, answered before any sample saw it in flight.
  t.advance(500);
  t.poll({ "ns/sleepy": [0, 1], "ns/plain": [0, 1] });
  assert.equal(t.answers.metricValues(sleepy)[0]?.metricValue, 0);
  assert.equal(t.answers.isActive(sleepy), true, "the placeholder answered it: wake the app");
  assert.equal(t.answers.isActive(plain), false, "like Go: a concurrency route at 0 is idle");
  // Active for the default 1 m window of a route without requestRate, then idle.
  t.advance(59_000);
  t.poll({ "ns/sleepy": [0, 1], "ns/plain": [0, 1] });
  assert.equal(t.answers.isActive(sleepy), true);
  t.advance(2_000);
  t.poll({ "ns/sleepy": [0, 1], "ns/plain": [0, 1] });
  assert.equal(t.answers.isActive(sleepy), false);
});
