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
    /interceptor_request_count_total\{code="499",method="OTHER",route_name="app",route_namespace="ns"\} 1/,
  );
  assert.match(
    text,
    /interceptor_request_count_total\{code="404",method="GET",route_name="",route_namespace=""\} 1/,
  );
  assert.match(
    text,
    /interceptor_request_duration_seconds_bucket\{route_name="app",route_namespace="ns",le="0.0025"\} 1/,
  );
  assert.match(
    text,
    /interceptor_request_duration_seconds_bucket\{route_name="app",route_namespace="ns",le="60"\} 3/,
  );
  assert.match(
    text,
    /interceptor_request_duration_seconds_bucket\{route_name="app",route_namespace="ns",le="\+Inf"\} 4/,
  );
  assert.match(
    text,
    /interceptor_request_duration_seconds_count\{route_name="app",route_namespace="ns"\} 4/,
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
  assert.equal(methodLabel("get"), "OTHER");
  assert.equal(methodLabel("X".repeat(100)), "OTHER");
});
