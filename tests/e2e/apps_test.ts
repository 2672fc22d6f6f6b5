/**
 * The suite's manifests are what users write: they parse as YAML, name the
 * right objects, and the HTTPScaledObject passes the shared schema the
 * programs use (so a failure in the suite is never a malformed fixture).
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { parseHTTPScaledObject, scalingMetricOf } from "../../shared/httpso.ts";
import { parseInterceptorRoute, scalingMetricsOf } from "../../shared/interceptor_route.ts";
import {
  appYaml,
  httpScaledObjectYaml,
  interceptorRouteYaml,
  scaledObjectYaml,
  workloadYaml,
} from "./apps.ts";
import { relativePath } from "./system.ts";

// deno-lint-ignore no-explicit-any
type Doc = Record<string, any>;

function docs(text: string): Doc[] {
  return parseAllDocuments(text).map((d) => d.toJS() as Doc);
}

Deno.test("appYaml: Deployment at 0, Service, HTTPScaledObject in the Go add-on's shape", () => {
  const [deployment, service, httpso, ...rest] = docs(appYaml("ns1", {
    name: "beta",
    hosts: ["beta.e2e.test", "shop.e2e.test"],
    pathPrefixes: ["/api"],
    headers: [{ name: "X-Canary", value: "1" }, { name: "x-present" }],
    max: 6,
    scaledownPeriod: 7,
    scalingMetric: { requestRate: { targetValue: 4, window: "10s", granularity: "1s" } },
    text: "hello: world",
  }, "demo-app:x"));
  assert.equal(rest.length, 0);
  assert.equal(deployment!.kind, "Deployment");
  assert.equal(deployment!.spec.replicas, 0);
  assert.equal(deployment!.spec.template.spec.containers[0].image, "demo-app:x");
  assert.deepEqual(deployment!.spec.template.spec.containers[0].env[0], {
    name: "RESPONSE_TEXT",
    value: "hello: world",
  });
  assert.equal(service!.kind, "Service");
  assert.deepEqual(service!.spec.selector, { app: "beta" });

  const parsed = parseHTTPScaledObject(httpso);
  assert.equal(parsed.metadata.namespace, "ns1");
  assert.deepEqual(parsed.spec.hosts, ["beta.e2e.test", "shop.e2e.test"]);
  assert.deepEqual(parsed.spec.pathPrefixes, ["/api"]);
  assert.deepEqual(parsed.spec.headers, [{ name: "X-Canary", value: "1" }, { name: "x-present" }]);
  assert.equal(parsed.spec.scaledownPeriod, 7);
  assert.deepEqual(parsed.spec.replicas, { min: 0, max: 6 });
  assert.equal(scalingMetricOf(parsed.spec).type, "requestRate");
});

Deno.test("appYaml: without a Service when asked; the HTTPScaledObject may name another one", () => {
  const all = docs(
    appYaml("ns1", { name: "broken", service: "no-such-svc", createService: false }),
  );
  assert.deepEqual(all.map((d) => d.kind), ["Deployment", "HTTPScaledObject"]);
  const parsed = parseHTTPScaledObject(all[1]);
  assert.equal(parsed.spec.scaleTargetRef.service, "no-such-svc");
  assert.equal(scalingMetricOf(parsed.spec).type, "concurrency");
});

Deno.test("httpScaledObjectYaml: concurrency target", () => {
  const [o] = docs(httpScaledObjectYaml("n", {
    name: "a",
    scalingMetric: { concurrency: { targetValue: 10 } },
  }));
  const parsed = parseHTTPScaledObject(o);
  const m = scalingMetricOf(parsed.spec);
  assert.equal(m.type, "concurrency");
  assert.equal(m.targetValue, 10);
});

Deno.test("relativePath: from a temp dir to the repo's k8s/", () => {
  assert.equal(relativePath("/tmp/x-1", "/work/main/k8s"), "../../work/main/k8s");
  assert.equal(relativePath("/work/main/dist/deploy", "/work/main/k8s"), "../../k8s");
  assert.equal(relativePath("/a/b", "/a/b"), ".");
});

Deno.test("interceptorRouteYaml: rules, both metrics; passes the shared schema", () => {
  const [o, ...rest] = docs(interceptorRouteYaml("ns1", {
    name: "both",
    rules: [
      { hosts: ["both.e2e.test", "*.both.e2e.test"], paths: ["/api"] },
      { headers: [{ name: "X-Canary", value: "1" }, { name: "x-present" }] },
    ],
    scalingMetric: {
      concurrency: { targetValue: 10 },
      requestRate: { targetValue: 1000, window: "10s", granularity: "1s" },
    },
  }));
  assert.equal(rest.length, 0);
  const parsed = parseInterceptorRoute(o);
  assert.equal(parsed.metadata.namespace, "ns1");
  assert.deepEqual(parsed.spec.target, { service: "both", port: 8080 });
  assert.equal(parsed.spec.rules?.length, 2);
  assert.deepEqual(parsed.spec.rules?.[0]?.hosts, ["both.e2e.test", "*.both.e2e.test"]);
  assert.deepEqual(parsed.spec.rules?.[0]?.paths, [{ value: "/api" }]);
  assert.deepEqual(parsed.spec.rules?.[1]?.headers, [
    { name: "X-Canary", value: "1" },
    { name: "x-present" },
  ]);
  assert.deepEqual(scalingMetricsOf(parsed.spec).map((m) => [m.type, m.targetValue]), [
    ["concurrency", 10],
    ["requestRate", 1000],
  ]);
});

Deno.test("scaledObjectYaml: external-push trigger naming the InterceptorRoute", () => {
  const [so] = docs(scaledObjectYaml("ns1", {
    name: "app",
    deployment: "web",
    scalerAddress: "keda-add-ons-http-external-scaler.kedahttp-e2e:9090",
    interceptorRoute: "route",
    cooldownPeriod: 3,
  }));
  assert.equal(so!.apiVersion, "keda.sh/v1alpha1");
  assert.equal(so!.kind, "ScaledObject");
  assert.deepEqual(so!.metadata, { name: "app", namespace: "ns1" });
  assert.deepEqual(so!.spec, {
    scaleTargetRef: { name: "web" },
    minReplicaCount: 0,
    maxReplicaCount: 10,
    cooldownPeriod: 3,
    triggers: [{
      type: "external-push",
      metadata: {
        scalerAddress: "keda-add-ons-http-external-scaler.kedahttp-e2e:9090",
        interceptorRoute: "route",
      },
    }],
  });
});

Deno.test("workloadYaml: Deployment and Service only", () => {
  assert.deepEqual(docs(workloadYaml("ns1", { name: "w" })).map((d) => d.kind), [
    "Deployment",
    "Service",
  ]);
});

Deno.test("scaledObjectYaml: pollingInterval only when set", () => {
  const base = { name: "a", scalerAddress: "s.ns:9090" };
  assert.equal(docs(scaledObjectYaml("n", base))[0]!.spec.pollingInterval, undefined);
  assert.equal(
    docs(scaledObjectYaml("n", { ...base, pollingInterval: 3 }))[0]!.spec.pollingInterval,
    3,
  );
});
