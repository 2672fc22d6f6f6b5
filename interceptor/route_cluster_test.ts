/**
 * InterceptorRoutes through the interceptor process against a real
 * kube-apiserver: routes and labelled ConfigMaps picked up without a
 * restart, static routes that never count, the placeholder that does, and
 * an InterceptorRoute taking over from an HTTPScaledObject of the same name.
 */
import assert from "node:assert/strict";
import { startCluster } from "../tests/cluster/mod.ts";
import type { KubeObject } from "../tests/cluster/mod.ts";
import { parseQueueCounts } from "../shared/queue_counts.ts";
import { appObjects, endpointSlice, Netns, startInterceptor } from "./cluster_testing.ts";

type Obj = KubeObject;

function interceptorRoute(ns: string, name: string, spec: Record<string, unknown>): Obj {
  return {
    apiVersion: "http.keda.sh/v1beta1",
    kind: "InterceptorRoute",
    metadata: { name, namespace: ns },
    spec: {
      target: { service: name, port: 80 },
      scalingMetric: { concurrency: { targetValue: 10 } },
      ...spec,
    },
  } as Obj;
}

function configMap(ns: string, name: string, data: Record<string, string>, labelled = true): Obj {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name,
      namespace: ns,
      ...(labelled ? { labels: { "http.keda.sh/response-body": "true" } } : {}),
    },
    data,
  } as Obj;
}

Deno.test({
  name: "interceptor with InterceptorRoutes against a real kube-apiserver (cluster)",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await using cluster = await startCluster({ node: false, controllers: false });
  const ns = await cluster.createNamespace("iroute");
  await using net = await Netns.create();
  const app = await net.startApp({ name: "web" });
  const apply = (objs: unknown[]) => cluster.applyYaml(objs as Obj[], { namespace: ns });
  const scaleTo = (service: string, ready: boolean) =>
    apply([endpointSlice({
      namespace: ns,
      service,
      endpoints: ready ? [{ ip: app.ip, ready: true }] : [],
    })]);

  const web = appObjects({ namespace: ns, name: "web" });
  await apply([web.service]);
  await scaleTo("web", true);
  // Go HEAD's defaults hold a request with no ready endpoint forever; bound them here.
  await using ic = await startInterceptor({
    kubeconfigPath: cluster.kubeconfigPath,
    env: { KEDA_HTTP_REQUEST_TIMEOUT: "10s" },
  });
  const queue = async () => parseQueueCounts(await (await ic.admin("/queue")).text());
  const key = `${ns}/web`;

  await t.step("a new InterceptorRoute with two rules routes without a restart", async () => {
    await apply([interceptorRoute(ns, "web", {
      rules: [{ hosts: ["web.test"] }, { hosts: ["alias.test"], paths: [{ value: "/v2" }] }],
    })]);
    const res = await cluster.waitFor(async () => {
      const r = await ic.request("web.test", "/hello");
      const body = await r.text();
      return r.status === 200 && body;
    }, { what: "the route in the interceptor" });
    assert.equal(res, "hello from web");
    const alias = await ic.request("alias.test", "/v2/x");
    assert.equal(alias.status, 200);
    await alias.body?.cancel();
    const miss = await ic.request("alias.test", "/v1");
    assert.equal(miss.status, 404);
    await miss.body?.cancel();
    const table = await ic.adminJson<{ routes: Record<string, { kind: string }> }>(
      "/routing_table",
    );
    assert.equal(table.routes[key]?.kind, "InterceptorRoute");
  });

  await t.step(
    "static routes answer from a labelled ConfigMap, updates apply live, nothing is counted",
    async () => {
      await apply([
        configMap(ns, "pages", { "index.html": "<h1>v1</h1>", "health.txt": "ok" }),
        configMap(ns, "unlabelled", { "index.html": "hidden" }, false),
        interceptorRoute(ns, "web", {
          rules: [{ hosts: ["web.test"] }],
          staticRoutes: [
            {
              rules: [{ paths: [{ value: "/health.txt" }] }],
              responseMode: "Always",
              response: { bodyFromConfigMap: { name: "pages" } },
            },
            {
              rules: [{ paths: [{ value: "/hidden" }] }],
              responseMode: "Always",
              response: { bodyFromConfigMap: { name: "unlabelled", key: "index.html" } },
            },
            {
              rules: [{ paths: [{ value: "/" }], headers: [{ name: "X-Static" }] }],
              responseMode: "Always",
              response: { bodyFromConfigMap: { name: "pages" } },
            },
          ],
        }),
      ]);
      await cluster.waitFor(async () => {
        const r = await ic.request("web.test", "/", { headers: { "x-static": "1" } });
        return (await r.text()) === "<h1>v1</h1>";
      }, { what: "the static route from the ConfigMap" });
      const before = (await queue())[key]?.RequestCount ?? 0;
      const health = await ic.request("web.test", "/health.txt");
      assert.equal(await health.text(), "ok");
      assert.equal(health.headers.get("content-type"), "text/plain; charset=utf-8");
      const hidden = await ic.request("web.test", "/hidden");
      assert.equal(hidden.status, 500);
      assert.match(await hidden.text(), /ConfigMap .*\/unlabelled not found/);
      await apply([configMap(ns, "pages", { "index.html": "<h1>v2</h1>", "health.txt": "ok" })]);
      await cluster.waitFor(async () => {
        const r = await ic.request("web.test", "/", { headers: { "x-static": "1" } });
        return (await r.text()) === "<h1>v2</h1>";
      }, { what: "the ConfigMap update in the static response" });
      assert.equal((await queue())[key]?.RequestCount ?? 0, before, "static requests never count");
    },
  );

  await t.step(
    "the placeholder answers at once at zero endpoints, and the request counts",
    async () => {
      await apply([interceptorRoute(ns, "web", {
        rules: [{ hosts: ["web.test"] }],
        coldStart: {
          placeholder: { response: { body: "starting", headers: { "Retry-After": "1" } } },
        },
        timeouts: { request: "30s" },
      })]);
      await scaleTo("web", false);
      await cluster.waitFor(async () => {
        const r = await ic.request("web.test", "/");
        return r.status === 503 && (await r.text()) === "starting";
      }, { what: "the placeholder" });
      const before = (await queue())[key]?.RequestCount ?? 0;
      const r = await ic.request("web.test", "/");
      assert.equal(r.status, 503);
      assert.equal(r.headers.get("retry-after"), "1");
      await r.body?.cancel();
      assert.equal((await queue())[key]?.RequestCount, before + 1);
      await scaleTo("web", true);
      await cluster.waitFor(async () => {
        const w = await ic.request("web.test", "/hello");
        return w.status === 200 && (await w.text()) === "hello from web";
      }, { what: "the app once it is ready" });
    },
  );

  await t.step(
    "an HTTPScaledObject of the same name routes again once the route is deleted",
    async () => {
      const hso = appObjects({ namespace: ns, name: "web", spec: { hosts: ["legacy.test"] } });
      await apply([hso.httpso]);
      // The InterceptorRoute still wins: legacy.test is not routed.
      await new Promise((r) => setTimeout(r, 500));
      const shadowed = await ic.request("legacy.test", "/hello");
      assert.equal(shadowed.status, 404);
      await shadowed.body?.cancel();
      await cluster.client.delete(
        `/apis/http.keda.sh/v1beta1/namespaces/${ns}/interceptorroutes/web`,
      );
      await cluster.waitFor(async () => {
        const r = await ic.request("legacy.test", "/hello");
        return r.status === 200 && (await r.text()) === "hello from web";
      }, { what: "the HTTPScaledObject's route after the InterceptorRoute is gone" });
      const table = await ic.adminJson<{ routes: Record<string, { kind: string }> }>(
        "/routing_table",
      );
      assert.equal(table.routes[key]?.kind, "HTTPScaledObject");
    },
  );
});
