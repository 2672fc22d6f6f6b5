import assert from "node:assert/strict";
import { methodLabel, renderMetrics, RequestMetrics } from "./metrics.ts";

Deno.test("metrics: snapshots from several isolates merge into one exposition", () => {
  const a = new RequestMetrics();
  const b = new RequestMetrics();
  a.record("ns/app", "GET", 200, 0.002);
  a.record("ns/app", "GET", 200, 0.3);
  b.record("ns/app", "GET", 200, 70);
  b.record("ns/app", "BREW", 499, 0.01);
  b.record("", "GET", 404, 0.0001);
  const text = renderMetrics([a.snapshot(), b.snapshot()], {
    routes: [["ns/app", 3, 1]],
    connections: 7,
  });
  assert.match(
    text,
    /interceptor_request_count_total\{code="200",method="GET",route_name="app",route_namespace="ns"\} 3/,
  );
  assert.match(
    text,
    /interceptor_request_count_total\{code="499",method="_OTHER",route_name="app",route_namespace="ns"\} 1/,
  );
  assert.match(
    text,
    /interceptor_request_count_total\{code="404",method="GET",route_name="",route_namespace=""\} 1/,
  );
  // Go's labels and buckets (interceptor/metrics/instruments.go): one series per code and method.
  const get200 = 'code="200",method="GET",route_name="app",route_namespace="ns"';
  const bucket = (pairs: string, le: string) =>
    `interceptor_request_duration_seconds_bucket{${pairs},le="${le}"}`;
  assert.ok(text.includes(`${bucket(get200, "0.005")} 1\n`), text);
  assert.ok(text.includes(`${bucket(get200, "0.25")} 1\n`));
  assert.ok(text.includes(`${bucket(get200, "0.5")} 2\n`));
  assert.ok(text.includes(`${bucket(get200, "10")} 2\n`));
  assert.ok(text.includes(`${bucket(get200, "+Inf")} 3\n`));
  assert.ok(text.includes(`interceptor_request_duration_seconds_count{${get200}} 3\n`));
  assert.ok(text.includes(`interceptor_request_duration_seconds_sum{${get200}} 70.302\n`));
  const brew = 'code="499",method="_OTHER",route_name="app",route_namespace="ns"';
  assert.ok(text.includes(`${bucket(brew, "0.01")} 1\n`));
  assert.ok(text.includes(`${bucket(brew, "0.005")} 0\n`));
  assert.ok(!text.includes('le="60"'), "Go's buckets stop at 10 s");
  assert.match(
    text,
    /target_info\{service_name="keda-http-interceptor",service_version="HEAD"\} 1/,
  );
  assert.match(text, /interceptor_request_concurrency\{route_name="app",route_namespace="ns"\} 3/);
  assert.match(
    text,
    /interceptor_pending_request_count\{route_name="app",route_namespace="ns"\} 1/,
  );
  assert.match(text, /interceptor_open_connections 7/);
  for (const line of text.trim().split("\n")) {
    assert.match(line, /^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? [0-9.e+-]+)$/, line);
  }
});

Deno.test("metrics: routes that disappear lose their series", () => {
  const m = new RequestMetrics();
  m.record("ns/a", "GET", 200, 0.1);
  m.record("ns/b", "GET", 200, 0.1);
  m.retain(new Set(["ns/b"]));
  assert.deepEqual(m.snapshot().counts.map(([r]) => r), ["ns/b"]);
});

Deno.test("metrics: unknown methods share one label", () => {
  assert.equal(methodLabel("PATCH"), "PATCH");
  assert.equal(methodLabel("get"), "_OTHER");
  assert.equal(methodLabel("X".repeat(100)), "_OTHER");
  const m = new RequestMetrics();
  m.record("ns/a", "BREW", 200, 0.1);
  assert.deepEqual(m.snapshot().counts, [["ns/a", "_OTHER", 200, 1]]);
});
