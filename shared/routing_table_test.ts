import assert from "node:assert/strict";
import {
  buildRoutingTable,
  normalizeHost,
  normalizePathPrefix,
  routingTableToJSON,
} from "./routing_table.ts";

const obj = (name: string, spec: Record<string, unknown>, ns = "default") => ({
  metadata: { name, namespace: ns, generation: 3 },
  spec: { scaleTargetRef: { name, service: `${name}-svc`, port: 8080 }, ...spec },
});

Deno.test("normalizeHost lower-cases and strips ports", () => {
  assert.equal(normalizeHost("App.Example.COM:8080"), "app.example.com");
  assert.equal(normalizeHost("example.com."), "example.com");
  assert.equal(normalizeHost("[::1]:80"), "[::1]");
  assert.equal(normalizeHost("*.Example.com"), "*.example.com");
});

Deno.test("normalizePathPrefix keeps whole segments", () => {
  assert.equal(normalizePathPrefix("/api/"), "/api");
  assert.equal(normalizePathPrefix("api"), "/api");
  assert.equal(normalizePathPrefix(""), "/");
  assert.equal(normalizePathPrefix("/"), "/");
});

Deno.test("buildRoutingTable makes one entry per object, keyed namespace/name", () => {
  const t = buildRoutingTable([
    obj("b", { hosts: ["B.example.com:80", "b.example.com"], pathPrefixes: ["/x/", "/a"] }, "ns2"),
    obj("a", {
      headers: [{ name: "X-Tenant", value: "blue" }, { name: "X-Debug" }],
      timeouts: { conditionWait: "20s", responseHeader: "0s" },
      coldStartTimeoutFailoverRef: { service: "fb", portName: "http", timeoutSeconds: 5 },
      scalingMetric: { requestRate: { targetValue: 10, window: "30s", granularity: "500ms" } },
      replicas: { min: 1, max: 4 },
    }),
  ]);
  assert.deepEqual([...t.entries.keys()], ["default/a", "ns2/b"]);
  const b = t.entries.get("ns2/b")!;
  assert.deepEqual(b.rules[0]!.hosts, ["b.example.com"]);
  assert.deepEqual(b.rules[0]!.pathPrefixes, ["/a", "/x"]);
  assert.deepEqual(b.target, { namespace: "ns2", service: "b-svc", port: 8080 });
  const a = t.entries.get("default/a")!;
  assert.deepEqual(a.rules[0]!.hosts, []);
  assert.deepEqual(a.rules[0]!.headers, [{ name: "x-tenant", value: "blue" }, {
    name: "x-debug",
  }]);
  assert.deepEqual(a.timeouts, { readinessMs: 20_000 });
  assert.deepEqual(a.fallback, {
    namespace: "default",
    service: "fb",
    portName: "http",
    timeoutMs: 5000,
  });
  assert.deepEqual(a.metrics[0], {
    type: "requestRate",
    targetValue: 10,
    windowMs: 30_000,
    granularityMs: 500,
  });
  assert.deepEqual(a.replicas, { min: 1, max: 4 });
  assert.equal(a.generation, 3);
  assert.deepEqual(a.scaleTarget, { apiVersion: "apps/v1", kind: "Deployment", name: "a" });
});

Deno.test("invalid objects are left out and reported, the rest still route", () => {
  const t = buildRoutingTable([
    obj("good", {}),
    {
      metadata: { name: "bad", namespace: "x" },
      spec: { scaleTargetRef: { name: "bad", service: "s" } },
    },
  ]);
  assert.deepEqual([...t.entries.keys()], ["default/good"]);
  assert.match(t.invalid.get("x/bad")!, /spec\.scaleTargetRef\.port/);
  const json = routingTableToJSON(t);
  assert.deepEqual(Object.keys(json.routes), ["default/good"]);
  assert.deepEqual(Object.keys(json.invalid), ["x/bad"]);
  // The JSON form survives a round trip through text.
  assert.deepEqual(JSON.parse(JSON.stringify(json)), json);
});
