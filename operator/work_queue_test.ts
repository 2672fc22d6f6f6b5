import assert from "node:assert/strict";
import { WorkQueue } from "./work_queue.ts";

Deno.test("work queue: a key added many times is handed out once", async () => {
  const q = new WorkQueue();
  q.add("ns/a");
  q.add("ns/b");
  q.add("ns/a");
  q.add("ns/a");
  assert.equal(q.length, 2);
  assert.equal(await q.get(), "ns/a");
  assert.equal(await q.get(), "ns/b");
  assert.equal(q.length, 0);
  q.shutDown();
});

Deno.test("work queue: a key added while processing is re-queued on done, not handed out twice", async () => {
  const q = new WorkQueue();
  q.add("ns/a");
  const k = await q.get();
  assert.equal(k, "ns/a");
  q.add("ns/a");
  q.add("ns/a");
  assert.equal(q.length, 0, "must not be handed to a second worker while processing");
  q.done("ns/a");
  assert.equal(q.length, 1);
  assert.equal(await q.get(), "ns/a");
  q.done("ns/a");
  assert.equal(q.length, 0);
  q.shutDown();
});

Deno.test("work queue: get waits for an add and resolves undefined on abort or shutdown", async () => {
  const q = new WorkQueue();
  const pending = q.get();
  q.add("ns/x");
  assert.equal(await pending, "ns/x");
  const ac = new AbortController();
  const aborted = q.get(ac.signal);
  ac.abort();
  assert.equal(await aborted, undefined);
  // A key added after the aborted waiter left must still be queued.
  q.add("ns/y");
  assert.equal(q.length, 1);
  const waiting = new WorkQueue();
  const w = waiting.get();
  waiting.shutDown();
  assert.equal(await w, undefined);
  q.shutDown();
});

Deno.test("work queue: addAfter keeps the earliest due time and shutDown cancels timers", async () => {
  const q = new WorkQueue();
  q.addAfter("ns/a", 60_000);
  q.addAfter("ns/a", 10);
  q.addAfter("ns/a", 60_000);
  assert.equal(q.delayedCount, 1);
  assert.equal(await q.get(), "ns/a");
  q.done("ns/a");
  q.addAfter("ns/b", 60_000);
  q.shutDown();
  assert.equal(q.delayedCount, 0);
});

Deno.test("work queue: failures back off exponentially per key and forget resets", () => {
  const q = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 1_000 });
  const delays = [0, 1, 2, 3, 4, 5].map(() => q.addRateLimited("ns/a"));
  // Full jitter halves at most: attempt n waits within [c/2, c], c = min(max, base·2^n).
  delays.forEach((d, n) => {
    const ceiling = Math.min(1_000, 100 * 2 ** n);
    assert.ok(
      d >= ceiling / 2 && d <= ceiling,
      `attempt ${n}: ${d} not in [${ceiling / 2}, ${ceiling}]`,
    );
  });
  assert.equal(q.failures("ns/a"), 6);
  assert.equal(q.failures("ns/b"), 0);
  q.forget("ns/a");
  assert.equal(q.failures("ns/a"), 0);
  const first = q.addRateLimited("ns/a");
  assert.ok(first <= 100);
  q.shutDown();
});
