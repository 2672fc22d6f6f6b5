import assert from "node:assert/strict";
import { OVERFLOW_SLOT, SharedCounters, SlotTable } from "./counters.ts";

Deno.test("counters: begin/end report 0 ↔ 1 transitions and count requests", () => {
  const c = SharedCounters.create({ routeCapacity: 4, podCapacity: 4 });
  assert.equal(c.begin(1), true);
  assert.equal(c.begin(1), false);
  assert.equal(c.concurrency(1), 2);
  assert.equal(c.end(1), false);
  assert.equal(c.end(1), true);
  assert.equal(c.concurrency(1), 0);
  assert.equal(c.requests32(1), 2);
  assert.equal(c.concurrency(2), 0);
});

Deno.test("counters: the hold cap admits exactly max", () => {
  const c = SharedCounters.create({ routeCapacity: 4, podCapacity: 4 });
  assert.equal(c.holdBegin(1, 2), true);
  assert.equal(c.holdBegin(1, 2), true);
  assert.equal(c.holdBegin(1, 2), false);
  assert.equal(c.held(1), 2);
  c.holdEnd(1);
  assert.equal(c.holdBegin(1, 2), true);
});

Deno.test("counters are shared through the buffer (what another isolate sees)", () => {
  const a = SharedCounters.create({ routeCapacity: 4, podCapacity: 4 });
  const b = new SharedCounters(a.buffer, a.layout);
  a.begin(3);
  a.podBegin(2);
  assert.equal(b.concurrency(3), 1);
  assert.equal(b.podLoad(2), 1);
});

Deno.test("SlotTable keeps slots for kept keys and reuses retired ones only when safe", () => {
  const t = new SlotTable(4);
  t.assign(["a", "b"], 1);
  const a = t.slotOf("a")!;
  const b = t.slotOf("b")!;
  assert.notEqual(a, OVERFLOW_SLOT);
  t.assign(["a"], 2); // b retired at version 2
  assert.equal(t.slotOf("a"), a);
  assert.equal(t.slotOf("b"), undefined);
  // An isolate still on version 1 may route to b: not reclaimed yet.
  assert.equal(t.reclaim(1, () => true), 0);
  // Everyone on version 2 but the slot still has requests in flight.
  assert.equal(t.reclaim(2, () => false), 0);
  assert.equal(t.reclaim(2, () => true), 1);
  t.assign(["a", "c"], 3);
  assert.equal(t.slotOf("c"), b);
});

Deno.test("SlotTable overflows into the shared slot instead of failing", () => {
  const t = new SlotTable(3); // slots 1 and 2 usable
  const { overflow } = t.assign(["a", "b", "c"], 1);
  assert.equal(overflow, 1);
  assert.equal([..."abc"].filter((k) => t.slotOf(k) === OVERFLOW_SLOT).length, 1);
});
