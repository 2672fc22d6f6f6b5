import assert from "node:assert/strict";
import {
  compiledParsing,
  expectHTTPScaledObjects,
  formatIssues,
  HTTPScaledObjectSchema,
  InvalidHTTPScaledObject,
  parseHTTPScaledObject,
  parseHTTPScaledObjectSpec,
  scalingMetricOf,
  targetServiceOf,
  targetWorkloadOf,
} from "./httpso.ts";

const base = () => ({
  metadata: { name: "app", namespace: "team-a" },
  spec: {
    hosts: ["app.example.com"],
    scaleTargetRef: {
      name: "app",
      kind: "Deployment",
      apiVersion: "apps/v1",
      service: "app",
      port: 8080,
    },
  },
});

Deno.test("defaults are applied", () => {
  const obj = parseHTTPScaledObject(base());
  assert.deepEqual(obj.spec.replicas, { min: 0, max: 100 });
  assert.deepEqual(scalingMetricOf(obj.spec), { type: "concurrency", targetValue: 100 });
  const rr = parseHTTPScaledObjectSpec({ ...base().spec, scalingMetric: { requestRate: {} } });
  assert.deepEqual(rr.scalingMetric?.requestRate, {
    targetValue: 100,
    window: "1m",
    granularity: "1s",
  });
  assert.deepEqual(scalingMetricOf(rr), {
    type: "requestRate",
    targetValue: 100,
    windowMs: 60_000,
    granularityMs: 1000,
  });
  const fb = parseHTTPScaledObjectSpec({
    ...base().spec,
    coldStartTimeoutFailoverRef: { service: "fb", port: 80 },
  });
  assert.equal(fb.coldStartTimeoutFailoverRef?.timeoutSeconds, 30);
  const noKind = parseHTTPScaledObjectSpec({
    scaleTargetRef: { name: "x", service: "s", portName: "http" },
  });
  assert.equal(noKind.scaleTargetRef.kind, "Deployment");
  assert.equal(noKind.scaleTargetRef.apiVersion, "apps/v1");
});

Deno.test("status strings match the Go add-on", () => {
  const spec = parseHTTPScaledObject(base()).spec;
  assert.equal(targetWorkloadOf(spec), "apps/v1/Deployment/app");
  assert.equal(targetServiceOf(spec), "app:8080");
  const named = parseHTTPScaledObjectSpec({
    scaleTargetRef: { name: "x", service: "s", portName: "http" },
  });
  assert.equal(targetServiceOf(named), "s:http");
});

Deno.test("deprecated targetPendingRequests applies only without scalingMetric", () => {
  const s = parseHTTPScaledObjectSpec({ ...base().spec, targetPendingRequests: 7 });
  assert.deepEqual(scalingMetricOf(s), { type: "concurrency", targetValue: 7 });
  const s2 = parseHTTPScaledObjectSpec({
    ...base().spec,
    targetPendingRequests: 7,
    scalingMetric: { concurrency: { targetValue: 3 } },
  });
  assert.deepEqual(scalingMetricOf(s2), { type: "concurrency", targetValue: 3 });
});

Deno.test("seed spelling scaleTargetRef.deployment is accepted as deprecated", () => {
  const s = parseHTTPScaledObjectSpec({
    scaleTargetRef: { deployment: "xkcd", service: "xkcd", port: 8080 },
  });
  assert.equal(s.scaleTargetRef.name, "xkcd");
  assert.equal(s.scaleTargetRef.kind, "Deployment");
  assert.equal(s.scaleTargetRef.apiVersion, "apps/v1");
  assert.equal(s.scaleTargetRef.deprecatedDeploymentField, true);
  assert.throws(
    () =>
      parseHTTPScaledObjectSpec({
        scaleTargetRef: { name: "a", deployment: "b", service: "s", port: 1 },
      }),
    /spec\.scaleTargetRef\.deployment: deployment is a deprecated spelling of name/,
  );
});

Deno.test("invalid objects: each rule names the field and what to fix", () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    [
      "both port and portName",
      { scaleTargetRef: { name: "a", service: "s", port: 80, portName: "http" } },
      /spec\.scaleTargetRef\.portName: set either port or portName, not both/,
    ],
    [
      "neither port nor portName",
      { scaleTargetRef: { name: "a", service: "s" } },
      /spec\.scaleTargetRef\.port: set one of port \(a number\) or portName/,
    ],
    [
      "failover with both",
      {
        scaleTargetRef: { name: "a", service: "s", port: 80 },
        coldStartTimeoutFailoverRef: { service: "f", port: 1, portName: "x" },
      },
      /spec\.coldStartTimeoutFailoverRef\.portName: set either port or portName, not both/,
    ],
    [
      "concurrency and requestRate",
      {
        scaleTargetRef: { name: "a", service: "s", port: 80 },
        scalingMetric: { concurrency: {}, requestRate: {} },
      },
      /spec\.scalingMetric\.requestRate: concurrency and requestRate are mutually exclusive/,
    ],
    [
      "missing service",
      { scaleTargetRef: { name: "a", port: 80 } },
      /spec\.scaleTargetRef\.service: /,
    ],
    [
      "missing name",
      { scaleTargetRef: { service: "s", port: 80 } },
      /spec\.scaleTargetRef\.name: name of the workload to scale is required/,
    ],
    [
      "port out of range",
      { scaleTargetRef: { name: "a", service: "s", port: 70000 } },
      /spec\.scaleTargetRef\.port: must be between 1 and 65535/,
    ],
    [
      "max below min",
      { scaleTargetRef: { name: "a", service: "s", port: 80 }, replicas: { min: 5, max: 2 } },
      /spec\.replicas\.max: max \(2\) must be at least min \(5\)/,
    ],
    [
      "bad duration",
      {
        scaleTargetRef: { name: "a", service: "s", port: 80 },
        timeouts: { conditionWait: "ten seconds" },
      },
      /spec\.timeouts\.conditionWait: "ten seconds" is not a duration/,
    ],
    [
      "zero granularity",
      {
        scaleTargetRef: { name: "a", service: "s", port: 80 },
        scalingMetric: { requestRate: { granularity: "0s" } },
      },
      /spec\.scalingMetric\.requestRate\.granularity: must be greater than 0/,
    ],
    [
      "window shorter than granularity",
      {
        scaleTargetRef: { name: "a", service: "s", port: 80 },
        scalingMetric: { requestRate: { window: "1s", granularity: "2s" } },
      },
      /spec\.scalingMetric\.requestRate\.window: window \(1s\) must be at least granularity \(2s\)/,
    ],
    [
      "empty header name",
      { scaleTargetRef: { name: "a", service: "s", port: 80 }, headers: [{ name: "" }] },
      /spec\.headers\.0\.name: header name must not be empty/,
    ],
    [
      "negative scaledownPeriod",
      { scaleTargetRef: { name: "a", service: "s", port: 80 }, scaledownPeriod: -1 },
      /spec\.scaledownPeriod: must be 0 or more/,
    ],
  ];
  for (const [what, spec, re] of cases) {
    assert.throws(() => parseHTTPScaledObjectSpec(spec), re, what);
  }
});

Deno.test("parseHTTPScaledObject names the object and lists every problem", () => {
  const bad = {
    metadata: { name: "x", namespace: "n" },
    spec: { scaleTargetRef: { service: "s" } },
  };
  try {
    parseHTTPScaledObject(bad);
    assert.fail("expected an error");
  } catch (e) {
    assert.ok(e instanceof InvalidHTTPScaledObject);
    assert.equal(e.key, "n/x");
    assert.match(e.message, /^HTTPScaledObject n\/x is invalid: /);
    assert.match(e.message, /spec\.scaleTargetRef\.port: /);
    assert.match(e.message, /spec\.scaleTargetRef\.name: /);
  }
});

// parseHTTPScaledObject runs zod's compiled fast path (z.compile), which is
// generated code separate from the schema's own parser: it must accept,
// reject and shape output exactly as the schema does.
Deno.test("the compiled parser agrees with the schema on every field changed to odd values", () => {
  // Until a large batch is announced, the generic parser (no codegen, less memory).
  if (!compiledParsing()) {
    expectHTTPScaledObjects(999);
    assert.equal(compiledParsing(), false);
  }
  expectHTTPScaledObjects(1000);
  assert.equal(compiledParsing(), true);
  const full = {
    apiVersion: "http.keda.sh/v1alpha1",
    kind: "HTTPScaledObject",
    metadata: {
      name: "app",
      namespace: "team-a",
      uid: "u",
      generation: 3,
      resourceVersion: "7",
      labels: { a: "b" },
      annotations: { c: "d" },
      finalizers: ["f"],
      deletionTimestamp: null,
      creationTimestamp: "2024-01-01T00:00:00Z",
    },
    spec: {
      hosts: ["app.example.com"],
      pathPrefixes: ["/api"],
      headers: [{ name: "x-a", value: "1" }, { name: "x-b" }],
      scaleTargetRef: { name: "app", kind: "Deployment", service: "app", port: 8080 },
      coldStartTimeoutFailoverRef: { service: "fb", portName: "http", timeoutSeconds: 5 },
      replicas: { min: 1, max: 5 },
      targetPendingRequests: 50,
      scaledownPeriod: 60,
      initialCooldownPeriod: 10,
      scalingMetric: { requestRate: { targetValue: 10, window: "2m", granularity: "2s" } },
      timeouts: { conditionWait: "20s", responseHeader: "30s" },
    },
    status: {
      targetWorkload: "apps/v1/Deployment/app",
      conditions: [{ type: "Ready", status: "True", observedGeneration: 3, reason: "r" }],
    },
  };
  const values: unknown[] = [
    undefined,
    null,
    "",
    "x",
    "-1s",
    "0s",
    "abc",
    -1,
    0,
    1.5,
    65536,
    NaN,
    true,
    [],
    [""],
    {},
    { a: 1 },
    "True",
  ];
  // Every path into `full`, each set to each odd value (undefined deletes the key).
  const paths: string[][] = [];
  const walk = (v: unknown, at: string[]) => {
    paths.push(at);
    if (v && typeof v === "object") {
      for (const [k, c] of Object.entries(v)) walk(c, [...at, k]);
    }
  };
  walk(full, []);
  const outcome = (run: () => unknown) => {
    try {
      return { ok: run() };
    } catch (e) {
      return { error: (e as Error).message };
    }
  };
  let rejected = 0;
  for (const path of paths.slice(1)) {
    for (const value of values) {
      const input = structuredClone(full) as Record<string, unknown>;
      let at = input;
      for (const k of path.slice(0, -1)) at = at[k] as Record<string, unknown>;
      if (value === undefined) delete at[path.at(-1)!];
      else at[path.at(-1)!] = structuredClone(value);
      const generic = HTTPScaledObjectSchema.safeParse(input);
      const compiled = outcome(() => parseHTTPScaledObject(input));
      if (generic.success) {
        assert.deepStrictEqual(compiled, { ok: generic.data }, path.join("."));
        // Same key order too: /routing_table and status JSON come from it.
        assert.equal(JSON.stringify(compiled.ok), JSON.stringify(generic.data), path.join("."));
      } else {
        rejected++;
        assert.ok("error" in compiled, `${path.join(".")}=${String(value)} must be rejected`);
        // The same problems, worded the same way.
        assert.ok(compiled.error?.endsWith(`is invalid: ${formatIssues(generic.error)}`));
      }
    }
  }
  assert.ok(rejected > 100, `only ${rejected} inputs were rejected: the mutations are too tame`);
});
