import assert from "node:assert/strict";
import { counterIncrement, MAX_BUCKETS, RateWindow } from "./request_rate.ts";

Deno.test("counterIncrement: first sample is a baseline, a drop is a restart", () => {
  assert.equal(counterIncrement(undefined, 500), 0);
  assert.equal(counterIncrement(100, 130), 30);
  assert.equal(counterIncrement(130, 130), 0);
  // Counter went down: the interceptor restarted and has seen 7 since.
  assert.equal(counterIncrement(130, 7), 7);
});

function approx(actual: number, expected: number, tolerance = 1e-6) {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `expected ${expected} ± ${tolerance}, got ${actual}`,
  );
}

Deno.test("RateWindow: a steady 10 req/s sampled every 500ms reads 10/s over a 1m window", () => {
  const w = new RateWindow({ windowMs: 60_000, granularityMs: 1000, startMs: 0 });
  for (let t = 500; t <= 120_000; t += 500) w.add(t - 500, t, 5);
  approx(w.rate(120_000), 10);
  // Between samples the newest 250 ms have no data yet, so the rate lags a little.
  approx(w.rate(120_250), 10 * 59.75 / 60);
});

Deno.test("RateWindow: sub-second granularity below the tick gives a steady rate, no gaps", () => {
  // 100ms buckets, 1s window, samples every 500ms: the Go add-on divided by zero here.
  const w = new RateWindow({ windowMs: 1000, granularityMs: 100, startMs: 0 });
  let t = 0;
  for (; t < 5000; t += 500) w.add(t, t + 500, 5);
  for (let q = t; q < t + 500; q += 50) {
    const r = w.rate(q);
    assert.ok(r >= 4.5 && r <= 10.0001, `rate at ${q} ms is ${r}, want within [4.5, 10]`);
  }
  // Once the data is older than the window, the rate is zero again.
  assert.equal(w.rate(t + 1100), 0);
});

Deno.test("RateWindow: before a full window has passed, only the covered time is averaged", () => {
  const w = new RateWindow({ windowMs: 60_000, granularityMs: 1000, startMs: 10_000 });
  w.add(10_000, 10_900, 20);
  // One bucket covered so far: 20 requests in 1s, not 20 in 60s.
  approx(w.rate(10_900), 20);
});

Deno.test("RateWindow: an interval longer than the window counts only its part in the window", () => {
  const w = new RateWindow({ windowMs: 60_000, granularityMs: 1000, startMs: 0 });
  // 1200 requests over two minutes (e.g. after an outage): 600 of them in the last minute.
  w.add(0, 120_000, 1200);
  approx(w.rate(119_999), 600 / 60, 0.01);
});

Deno.test("RateWindow: old requests leave the window", () => {
  const w = new RateWindow({ windowMs: 10_000, granularityMs: 1000, startMs: 0 });
  w.add(0, 1000, 50);
  assert.ok(w.rate(1000) > 0);
  assert.equal(w.rate(11_500), 0);
  // A sample that arrives for a time already outside the window is ignored.
  w.add(0, 500, 10);
  assert.equal(w.rate(11_500), 0);
});

Deno.test("RateWindow: a tiny granularity is coarsened to at most MAX_BUCKETS", () => {
  const w = new RateWindow({ windowMs: 3_600_000, granularityMs: 1, startMs: 0 });
  assert.equal(w.bucketMs, 3_600_000 / MAX_BUCKETS);
  assert.ok(w.matches(3_600_000, 1));
  assert.ok(!w.matches(3_600_000, 1000));
});

Deno.test("RateWindow: zero granularity or window is refused with a clear error", () => {
  assert.throws(
    () => new RateWindow({ windowMs: 1000, granularityMs: 0, startMs: 0 }),
    /granularity > 0/,
  );
  assert.throws(
    () => new RateWindow({ windowMs: 0, granularityMs: 100, startMs: 0 }),
    /window > 0/,
  );
});

Deno.test("RateWindow: simultaneous samples land in one bucket without dividing by zero", () => {
  const w = new RateWindow({ windowMs: 1000, granularityMs: 250, startMs: 0 });
  w.add(400, 400, 3);
  // 400 ms since tracking began: 3 requests in 0.4 s.
  approx(w.rate(400), 3 / 0.4);
  assert.ok(Number.isFinite(w.rate(400)));
});
