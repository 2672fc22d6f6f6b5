import assert from "node:assert/strict";
import { type InterceptorPod, QueueAggregator, type RouteChange } from "./queue_aggregator.ts";

function pod(n: number, ready = true): InterceptorPod {
  return { id: `uid-${n}`, name: `interceptor-${n}`, url: `http://10.0.0.${n}:9090`, ready };
}

function setup(staleTtlMs = 30_000) {
  let now = 1_000;
  const changes: RouteChange[] = [];
  const agg = new QueueAggregator({
    staleTtlMs,
    now: () => now,
    rateConfigOf: (key) =>
      key === "ns/fast"
        ? { windowMs: 1000, granularityMs: 100 }
        : { windowMs: 10_000, granularityMs: 1000 },
  });
  agg.subscribe((c) => changes.push(...c));
  return {
    agg,
    changes,
    advance(ms: number) {
      now += ms;
      return now;
    },
    get now() {
      return now;
    },
  };
}

const c = (Concurrency: number, RequestCount: number) => ({ Concurrency, RequestCount });

Deno.test("QueueAggregator sums concurrency of every pod per route", () => {
  const { agg, now } = setup();
  agg.setPods([pod(1), pod(2), pod(3)]);
  agg.applyPoll("uid-1", now, { "ns/a": c(1, 10), "ns/b": c(0, 3) });
  agg.applyPoll("uid-2", now, { "ns/a": c(2, 20) });
  agg.applyPoll("uid-3", now, { "ns/a": c(4, 5), "ns/b": c(7, 1) });
  assert.equal(agg.concurrency("ns/a"), 7);
  assert.equal(agg.concurrency("ns/b"), 7);
  assert.equal(agg.concurrency("ns/none"), 0);
  assert.equal(agg.totalConcurrency(), 14);
  assert.deepEqual(agg.snapshot()["ns/a"], { Concurrency: 7, RequestCount: 35, RPS: 0 });
});

Deno.test("QueueAggregator: first sample of a pod is a baseline, then deltas become a rate", () => {
  const t = setup();
  t.agg.setPods([pod(1), pod(2)]);
  // Both pods have served lots before the scaler started: no burst.
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 10_000) });
  t.agg.applyPoll("uid-2", t.now, { "ns/a": c(0, 50_000) });
  assert.equal(t.agg.rate("ns/a"), 0);
  // Over the next 10 s: 10 req/s on pod 1, 20 req/s on pod 2.
  for (let i = 1; i <= 20; i++) {
    t.advance(500);
    t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 10_000 + 5 * i) });
    t.agg.applyPoll("uid-2", t.now, { "ns/a": c(0, 50_000 + 10 * i) });
  }
  const r = t.agg.rate("ns/a");
  assert.ok(Math.abs(r - 30) < 1e-6, `rate ${r}, want 30`);
});

Deno.test("QueueAggregator: a counter reset counts the new value, a new pod is a baseline", () => {
  const t = setup();
  t.agg.setPods([pod(1)]);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 1000) });
  t.advance(1000);
  // Restarted: the counter went from 1000 to 40, i.e. 40 new requests.
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 40) });
  t.agg.setPods([pod(1), pod(2)]);
  t.agg.applyPoll("uid-2", t.now, { "ns/a": c(0, 99_999) });
  // 40 requests in the 1 s since the first sample, nothing from the new pod.
  assert.equal(t.agg.rate("ns/a"), 40);
});

Deno.test("QueueAggregator: a route new on a known pod counts from zero", () => {
  const t = setup();
  t.agg.setPods([pod(1)]);
  t.agg.applyPoll("uid-1", t.now, {});
  t.advance(1000);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(1, 10) });
  assert.equal(t.agg.rate("ns/a"), 10);
});

Deno.test("QueueAggregator: a quiet route's first request is averaged over the time observed", () => {
  const t = setup();
  t.agg.setPods([pod(1)]);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 0) });
  for (let i = 0; i < 20; i++) {
    t.advance(500);
    t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 0) });
  }
  t.advance(500);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 10) });
  // 10 requests in a 10 s window: 1/s, not 10/s.
  assert.equal(t.agg.rate("ns/a"), 1);
});

Deno.test("QueueAggregator: an unreachable ready pod keeps its counts for the TTL, then drops out", () => {
  const t = setup(5_000);
  t.agg.setPods([pod(1), pod(2)]);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(3, 0) });
  t.agg.applyPoll("uid-2", t.now, { "ns/a": c(2, 0) });
  t.changes.length = 0;
  t.advance(1000);
  t.agg.applyPollError("uid-2", new Error("connection refused"));
  assert.equal(t.agg.concurrency("ns/a"), 5);
  assert.equal(t.agg.podStatuses().find((p) => p.id === "uid-2")?.health, "stale");
  t.advance(4_500);
  t.agg.applyPollError("uid-2", new Error("connection refused"));
  assert.equal(t.agg.concurrency("ns/a"), 3);
  const status = t.agg.podStatuses().find((p) => p.id === "uid-2");
  assert.equal(status?.health, "down");
  assert.equal(status?.lastError, "connection refused");
  assert.equal(status?.consecutiveFailures, 2);
  assert.deepEqual(t.changes, [{ key: "ns/a", concurrency: 3, previous: 5 }]);
  // It answers again: back in the sum.
  t.advance(500);
  t.agg.applyPoll("uid-2", t.now, { "ns/a": c(1, 0) });
  assert.equal(t.agg.concurrency("ns/a"), 4);
});

Deno.test("QueueAggregator: expire() drops stale pods without another poll", () => {
  const t = setup(1_000);
  t.agg.setPods([pod(1)]);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(2, 0) });
  t.agg.applyPollError("uid-1", new Error("timeout"));
  assert.equal(t.agg.concurrency("ns/a"), 2);
  t.advance(1_500);
  t.agg.expire();
  assert.equal(t.agg.concurrency("ns/a"), 0);
});

Deno.test("QueueAggregator: a failing pod that is not ready drops out at once", () => {
  const t = setup();
  t.agg.setPods([pod(1, false)]);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(2, 0) });
  assert.equal(t.agg.concurrency("ns/a"), 2);
  t.agg.applyPollError("uid-1", new Error("refused"));
  assert.equal(t.agg.concurrency("ns/a"), 0);
});

Deno.test("QueueAggregator: a pod removed from the endpoints drops out at once", () => {
  const t = setup();
  t.agg.setPods([pod(1), pod(2)]);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(2, 0) });
  t.agg.applyPoll("uid-2", t.now, { "ns/a": c(2, 0) });
  t.agg.setPods([pod(1)]);
  assert.equal(t.agg.concurrency("ns/a"), 2);
  // Late answer from the removed pod is ignored.
  t.agg.applyPoll("uid-2", t.now, { "ns/a": c(9, 0) });
  assert.equal(t.agg.concurrency("ns/a"), 2);
});

Deno.test("QueueAggregator: a watch line activates at once and an older poll cannot undo it", () => {
  const t = setup();
  t.agg.setPods([pod(1)]);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 0) });
  const pollSent = t.advance(100);
  t.advance(5);
  t.agg.applyWatch("uid-1", { "ns/a": c(1, 1) }, false);
  assert.equal(t.agg.concurrency("ns/a"), 1);
  assert.deepEqual(t.changes, [{ key: "ns/a", concurrency: 1, previous: 0 }]);
  // The poll sent before the watch line arrived answers with the older state.
  t.advance(5);
  t.agg.applyPoll("uid-1", pollSent, { "ns/a": c(0, 0) });
  assert.equal(t.agg.concurrency("ns/a"), 1);
  // A poll sent afterwards is authoritative again.
  const later = t.advance(500);
  t.agg.applyPoll("uid-1", later, { "ns/a": c(0, 1) });
  assert.equal(t.agg.concurrency("ns/a"), 0);
});

Deno.test("QueueAggregator: a watch snapshot zeroes the routes it does not list", () => {
  const t = setup();
  t.agg.setPods([pod(1)]);
  t.agg.applyWatch("uid-1", { "ns/a": c(2, 5), "ns/b": c(1, 1) }, true);
  t.agg.applyWatch("uid-1", { "ns/a": c(2, 5) }, true);
  assert.equal(t.agg.concurrency("ns/b"), 0);
  assert.equal(t.agg.concurrency("ns/a"), 2);
  // A heartbeat changes nothing.
  t.changes.length = 0;
  t.agg.applyWatch("uid-1", {}, false);
  assert.deepEqual(t.changes, []);
});

Deno.test("QueueAggregator: a route gone from a poll answer is forgotten", () => {
  const t = setup();
  t.agg.setPods([pod(1)]);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(1, 1), "ns/b": c(1, 1) });
  t.advance(500);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(1, 1) });
  assert.equal(t.agg.concurrency("ns/b"), 0);
  assert.equal(t.agg.snapshot()["ns/b"], undefined);
});

Deno.test("QueueAggregator: sub-second granularity yields a finite, steady rate", () => {
  const t = setup();
  t.agg.setPods([pod(1)]);
  t.agg.applyPoll("uid-1", t.now, { "ns/fast": c(0, 0) });
  for (let i = 1; i <= 10; i++) {
    t.advance(500);
    t.agg.applyPoll("uid-1", t.now, { "ns/fast": c(0, 50 * i) });
  }
  const r = t.agg.rate("ns/fast");
  assert.ok(Number.isFinite(r) && Math.abs(r - 100) < 0.001, `rate ${r}, want 100`);
});

Deno.test("QueueAggregator: a route that leaves and comes back continues from its counter", () => {
  const t = setup();
  t.agg.setPods([pod(1)]);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 500) });
  t.advance(1000);
  t.agg.applyPoll("uid-1", t.now, {});
  t.advance(1000);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 510) });
  // 10 new requests in the second since it came back, not 510.
  assert.equal(t.agg.rate("ns/a"), 10);
});

Deno.test("QueueAggregator: new requests at 0 in flight are a change event (a placeholder answered them)", () => {
  const t = setup();
  t.agg.setPods([pod(1)]);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 10) });
  t.changes.length = 0;
  // Between two polls a request came and went (Concurrency 0 → 1 → 0 unseen).
  t.advance(500);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 11) });
  assert.deepEqual(t.changes, [{ key: "ns/a", concurrency: 0, previous: 0 }]);
  assert.equal(t.agg.requestedRecently("ns/a"), true);
  // No new requests: no event.
  t.changes.length = 0;
  t.advance(500);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 11) });
  assert.deepEqual(t.changes, []);
  // Busy routes are active anyway: their new requests add no events of their own.
  t.agg.applyWatch("uid-1", { "ns/a": c(2, 12) }, false);
  t.advance(500);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(2, 20) });
  assert.deepEqual(t.changes, [{ key: "ns/a", concurrency: 2, previous: 0 }]);
});

Deno.test("QueueAggregator: a watch line with a higher RequestCount is seen before any poll measures a rate", () => {
  const t = setup();
  t.agg.setPods([pod(1)]);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 10) });
  t.changes.length = 0;
  t.advance(100);
  t.agg.applyWatch("uid-1", { "ns/a": c(0, 11) }, false);
  assert.deepEqual(t.changes, [{ key: "ns/a", concurrency: 0, previous: 0 }]);
  assert.equal(t.agg.rate("ns/a"), 0, "the rate comes from polls");
  assert.equal(t.agg.requestedRecently("ns/a"), true);
  // The same count again (the line for 1 → 0) is nothing new.
  t.changes.length = 0;
  t.agg.applyWatch("uid-1", { "ns/a": c(0, 11) }, false);
  assert.deepEqual(t.changes, []);
  // An older poll answer does not lower the count the next line is compared with.
  t.agg.applyPoll("uid-1", t.now - 50, { "ns/a": c(0, 10) });
  t.agg.applyWatch("uid-1", { "ns/a": c(0, 11) }, false);
  assert.deepEqual(t.changes, []);
  // The window (10 s here) passes without requests: no longer.
  for (let i = 0; i < 12; i++) {
    t.advance(1000);
    t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 11) });
  }
  assert.equal(t.agg.requestedRecently("ns/a"), false);
});

Deno.test("QueueAggregator: a watch line needs a baseline, and a restarted counter is a new one", () => {
  const t = setup();
  t.agg.setPods([pod(1)]);
  // Never polled: 500 requests since the interceptor started are history, not news.
  t.agg.applyWatch("uid-1", { "ns/a": c(0, 500) }, true);
  assert.equal(t.agg.requestedRecently("ns/a"), false);
  t.agg.applyPoll("uid-1", t.now, { "ns/a": c(0, 500) });
  // The interceptor restarted: its snapshot counts from 0.
  t.changes.length = 0;
  t.advance(100);
  t.agg.applyWatch("uid-1", { "ns/a": c(0, 3) }, true);
  assert.deepEqual(t.changes, []);
  t.agg.applyWatch("uid-1", { "ns/a": c(0, 4) }, false);
  assert.deepEqual(t.changes, [{ key: "ns/a", concurrency: 0, previous: 0 }]);
});
