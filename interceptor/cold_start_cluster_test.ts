/**
 * Scale from zero with real pods: a Deployment of the demo app at 0
 * replicas, a request held by the interceptor, the test scales the
 * Deployment to 1, the pod starts and turns ready, the EndpointSlice
 * controller publishes it, and the held request completes with the app's
 * answer.
 */
import assert from "node:assert/strict";
import { startCluster } from "../tests/cluster/mod.ts";
import type { KubeObject } from "../tests/cluster/mod.ts";
import { demoAppManifests } from "../tests/fixtures/demo_manifests.ts";
import { parseQueueCounts } from "../shared/queue_counts.ts";
import { startInterceptor } from "./cluster_testing.ts";

Deno.test({
  name: "cold start: a request held at 0 replicas completes once the test scales to 1",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using cluster = await startCluster();
  const ns = await cluster.createNamespace("icold");
  await cluster.applyYaml(
    demoAppManifests({
      namespace: ns,
      replicas: 0,
      host: "demo.test",
      spec: { timeouts: { conditionWait: "120s" } },
    }) as KubeObject[],
    { namespace: ns },
  );

  await using ic = await startInterceptor({ kubeconfigPath: cluster.kubeconfigPath });
  await cluster.waitFor(async () => {
    const t = await ic.adminJson<{ routes: Record<string, unknown> }>("/routing_table");
    return `${ns}/demo` in t.routes;
  }, { what: "the route" });

  const pending = ic.request("demo.test", "/anything?from=test");
  await cluster.waitFor(async () => {
    const q = parseQueueCounts(await (await ic.admin("/queue")).text());
    return q[`${ns}/demo`]?.Concurrency === 1;
  }, { what: "the request to be held" });

  await cluster.client.patch(`/apis/apps/v1/namespaces/${ns}/deployments/demo`, {
    spec: { replicas: 1 },
  });
  const res = await pending;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-keda-http-cold-start"), "true");
  const body = await res.json();
  assert.equal(body.path, "/anything");
  assert.deepEqual(body.query, { from: "test" });
  assert.equal(body.host, "demo.test");
  assert.match(String(body.pod), /^demo-/);
  await cluster.waitFor(async () => {
    const q = parseQueueCounts(await (await ic.admin("/queue")).text());
    return q[`${ns}/demo`]?.Concurrency === 0;
  }, { what: "concurrency back to 0" });
});
