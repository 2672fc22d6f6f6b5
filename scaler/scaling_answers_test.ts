import assert from "node:assert/strict";
import { HTTPScaledObjectIndex } from "./httpso_index.ts";
import { QueueAggregator } from "./queue_aggregator.ts";
import { ScalerError, ScalingAnswers } from "./scaling_answers.ts";
import { httpsoObject } from "./testing/harness.ts";

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
  assert.equal(t.answers.value(target), 0);
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
  assert.equal(t.answers.value(target), 22);
  assert.deepEqual(t.answers.metricValue(target), {
    metricName: "http-ns_002Frated",
    metricValue: 22,
    metricValueFloat: 22,
  });
  t.aggregator.applyPoll("p", t.now(), { "ns/rated": { Concurrency: 0, RequestCount: 221 } });
  assert.equal(t.answers.value(target), 23, "22.1 rounds up");
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
  assert.equal(t.answers.metricSpec(t.answers.resolve(ref("plain"))).targetSize, 100);
  t.store.set(
    "ns/plain",
    httpsoObject("ns", "plain", { scalingMetric: { concurrency: { targetValue: 3 } } }),
  );
  assert.equal(t.answers.metricSpec(t.answers.resolve(ref("plain"))).targetSize, 3);
});
