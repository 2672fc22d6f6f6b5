import assert from "node:assert/strict";
import fc from "fast-check";
import {
  h2loadErrorKinds,
  parseH2load,
  parseH2loadLog,
  parseHeyCsv,
  parseWrk,
  percentileOf,
} from "./load_tools.ts";

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

// As nghttp2 1.52's h2load prints it after -D 5 against a target that reset some streams.
const H2LOAD = `starting benchmark...
spawning thread #0: 10 total client(s). Timing-based test with 0s of warm-up time and 5s of main duration for measurements.
Warm-up started for thread #0.
progress: 10% of clients started
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 5.00s, 36029.00 req/s, 1.51MB/s
requests: 180145 total, 180245 started, 180145 done, 180100 succeeded, 45 failed, 5 errored, 0 timeout
status codes: 180100 2xx, 0 3xx, 0 4xx, 40 5xx
traffic: 7.56MB (7927100) total, 703.82KB (720716) headers (space savings 94.85%), 3.78MB (3963190) data
                     min         max         mean         sd        +/- sd
time for request:      205us      3.66ms      1.64ms       789us    72.30%
time for connect:       76us       627us       200us       158us    90.00%
time to 1st byte:     2.53ms      2.93ms      2.62ms       113us    90.00%
req/s           :    3507.02     3743.61     3602.90      80.45    80.00%
`;

Deno.test("h2load report: rate, outcome counts and status classes", () => {
  const r = parseH2load(H2LOAD);
  assert.deepEqual(r, {
    rps: 36029,
    done: 180145,
    succeeded: 180100,
    failed: 45,
    errored: 5,
    timeout: 0,
    statuses: { "2xx": 180100, "3xx": 0, "4xx": 0, "5xx": 40 },
  });
  assert.equal(h2loadErrorKinds(r), "status 5xx: 40, errored 5");
  const clean = parseH2load(
    H2LOAD.replace("45 failed, 5 errored", "0 failed, 0 errored")
      .replace("40 5xx", "0 5xx"),
  );
  assert.equal(h2loadErrorKinds(clean), "");
  // A connection refused: h2load still prints its summary, all failed.
  const refused = parseH2load(
    "finished in 1.02ms, 0.00 req/s, 0B/s\n" +
      "requests: 100 total, 0 started, 0 done, 0 succeeded, 100 failed, 100 errored, 0 timeout\n" +
      "status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx\n",
  );
  assert.equal(refused.failed, 100);
  assert.equal(h2loadErrorKinds(refused), "errored 100");
  assert.throws(() => parseH2load("connect to 127.0.0.1 failed"), /not understood/);
});

Deno.test("h2load log: every request's time (ms) and status", () => {
  const log = "1796281404247701\t200\t1803\n1796281404247702\t502\t250\n";
  assert.deepEqual(parseH2loadLog(log), { ms: [1.803, 0.25], statuses: [200, 502] });
  assert.deepEqual(parseH2loadLog(""), { ms: [], statuses: [] });
  assert.throws(() => parseH2loadLog("1796281404247701 200 1803\n"), /line not understood/);
  fc.assert(fc.property(
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: -1, max: 599 }), fc.nat())),
    (rows) => {
      const text = rows.map(([t, s, us]) => `${t}\t${s}\t${us}\n`).join("");
      assert.deepEqual(parseH2loadLog(text), {
        ms: rows.map(([, , us]) => us / 1000),
        statuses: rows.map(([, s]) => s),
      });
    },
  ));
});
