/**
 * The operator program: real `deno run operator/main.ts` subprocesses
 * against a real kube-apiserver, authenticated as the ServiceAccount of
 * k8s/rbac/operator.yaml (so the RBAC is proven sufficient).
 */
import assert from "node:assert/strict";
import { createLogger } from "../shared/log.ts";
import {
  type Cluster,
  type KubeObject,
  parseManifests,
  startCluster,
} from "../tests/cluster/mod.ts";
import { metricSum, type OperatorProcess, spawnOperator } from "./testing.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;
const report = createLogger({ level: "info", fields: { component: "operator-main-test" } });
const RBAC = new URL("../k8s/rbac/operator.yaml", import.meta.url);
const HTTPSO = "/apis/http.keda.sh/v1alpha1";
const SO = "/apis/keda.sh/v1alpha1";
const LEASE_S = 4;
const RETRY_S = 1;
/** Short leader-election timings so the handover test takes seconds. */
const FAST_LEASE = {
  KEDA_HTTP_OPERATOR_LEASE_DURATION: `${LEASE_S}s`,
  KEDA_HTTP_OPERATOR_RENEW_DEADLINE: "3s",
  KEDA_HTTP_OPERATOR_RETRY_PERIOD: `${RETRY_S}s`,
};

type Obj = KubeObject & {
  status?: { conditions?: Array<{ type: string; status: string }> };
};

function isReady(o: Obj): boolean {
  return o.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

/**
 * Installs k8s/rbac/operator.yaml for a test namespace (cluster-scoped names
 * suffixed) and returns a kubeconfig that authenticates as its ServiceAccount.
 */
async function operatorIdentity(cluster: Cluster, ns: string, dir: string) {
  const objects = parseManifests(await Deno.readTextFile(RBAC)).map((o) => {
    const obj = structuredClone(o) as KubeObject & {
      subjects?: Array<{ namespace?: string }>;
      roleRef?: { kind: string; name: string };
    };
    if (["ServiceAccount", "Role", "RoleBinding"].includes(obj.kind ?? "")) {
      obj.metadata!.namespace = ns;
    }
    if (obj.kind === "ClusterRole" || obj.kind === "ClusterRoleBinding") {
      obj.metadata!.name = `${obj.metadata!.name}-${ns}`;
    }
    if (obj.roleRef?.kind === "ClusterRole") obj.roleRef.name = `${obj.roleRef.name}-${ns}`;
    for (const s of obj.subjects ?? []) s.namespace = ns;
    return obj;
  });
  await cluster.client.apply(objects);
  const cleanup = async () => {
    for (const o of objects) {
      if (o.kind === "ClusterRole") {
        await cluster.client.delete(
          `/apis/rbac.authorization.k8s.io/v1/clusterroles/${o.metadata!.name}`,
        );
      } else if (o.kind === "ClusterRoleBinding") {
        await cluster.client.delete(
          `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${o.metadata!.name}`,
        );
      }
    }
  };
  const tr = await cluster.client.create<{ status: { token: string } }>(
    `/api/v1/namespaces/${ns}/serviceaccounts/keda-add-ons-http-operator/token`,
    {
      apiVersion: "authentication.k8s.io/v1",
      kind: "TokenRequest",
      spec: { expirationSeconds: 7200 },
    },
  );
  const kc = cluster.kubeConfig;
  const c = kc.getCurrentCluster()!;
  const kubeconfig = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{
      name: "test",
      cluster: {
        server: c.server,
        ...(c.caData ? { "certificate-authority-data": c.caData } : {}),
        ...(c.caFile ? { "certificate-authority": c.caFile } : {}),
      },
    }],
    users: [{ name: "operator", user: { token: tr.status.token } }],
    contexts: [{ name: "operator", context: { cluster: "test", user: "operator", namespace: ns } }],
    "current-context": "operator",
  };
  const path = `${dir}/operator-kubeconfig`;
  await Deno.writeTextFile(path, JSON.stringify(kubeconfig), { mode: 0o600 });
  return { kubeconfigPath: path, cleanup };
}

function app(ns: string, name: string): KubeObject[] {
  return [
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name, namespace: ns },
      spec: {
        replicas: 0,
        selector: { matchLabels: { app: name } },
        template: {
          metadata: { labels: { app: name } },
          spec: { containers: [{ name: "app", image: "example.invalid/app:1" }] },
        },
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace: ns },
      spec: { selector: { app: name }, ports: [{ name: "http", port: 8080 }] },
    },
    {
      apiVersion: "http.keda.sh/v1alpha1",
      kind: "HTTPScaledObject",
      metadata: { name, namespace: ns, labels: { app: name } },
      spec: {
        hosts: [`${name}.example.com`],
        scaleTargetRef: { name, service: name, portName: "http" },
        replicas: { min: 0, max: 5 },
        scaledownPeriod: 60,
      },
    },
  ];
}

async function leaderOf(ops: OperatorProcess[]): Promise<OperatorProcess[]> {
  const leaders: OperatorProcess[] = [];
  for (const op of ops) {
    const m = await op.metrics();
    if (m?.get("keda_http_operator_is_leader") === 1) leaders.push(op);
  }
  return leaders;
}

/** Object writes (not Events) an operator made, from its metrics. */
async function objectWrites(op: OperatorProcess): Promise<number> {
  const m = await op.metrics();
  if (!m) throw new Error(`operator ${op.pid} is not serving /metrics; its log:\n${op.output()}`);
  return metricSum(m, "keda_http_operator_api_writes_total") -
    (m.get('keda_http_operator_api_writes_total{resource="events",verb="create"}') ?? 0);
}

async function versions(cluster: Cluster, ns: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (
    const [kind, path] of [["httpso", `${HTTPSO}/namespaces/${ns}/httpscaledobjects`], [
      "so",
      `${SO}/namespaces/${ns}/scaledobjects`,
    ]]
  ) {
    const list = await cluster.client.list<KubeObject>(path!);
    for (const o of list.items) {
      out.set(`${kind}/${o.metadata!.name}`, o.metadata!.resourceVersion!);
    }
  }
  return out;
}

Deno.test("operator program: config errors, RBAC, leader handover, restart with 200 objects", async (t) => {
  await using cluster = await startCluster({ node: false });
  const dir = await Deno.makeTempDir({ prefix: "operator-test-" });
  const ops: OperatorProcess[] = [];
  const opNs = await cluster.createNamespace("op-system");
  const identity = await operatorIdentity(cluster, opNs, dir);
  const spawn = (env: Record<string, string> = {}) => {
    const op = spawnOperator({ kubeconfigPath: identity.kubeconfigPath, namespace: opNs, env });
    ops.push(op);
    return op;
  };
  // Each step starts with no operator from an earlier (possibly failed) step.
  const stopAll = async () => {
    for (const op of ops) await op[Symbol.asyncDispose]();
  };
  const appNamespaces: string[] = [];
  const wait = <T>(
    what: string,
    fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
    timeoutMs = 30_000,
    intervalMs = 50,
  ) => cluster.waitFor(fn, { what, timeoutMs, intervalMs });

  try {
    await t.step("invalid configuration: exit code 2 and the bad variables named", async () => {
      const run = async (env: Record<string, string>) => {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "--allow-net", "--allow-env", "--allow-read", MAIN],
          env: {
            KUBECONFIG: identity.kubeconfigPath,
            KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: "keda-http-scaler",
            KEDA_HTTP_OPERATOR_NAMESPACE: opNs,
            ...env,
          },
          stdin: "null",
          stdout: "null",
          stderr: "piped",
        }).output();
        return { code: out.code, text: new TextDecoder().decode(out.stderr) };
      };
      const bad = await run({
        KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: "",
        KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT: "99999",
      });
      assert.equal(bad.code, 2, bad.text);
      assert.match(bad.text, /KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: is required but not set/);
      assert.match(
        bad.text,
        /KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT=\\"99999\\": \\"99999\\" is not a port/,
      );
      // The Go add-on's variable names are honoured (and checked) too.
      const goName = await run({ KEDA_HTTP_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE: "1m" });
      assert.equal(goName.code, 2, goName.text);
      assert.match(
        goName.text,
        /KEDA_HTTP_OPERATOR_RENEW_DEADLINE=\\"1m\\": must be shorter than KEDA_HTTP_OPERATOR_LEASE_DURATION/,
      );
    });

    await t.step(
      "two replicas: one leads, the standby never writes; killing the leader hands over without a write or a status change",
      async () => {
        const ns = await cluster.createNamespace("op-ha");
        appNamespaces.push(ns);
        await stopAll();
        const a = spawn({ ...FAST_LEASE, KEDA_HTTP_OPERATOR_WATCH_NAMESPACE: ns });
        const b = spawn({ ...FAST_LEASE, KEDA_HTTP_OPERATOR_WATCH_NAMESPACE: ns });
        const [leader] = await wait("both serving, exactly one leader", async () => {
          if (!(await a.metrics()) || !(await b.metrics())) return false;
          const l = await leaderOf([a, b]);
          return l.length === 1 && l;
        }).catch((e) => {
          throw new Error(
            `${e.message}\n--- a (${a.pid}):\n${a.output()}\n--- b (${b.pid}):\n${b.output()}`,
          );
        });
        const standby = leader === a ? b : a;
        for (let i = 0; i < 10; i++) await cluster.client.apply(app(ns, `app-${i}`));
        await wait("10 Ready HTTPScaledObjects", async () => {
          const list = await cluster.client.list<Obj>(
            `${HTTPSO}/namespaces/${ns}/httpscaledobjects`,
          );
          return list.items.length === 10 && list.items.every(isReady);
        });
        await wait(
          "the leader's queue to drain",
          async () => (await leader!.metrics())?.get("keda_http_operator_workqueue_depth") === 0,
        );
        const before = await versions(cluster, ns);
        assert.equal(before.size, 20);
        const leaderWrites = await objectWrites(leader!);
        // 10 × (finalizer, ScaledObject, status): nothing written twice.
        assert.equal(leaderWrites, 30, `leader wrote ${leaderWrites} times`);
        assert.equal(await objectWrites(standby), 0, "a standby must not write");
        assert.deepEqual(await leaderOf([standby]), []);

        // Watch both kinds through the handover: nothing may change.
        const changes: string[] = [];
        const watching = new AbortController();
        const watchers = [
          `${HTTPSO}/namespaces/${ns}/httpscaledobjects`,
          `${SO}/namespaces/${ns}/scaledobjects`,
        ].map(
          async (path) => {
            const list = await cluster.client.list<KubeObject>(path);
            try {
              for await (
                const ev of cluster.client.watch(path, {
                  resourceVersion: list.metadata.resourceVersion,
                  signal: watching.signal,
                })
              ) {
                if (ev.type !== "BOOKMARK") {
                  changes.push(`${ev.type} ${ev.object.kind} ${ev.object.metadata?.name}`);
                }
              }
            } catch (e) {
              if (!watching.signal.aborted) throw e;
            }
          },
        );

        const killedAt = performance.now();
        leader!.kill("SIGKILL");
        await leader!.status;
        await wait(
          "the standby to lead",
          async () => (await leaderOf([standby])).length === 1,
          30_000,
        );
        const takeoverMs = performance.now() - killedAt;
        await wait("the new leader to go through every key", async () => {
          const m = await standby.metrics();
          return (m?.get('keda_http_operator_reconcile_total{result="success"}') ?? 0) >= 10 &&
            m?.get("keda_http_operator_workqueue_depth") === 0;
        });
        watching.abort();
        await Promise.all(watchers);
        assert.deepEqual(changes, [], "no object may change during the handover");
        assert.equal(await objectWrites(standby), 0, "the new leader found everything right");
        assert.deepEqual(await versions(cluster, ns), before);
        report.info("leader killed; standby took over", {
          takeoverMs: Math.round(takeoverMs),
          leaseSeconds: LEASE_S,
          retrySeconds: RETRY_S,
        });
        // Lease duration, plus the standby's observation lag (one retry period),
        // plus start-up slack for a loaded machine.
        assert.ok(
          takeoverMs <= (LEASE_S + 2 * RETRY_S + 3) * 1000,
          `takeover took ${Math.round(takeoverMs)} ms`,
        );

        // The new leader works: a new object is reconciled.
        await cluster.client.apply(app(ns, "after"));
        await wait("the new object Ready", async () => {
          const o = await cluster.client.getOrUndefined<Obj>(
            `${HTTPSO}/namespaces/${ns}/httpscaledobjects/after`,
          );
          return o && isReady(o);
        });

        // Graceful stop releases the lease.
        standby.kill("SIGTERM");
        assert.equal((await standby.status).code, 0, standby.output());
        const lease = await cluster.client.get<{ spec: { holderIdentity?: string } }>(
          `/apis/coordination.k8s.io/v1/namespaces/${opNs}/leases/http-add-on.keda.sh`,
        );
        assert.equal(lease.spec.holderIdentity ?? "", "");
      },
    );

    await t.step(
      "InterceptorRoute: Ready written as the RBAC ServiceAccount, no ScaledObject; one Deprecated Event per HTTPScaledObject",
      async () => {
        const ns = await cluster.createNamespace("op-ir");
        appNamespaces.push(ns);
        await stopAll();
        const op = spawn({ KEDA_HTTP_OPERATOR_WATCH_NAMESPACE: ns });
        const [deployment, svc, httpso] = app(ns, "web");
        await cluster.client.apply([deployment!, svc!, httpso!]);
        await cluster.client.apply({
          apiVersion: "http.keda.sh/v1beta1",
          kind: "InterceptorRoute",
          metadata: { name: "web-route", namespace: ns },
          spec: {
            target: { service: "web", portName: "http" },
            scalingMetric: { concurrency: { targetValue: 10 } },
            rules: [{ hosts: ["route.example.com"] }],
          },
        });
        const routePath = `/apis/http.keda.sh/v1beta1/namespaces/${ns}/interceptorroutes/web-route`;
        await wait("the InterceptorRoute Ready", async () => {
          const o = await cluster.client.getOrUndefined<Obj>(routePath);
          return o && isReady(o);
        }).catch((e) => {
          throw new Error(`${e.message}; its log:\n${op.output().slice(-3000)}`);
        });
        await wait("the HTTPScaledObject Ready", async () => {
          const o = await cluster.client.getOrUndefined<Obj>(
            `${HTTPSO}/namespaces/${ns}/httpscaledobjects/web`,
          );
          return o && isReady(o);
        });
        const sos = await cluster.client.list<KubeObject>(`${SO}/namespaces/${ns}/scaledobjects`);
        assert.deepEqual(sos.items.map((o) => o.metadata?.name), ["web"], "none for the route");
        const m = await wait("the queues to drain", async () => {
          const m = await op.metrics();
          return m?.get("keda_http_operator_workqueue_depth") === 0 && m;
        });
        assert.equal(m.get("keda_http_operator_interceptorroutes"), 1);
        assert.equal(
          m.get(
            'keda_http_operator_api_writes_total{resource="interceptorroutes/status",verb="patch"}',
          ),
          1,
        );
        const table = await (await fetch(`http://127.0.0.1:${op.adminPort}/routing_table`)).json();
        assert.deepEqual(Object.keys(table.routes).sort(), [`${ns}/web`, `${ns}/web-route`]);
        const events = await wait("the Deprecated Event", async () => {
          const list = await cluster.client.list<KubeObject & { type?: string }>(
            `/api/v1/namespaces/${ns}/events`,
            { fieldSelector: "involvedObject.name=web,reason=Deprecated" },
          );
          return list.items.length > 0 && list.items;
        });
        assert.equal(events.length, 1);
        assert.equal(events[0]!.type, "Warning");
        assert.equal(
          op.output().split("\n").filter((l) => l.includes("HTTPScaledObject is deprecated"))
            .length,
          1,
        );
      },
    );

    await t.step(
      "restart with 200 HTTPScaledObjects: all reconciled, nothing rewritten",
      async () => {
        const t0 = performance.now();
        const ns = await cluster.createNamespace("op-200");
        appNamespaces.push(ns);
        const objects = Array.from(
          { length: 200 },
          (_, i) => app(ns, `svc-${String(i).padStart(3, "0")}`),
        ).flat();
        // Created while no operator runs, in parallel batches to keep the setup short.
        for (let i = 0; i < objects.length; i += 30) {
          await Promise.all(
            objects.slice(i, i + 30).map((o) => cluster.client.apply(o)),
          );
        }
        const setupMs = performance.now() - t0;
        await stopAll();
        const created = performance.now();
        const first = spawn({ KEDA_HTTP_OPERATOR_WATCH_NAMESPACE: ns });
        await wait(
          "200 Ready HTTPScaledObjects with ScaledObjects",
          async () => {
            const list = await cluster.client.list<Obj>(
              `${HTTPSO}/namespaces/${ns}/httpscaledobjects`,
            );
            const sos = await cluster.client.list<KubeObject>(
              `${SO}/namespaces/${ns}/scaledobjects`,
            );
            return list.items.length === 200 && list.items.every(isReady) &&
              sos.items.length === 200;
          },
          120_000,
          250,
        ); // Listing 400 objects is work for the API server: poll gently.
        const coldMs = performance.now() - created;
        const stopping = performance.now();
        first.kill("SIGTERM");
        await wait("the first operator to exit", () => first.exited, 30_000).catch((e) => {
          throw new Error(`${e.message}; its log:\n${first.output().slice(-3000)}`);
        });
        assert.equal((await first.status).code, 0);
        const stopMs = performance.now() - stopping;
        const before = await versions(cluster, ns);
        assert.equal(before.size, 400);

        const started = performance.now();
        const second = spawn({ KEDA_HTTP_OPERATOR_WATCH_NAMESPACE: ns });
        await wait("the restarted operator to reconcile all 200", async () => {
          const m = await second.metrics();
          return (m?.get('keda_http_operator_reconcile_total{result="success"}') ?? 0) >= 200 &&
            m?.get("keda_http_operator_workqueue_depth") === 0 && m;
        }, 120_000);
        const restartMs = performance.now() - started;
        const m = (await second.metrics())!;
        assert.equal(m.get('keda_http_operator_reconcile_total{result="error"}') ?? 0, 0);
        assert.equal(
          metricSum(m, "keda_http_operator_api_writes_total"),
          0,
          "no writes, not even Events",
        );
        assert.deepEqual(await versions(cluster, ns), before, "no object changed");
        const becameLeader = second.output().split("\n").find((l) => l.includes('"became leader"'));
        report.info("restart with 200 HTTPScaledObjects", {
          restartToAllReconciledMs: Math.round(restartMs),
          reconcileSecondsTotal: m.get("keda_http_operator_reconcile_duration_seconds_sum"),
          setupMs: Math.round(setupMs),
          firstStartToAllReadyMs: Math.round(coldMs),
          stopMs: Math.round(stopMs),
          becameLeader: becameLeader ? JSON.parse(becameLeader).ts : undefined,
        });
      },
    );
  } finally {
    // Release finalizers while an operator runs, so namespaces can be deleted.
    try {
      await stopAll();
      for (const ns of appNamespaces) {
        const cleaner = spawn({ KEDA_HTTP_OPERATOR_WATCH_NAMESPACE: ns });
        await cluster.client.request("DELETE", `${HTTPSO}/namespaces/${ns}/httpscaledobjects`)
          .catch(() => {});
        await wait(`HTTPScaledObjects in ${ns} finalized`, async () => {
          const list = await cluster.client.list<KubeObject>(
            `${HTTPSO}/namespaces/${ns}/httpscaledobjects`,
          );
          return list.items.length === 0;
        }, 60_000).catch(() => {});
        await cleaner[Symbol.asyncDispose]();
      }
    } finally {
      for (const op of ops) await op[Symbol.asyncDispose]();
      await identity.cleanup().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  }
});
