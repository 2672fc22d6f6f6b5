import assert from "node:assert/strict";
import { parseHeyCsv, percentileOf } from "./load_tools.ts";

Deno.test("hey CSV: every request's latency and status", () => {
  const csv =
    `response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
0.0012,0.0003,0.0000,0.0000,0.0008,0.0000,200,0.0010
0.0250,0.0000,0.0000,0.0000,0.0249,0.0000,502,0.0110
`;
  assert.deepEqual(parseHeyCsv(csv), { ms: [1.2, 25], statuses: [200, 502] });
  assert.throws(() => parseHeyCsv("Summary:\n  Total: 1 secs"), /not understood/);
  assert.throws(() => parseHeyCsv("response-time,a\nx,y"), /line not understood/);
});

Deno.test("percentiles of sorted values (nearest rank)", () => {
  const v = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentileOf(v, 50), 50);
  assert.equal(percentileOf(v, 99), 99);
  assert.equal(percentileOf(v, 100), 100);
  assert.equal(percentileOf([7], 99), 7);
  assert.ok(Number.isNaN(percentileOf([], 50)));
});
