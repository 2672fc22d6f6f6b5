import assert from "node:assert/strict";
import { parseHeyCsv, parseWrk, percentileOf } from "./load_tools.ts";

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

Deno.test("wrk report: rate, percentiles, and errors by kind", () => {
  const text = `Running 10s test @ http://127.0.0.1:8080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.30ms  450.00us  12.00ms   80.00%
  Latency Distribution
     50%    1.20ms
     75%    1.50ms
     90%    1.90ms
     99%    3.50ms
  350000 requests in 10.00s, 40.00MB read
  Socket errors: connect 0, read 11, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:  35000.00
Transfer/sec:      4.00MB
`;
  assert.deepEqual(parseWrk(text), {
    rps: 35000,
    p50Ms: 1.2,
    p99Ms: 3.5,
    requests: 350000,
    errors: 17,
    errorKinds: "read 11, timeout 2, non-2xx/3xx 4",
  });
  const clean = text.replace(/ {2}Socket errors.*\n {2}Non-2xx.*\n/, "");
  assert.equal(parseWrk(clean).errors, 0);
  assert.equal(parseWrk(clean).errorKinds, "");
});
