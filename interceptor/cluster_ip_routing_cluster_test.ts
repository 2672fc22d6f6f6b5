/**
 * KEDA_HTTP_DIRECT_POD_ROUTING=false against a real cluster: the
 * interceptor waits for a ready endpoint as always, then sends to the
 * Service's cluster IP, which the real kube-proxy forwards to the pod.
 */
import assert from "node:assert/strict";
import { startCluster } from "../tests/cluster/mod.ts";
import type { KubeObject } from "../tests/cluster/mod.ts";
import { appObjects, endpointSlice, Netns, startInterceptor } from "./cluster_testing.ts";

Deno.test({
  name: "KEDA_HTTP_DIRECT_POD_ROUTING=false forwards through the cluster IP (cluster, kube-proxy)",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using cluster = await startCluster({ node: true });
  const ns = await cluster.createNamespace("cip");
  await using net = await Netns.create();
  const app = await net.startApp({ name: "cip" });
  // The host reaches a cluster IP from the bridge address (10.244.0.1), which kube-proxy does
  // not masquerade (it is in the pod CIDR); a pod would know the way back, this netns must be told.
  const route = await new Deno.Command("ip", {
    args: ["-n", net.name, "route", "replace", "10.244.0.0/16", "via", net.hostIp],
  }).output();
  assert.equal(route.code, 0, new TextDecoder().decode(route.stderr));
  const objs = appObjects({ namespace: ns, name: "cip", spec: { hosts: ["cip.test"] } });
  const apply = (o: unknown[]) => cluster.applyYaml(o as KubeObject[], { namespace: ns });
  await apply([objs.service, objs.httpso]);
  const scaleTo = (ready: boolean) =>
    apply([endpointSlice({
      namespace: ns,
      service: "cip",
      endpoints: ready ? [{ ip: app.ip, ready: true }] : [],
    })]);
  await scaleTo(false);
  const svc = await cluster.client.get<{ spec: { clusterIP: string } }>(
    `/api/v1/namespaces/${ns}/services/cip`,
  );
  const clusterIP = svc.spec.clusterIP;
  assert.match(clusterIP, /^10\.96\./);
  await using ic = await startInterceptor({
    kubeconfigPath: cluster.kubeconfigPath,
    env: { KEDA_HTTP_DIRECT_POD_ROUTING: "false", KEDA_HTTP_REQUEST_TIMEOUT: "30s" },
  });
  await cluster.waitFor(async () => {
    const t = await ic.adminJson<{ routes: Record<string, unknown> }>("/routing_table");
    return `${ns}/cip` in t.routes;
  }, { what: "the route" });
  // Held while no pod is ready, although the cluster IP exists all along.
  const pending = ic.request("cip.test", "/hello");
  await new Promise((r) => setTimeout(r, 300));
  await scaleTo(true);
  const res = await pending;
  const body = await res.text();
  assert.equal(res.status, 200, body);
  assert.equal(body, "hello from cip");
  assert.equal(res.headers.get("x-keda-http-cold-start"), "true");
  const d = await ic.adminJson<Record<string, { ready: string[] }>>("/deployments");
  assert.deepEqual(d[`${ns}/cip:80`]?.ready, [`${clusterIP}:80`]);
});
