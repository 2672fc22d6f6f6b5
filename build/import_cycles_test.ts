import assert from "node:assert/strict";
import { cyclesOf } from "./import_cycles.ts";

Deno.test("cyclesOf finds a cycle, type-only or not, and nothing in a tree", () => {
  const g = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]);
  assert.deepEqual(cyclesOf(g), [["a", "b", "c", "a"]]);
  assert.deepEqual(cyclesOf(new Map([["a", ["b", "c"]], ["b", ["c"]], ["c", []]])), []);
});
