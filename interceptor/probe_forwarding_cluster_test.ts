/**
 * Probe-driven forwarding against a real kube-apiserver: Pod objects carry
 * the readiness probes, EndpointSlices (written by the test, as the
 * EndpointSlice controller would) list the pods as not ready, and the apps
 * run in network namespaces. The kubelet never marks them ready here, so an
 * answer before the slice says so can only come from our own probing.
 */
import assert from "node:assert/strict";
import { startCluster } from "../tests/cluster/mod.ts";
import type { KubeObject } from "../tests/cluster/mod.ts";
import { appObjects, Netns, startInterceptor } from "./cluster_testing.ts";
import { PROBE_STARTING_PODS_ANNOTATION } from "../shared/routing_table.ts";

function podObject(ns: string, name: string, container: Record<string, unknown>): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { namespace: ns, name },
    spec: { nodeName: "nowhere", containers: [{ name: "app", image: "demo", ...container }] },
  } as KubeObject;
}

function startingSlice(
  ns: string,
  service: string,
  port: number,
  eps: Array<{ ip: string; pod: string; ready: boolean; podNamespace?: string }>,
): KubeObject {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      namespace: ns,
      name: `${service}-slice`,
      labels: { "kubernetes.io/service-name": service },
    },
    addressType: "IPv4",
    ports: [{ name: "http", port, protocol: "TCP" }],
    endpoints: eps.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready, serving: e.ready, terminating: false },
      targetRef: { kind: "Pod", namespace: e.podNamespace ?? ns, name: e.pod },
    })),
  } as KubeObject;
}

const HTTP_PROBE = (path: string, port = 8080) => ({
  ports: [{ containerPort: port }],
  readinessProbe: { httpGet: { path, port: 8080 }, periodSeconds: 10 },
});

Deno.test({
  name: "probe-driven forwarding against a cluster",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await using cluster = await startCluster({ node: false, controllers: false });
  const ns = await cluster.createNamespace("probe");
  await using netLate = await Netns.create();
  await using netOk = await Netns.create();
  await using netNever = await Netns.create();
  await using netVictim = await Netns.create();
  const [late, ok, never, victim] = await Promise.all([
    netLate.startApp({ name: "late", env: { READY_AFTER_MS: "1500" } }),
    netOk.startApp({ name: "ok" }),
    // Its port is open and serves, but its readiness path never passes.
    netNever.startApp({ name: "never", env: { READY_AFTER_MS: "-1" } }),
    // Another tenant's pod, whose probe would pass.
    netVictim.startApp({ name: "victim" }),
  ]);
  const other = await cluster.createNamespace("probe-other");
  const apply = (objs: KubeObject[]) => cluster.applyYaml(objs, { namespace: ns });
  const route = (name: string, extra: Record<string, unknown> = {}) => {
    const o = appObjects({
      namespace: ns,
      name,
      spec: { hosts: [`${name}.test`], timeouts: { conditionWait: "3s" } },
    });
    Object.assign((o.httpso as { metadata: Record<string, unknown> }).metadata, extra);
    return [o.service, o.httpso] as KubeObject[];
  };
  // No controllers here: the ServiceAccount admission needs the namespace's default one.
  await apply([{ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "default" } }]);
  await cluster.applyYaml([
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "default" } },
    podObject(other, "victim-1", HTTP_PROBE("/hello")),
  ], { namespace: other });
  await apply([
    ...route("late"),
    ...route("never"),
    ...route("exec"),
    ...route("optout", { annotations: { [PROBE_STARTING_PODS_ANNOTATION]: "false" } }),
    ...route("refused"),
    ...route("cross"),
    podObject(ns, "late-1", HTTP_PROBE("/ready")),
    podObject(ns, "never-1", HTTP_PROBE("/ready")),
    podObject(ns, "exec-1", {
      readinessProbe: { exec: { command: ["true"] }, periodSeconds: 10 },
    }),
    podObject(ns, "optout-1", HTTP_PROBE("/hello")),
    // The probe (port 8080) passes, the port the slice lists (8090) refuses.
    podObject(ns, "refused-1", {
      ports: [{ containerPort: 8090 }],
      readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 10 },
    }),
    startingSlice(ns, "late", 8080, [{ ip: late.ip, pod: "late-1", ready: false }]),
    startingSlice(ns, "never", 8080, [{ ip: never.ip, pod: "never-1", ready: false }]),
    startingSlice(ns, "exec", 8080, [{ ip: ok.ip, pod: "exec-1", ready: false }]),
    startingSlice(ns, "optout", 8080, [{ ip: ok.ip, pod: "optout-1", ready: false }]),
    startingSlice(ns, "refused", 8090, [{ ip: ok.ip, pod: "refused-1", ready: false }]),
    // This namespace's slice names the other namespace's pod, at its address.
    startingSlice(ns, "cross", 8080, [
      { ip: victim.ip, pod: "victim-1", podNamespace: other, ready: false },
    ]),
  ]);
  // No kubelet here: give each pod the address its slice lists, as a kubelet
  // would (the interceptor probes only a pod that owns the slice's address).
  const podIPs: Record<string, string> = {
    "late-1": late.ip,
    "never-1": never.ip,
    "exec-1": ok.ip,
    "optout-1": ok.ip,
    "refused-1": ok.ip,
  };
  for (const [name, ip] of Object.entries(podIPs)) {
    await cluster.client.patch(`/api/v1/namespaces/${ns}/pods/${name}/status`, {
      status: { podIP: ip, podIPs: [{ ip }] },
    });
  }
  await cluster.client.patch(`/api/v1/namespaces/${other}/pods/victim-1/status`, {
    status: { podIP: victim.ip, podIPs: [{ ip: victim.ip }] },
  });
  await using ic = await startInterceptor({ kubeconfigPath: cluster.kubeconfigPath });
  await cluster.waitFor(async () => {
    const d = await ic.adminJson<Record<string, { notReady: number }>>("/deployments");
    return ["late", "never", "exec", "optout", "refused", "cross"].every((n) =>
      d[`${ns}/${n}:80`]?.notReady === 1
    );
  }, { what: "the starting pods in the interceptor's view" });
  const proxied = async (ip: string, port: number) =>
    (await (await fetch(`http://${ip}:${port}/stats`)).json()).proxied as number;

  await t.step("a held request is answered once the pod passes its own probe", async () => {
    const res = await ic.request("late.test", "/hello");
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello from late");
    const d = await ic.adminJson<Record<string, { ready: string[]; early?: true }>>(
      "/deployments",
    );
    assert.equal(d[`${ns}/late:80`]?.early, true, "served by an early endpoint");
    assert.deepEqual(d[`${ns}/late:80`]?.ready, [`${late.ip}:8080`]);
  });

  await t.step(
    "a failing probe path, an exec probe, an opt-out: held until the slice says ready",
    async () => {
      const before = await proxied(ok.ip, 8080);
      const neverBefore = await proxied(never.ip, 8080);
      const results = await Promise.all(
        ["never", "exec", "optout"].map(async (n) => {
          const r = await ic.request(`${n}.test`, "/hello");
          await r.body?.cancel();
          return r.status;
        }),
      );
      assert.deepEqual(results, [504, 504, 504]);
      assert.equal(await proxied(ok.ip, 8080), before, "no request reached the app early");
      assert.equal(await proxied(never.ip, 8080), neverBefore, "nor the one failing its probe");
      // Once the slice says ready, the opted-out route is served as always.
      await apply([
        startingSlice(ns, "optout", 8080, [{ ip: ok.ip, pod: "optout-1", ready: true }]),
      ]);
      await cluster.waitFor(
        async () => (await ic.request("optout.test", "/hello")).status === 200,
        {
          what: "the opted-out route served once ready",
        },
      );
    },
  );

  await t.step(
    "an early pod that refuses the forward: back on hold (504 at the deadline, not 502)",
    async () => {
      const res = await ic.request("refused.test", "/hello");
      const text = await res.text();
      assert.equal(res.status, 504, text);
      assert.match(text, /did not become ready/);
      const d = await ic.adminJson<Record<string, { early?: true }>>("/deployments");
      assert.equal(d[`${ns}/refused:80`]?.early, true, "the pod had passed its probe");
      // Once a pod there answers and the slice says ready, requests are served.
      await netOk.startApp({ name: "ok2", port: 8090 });
      await apply([
        startingSlice(ns, "refused", 8090, [{ ip: ok.ip, pod: "refused-1", ready: true }]),
      ]);
      await cluster.waitFor(async () => {
        const r = await ic.request("refused.test", "/hello");
        return r.status === 200 && (await r.text()) === "hello from ok2";
      }, { what: "the route served once the pod is ready" });
    },
  );

  await t.step(
    "a slice naming another namespace's pod: that pod is never probed or used",
    async () => {
      const before = (await (await fetch(`http://${victim.ip}:8080/stats`)).json()).total as number;
      const res = await ic.request("cross.test", "/hello");
      await res.body?.cancel();
      assert.equal(res.status, 504);
      const after = (await (await fetch(`http://${victim.ip}:8080/stats`)).json()).total as number;
      // Only the second /stats itself was counted in between.
      assert.equal(after, before + 1, "no probe and no request reached the other tenant's pod");
      const d = await ic.adminJson<Record<string, { early?: true }>>("/deployments");
      assert.equal(d[`${ns}/cross:80`]?.early, undefined);
    },
  );
});
