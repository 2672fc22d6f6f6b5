/** The wake book on a fake clock: no real time passes, every timer is run by hand. */
import assert from "node:assert/strict";
import { HTTPScaledObjectIndex } from "./httpso_index.ts";
import { QueueAggregator } from "./queue_aggregator.ts";
import { InterceptorRouteIndex } from "./route_index.ts";
import { ScalingAnswers } from "./scaling_answers.ts";
import { httpsoObject, interceptorRouteObject } from "./testing/harness.ts";
import {
  MAX_WAKE_MS,
  MIN_WAKE_MS,
  parseWakeDuration,
  parseWakeKind,
  WakeBook,
  type WakeChange,
  type WakeClock,
  wakeJson,
} from "./wake.ts";

class FakeClock implements WakeClock {
  t = Date.UTC(2026, 11, 3, 10, 0, 0);
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  now = () => this.t;
  setTimeout = (fn: () => void, ms: number) => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.t + ms, fn });
    return id;
  };
  clearTimeout = (h: unknown) => {
    this.#timers.delete(h as number);
  };
  get pending(): number {
    return this.#timers.size;
  }
  /** Moves the clock on, running the timers that fall due, in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.#timers].filter(([, t]) =>
        t.at <= end
      ).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.t = Math.max(this.t, due[1].at);
      due[1].fn();
    }
    this.t = end;
  }
  /** Runs every timer now, whatever its time (a timer that fires early). */
  fireAllNow(): void {
    const all = [...this.#timers.values()];
    this.#timers.clear();
    for (const t of all) t.fn();
  }
}

function book() {
  const clock = new FakeClock();
  const wakes = new WakeBook({ clock });
  const changes: string[] = [];
  wakes.subscribe((c: WakeChange) => changes.push(`${c.reason} ${c.kind} ${c.key}`));
  return { clock, wakes, changes };
}

Deno.test("wake: active for its duration, then expires with one change event", () => {
  const { clock, wakes, changes } = book();
  const { wake, created } = wakes.wake("InterceptorRoute", "apps", "shop", 10 * 60_000);
  assert.equal(created, true);
  assert.equal(wake.key, "apps/shop");
  assert.equal(wake.until, clock.t + 600_000);
  assert.deepEqual(changes, ["woken InterceptorRoute apps/shop"]);
  assert.equal(wakes.isAwake("InterceptorRoute", "apps/shop"), true);
  // The other kind of the same key is not woken: it names another ScaledObject trigger.
  assert.equal(wakes.isAwake("HTTPScaledObject", "apps/shop"), false);
  assert.equal(wakes.isAwake("InterceptorRoute", "apps/other"), false);

  clock.advance(600_000 - 1);
  assert.equal(wakes.isAwake("InterceptorRoute", "apps/shop"), true);
  assert.equal(changes.length, 1);
  clock.advance(1);
  assert.equal(wakes.isAwake("InterceptorRoute", "apps/shop"), false);
  assert.deepEqual(changes, [
    "woken InterceptorRoute apps/shop",
    "expired InterceptorRoute apps/shop",
  ]);
  assert.deepEqual(wakes.list(), []);
  assert.equal(clock.pending, 0);
});

Deno.test("wake: a second wake replaces the end time (longer or shorter), one timer each", () => {
  const { clock, wakes, changes } = book();
  wakes.wake("HTTPScaledObject", "ns", "app", 60_000);
  clock.advance(30_000);
  const again = wakes.wake("HTTPScaledObject", "ns", "app", 120_000);
  assert.equal(again.created, false);
  assert.equal(again.wake.until, clock.t + 120_000);
  assert.equal(clock.pending, 1);
  // The first end time passes: still awake, no event.
  clock.advance(60_000);
  assert.equal(wakes.isAwake("HTTPScaledObject", "ns/app"), true);
  assert.deepEqual(changes, ["woken HTTPScaledObject ns/app", "renewed HTTPScaledObject ns/app"]);
  // Shortened.
  wakes.wake("HTTPScaledObject", "ns", "app", 1_000);
  clock.advance(1_000);
  assert.equal(wakes.isAwake("HTTPScaledObject", "ns/app"), false);
  assert.equal(changes.at(-1), "expired HTTPScaledObject ns/app");
  // Waking after it ran out is a new wake.
  assert.equal(wakes.wake("HTTPScaledObject", "ns", "app", 1_000).created, true);
});

Deno.test("wake: end() ends it now, once; ending nothing says so", () => {
  const { clock, wakes, changes } = book();
  wakes.wake("InterceptorRoute", "ns", "a", 60_000);
  const ended = wakes.end("InterceptorRoute", "ns", "a");
  assert.equal(ended?.key, "ns/a");
  assert.equal(wakes.isAwake("InterceptorRoute", "ns/a"), false);
  assert.equal(clock.pending, 0, "its timer is cleared");
  assert.equal(wakes.end("InterceptorRoute", "ns", "a"), undefined);
  assert.equal(wakes.end("HTTPScaledObject", "ns", "never"), undefined);
  assert.deepEqual(changes, ["woken InterceptorRoute ns/a", "ended InterceptorRoute ns/a"]);
  clock.advance(120_000);
  assert.equal(changes.length, 2, "no expiry after an end");
});

Deno.test("wake: a timer that fires early waits out the rest; the clock decides, not the timer", () => {
  const { clock, wakes, changes } = book();
  wakes.wake("InterceptorRoute", "ns", "a", 5_000);
  clock.fireAllNow();
  assert.equal(wakes.isAwake("InterceptorRoute", "ns/a"), true);
  assert.equal(changes.length, 1);
  assert.equal(clock.pending, 1, "re-armed for the remaining time");
  clock.advance(5_000);
  assert.equal(changes.at(-1), "expired InterceptorRoute ns/a");
});

Deno.test("wake: close() stops the timers; wakes still answer by the clock", () => {
  const { clock, wakes, changes } = book();
  wakes.wake("InterceptorRoute", "ns", "a", 5_000);
  wakes.close();
  assert.equal(clock.pending, 0);
  wakes.wake("InterceptorRoute", "ns", "b", 5_000);
  assert.equal(clock.pending, 0, "no timer after close");
  assert.equal(wakes.isAwake("InterceptorRoute", "ns/b"), true);
  clock.advance(5_000);
  assert.equal(wakes.isAwake("InterceptorRoute", "ns/a"), false);
  assert.equal(wakes.isAwake("InterceptorRoute", "ns/b"), false);
  assert.equal(changes.filter((c) => c.startsWith("expired")).length, 0);
});

Deno.test("wake: list, untilOf (latest of both kinds) and JSON", () => {
  const { clock, wakes } = book();
  wakes.wake("InterceptorRoute", "ns", "b", 60_000);
  wakes.wake("HTTPScaledObject", "ns", "b", 120_000);
  wakes.wake("InterceptorRoute", "ns", "a", 1_000);
  assert.deepEqual(
    wakes.list().map((w) => `${w.key} ${w.kind}`),
    ["ns/a InterceptorRoute", "ns/b HTTPScaledObject", "ns/b InterceptorRoute"],
  );
  assert.equal(wakes.size, 3);
  assert.equal(wakes.untilOf("ns/b"), clock.t + 120_000);
  assert.equal(wakes.untilOf("ns/none"), undefined);
  const start = clock.t;
  clock.advance(30_000);
  const w = wakes.list().find((w) => w.kind === "InterceptorRoute" && w.key === "ns/b")!;
  assert.deepEqual(wakeJson(w, clock.t), {
    kind: "InterceptorRoute",
    namespace: "ns",
    name: "b",
    route: "ns/b",
    since: new Date(start).toISOString(),
    until: "2026-12-03T10:01:00.000Z",
    remaining: "30s",
  });
});

Deno.test("wake: durations bounded 1s..24h with messages that say so; kinds in any case", () => {
  assert.equal(parseWakeDuration("10m"), 600_000);
  assert.equal(parseWakeDuration("1s"), MIN_WAKE_MS);
  assert.equal(parseWakeDuration("24h"), MAX_WAKE_MS);
  assert.equal(parseWakeDuration("1h30m"), 5_400_000);
  assert.throws(
    () => parseWakeDuration("999ms"),
    /"for": "999ms" is out of range: a wake lasts from 1s to 24h/,
  );
  assert.throws(() => parseWakeDuration("25h"), /out of range/);
  assert.throws(() => parseWakeDuration("-5m"), /out of range/);
  assert.throws(() => parseWakeDuration("0"), /out of range/);
  assert.throws(() => parseWakeDuration("ten minutes"), /"for": "ten minutes" is not a duration/);
  assert.equal(parseWakeKind("InterceptorRoute"), "InterceptorRoute");
  assert.equal(parseWakeKind("httpscaledobject"), "HTTPScaledObject");
  assert.equal(parseWakeKind("Deployment"), undefined);
  const { wakes } = book();
  assert.throws(() => wakes.wake("InterceptorRoute", "ns", "a", 10), RangeError);
});

Deno.test("ScalingAnswers: a wake activates the refs of its kind only; metric values unchanged", () => {
  const clock = new FakeClock();
  const wakes = new WakeBook({ clock });
  const httpsos = new HTTPScaledObjectIndex(
    new Map([["ns/both", httpsoObject("ns", "both")], ["ns/old", httpsoObject("ns", "old")]]),
  );
  const routes = new InterceptorRouteIndex(
    new Map([
      ["ns/both", interceptorRouteObject("ns", "both")],
      ["ns/bad", interceptorRouteObject("ns", "bad", { scalingMetric: {} })],
    ]),
  );
  const aggregator = new QueueAggregator({ staleTtlMs: 1000, now: clock.now });
  const answers = new ScalingAnswers({
    lookup: (ns, name) => httpsos.lookup(ns, name),
    lookupRoute: (ns, name) => routes.lookup(ns, name),
    aggregator,
    watchNamespace: "ns",
    wakes,
  });
  assert.equal(answers.wakes, wakes);
  const route = answers.resolve({
    name: "so",
    namespace: "ns",
    scalerMetadata: { interceptorRoute: "both" },
  });
  const httpso = answers.resolve({
    name: "both",
    namespace: "ns",
    scalerMetadata: { httpScaledObject: "both" },
  });
  assert.equal(answers.isActive(route), false);
  wakes.wake("InterceptorRoute", "ns", "both", 60_000);
  assert.equal(answers.isActive(route), true);
  assert.equal(answers.isActive(httpso), false, "same key, other kind");
  assert.deepEqual(answers.metricValues(route).map((v) => v.metricValue), [0]);
  clock.advance(60_000);
  assert.equal(answers.isActive(route), false);
  wakes.wake("HTTPScaledObject", "ns", "both", 1_000);
  assert.equal(answers.isActive(httpso), true);
  assert.deepEqual(answers.metricValues(httpso).map((v) => v.metricValue), [0]);

  // What the indexes say about a wake's target.
  assert.deepEqual(answers.checkWakeTarget("InterceptorRoute", "ns", "both"), { found: true });
  const old = answers.checkWakeTarget("InterceptorRoute", "ns", "old");
  assert.equal(old.found, false);
  assert.match(
    !old.found ? old.message : "",
    /InterceptorRoute ns\/old not found: check the namespace and name; an HTTPScaledObject ns\/old exists: to wake the ScaledObject that names it, send kind=HTTPScaledObject/,
  );
  const elsewhere = answers.checkWakeTarget("HTTPScaledObject", "other", "x");
  assert.match(
    !elsewhere.found ? elsewhere.message : "",
    /only reads namespace "ns" \(KEDA_HTTP_WATCH_NAMESPACE\)/,
  );
  const bad = answers.checkWakeTarget("InterceptorRoute", "ns", "bad");
  assert.equal(bad.found, true);
  assert.match(
    bad.found ? bad.invalid ?? "" : "",
    /the wake is recorded, but KEDA's calls for it fail/,
  );
  wakes.close();
});
