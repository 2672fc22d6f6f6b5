/**
 * The controller against a real kube-apiserver (tests/cluster, control plane
 * only) with our CRD and KEDA's installed.
 */
import assert from "node:assert/strict";
import { type KubeObject, startCluster } from "../tests/cluster/mod.ts";
import { createLogger } from "../shared/log.ts";
import { serveAdmin } from "./admin.ts";
import { SCALER_ADDRESS, startInProcessOperator } from "./testing.ts";
import { FIELD_MANAGER } from "./reconcile.ts";

type Obj = KubeObject & {
  spec?: Record<string, unknown>;
  status?: {
    targetWorkload?: string;
    targetService?: string;
    conditions?: Array<Record<string, unknown>>;
  };
};

const HTTPSO = "/apis/http.keda.sh/v1alpha1";
const SO = "/apis/keda.sh/v1alpha1";

function httpsoPath(ns: string, name = "") {
  return `${HTTPSO}/namespaces/${ns}/httpscaledobjects${name ? `/${name}` : ""}`;
}
function soPath(ns: string, name = "") {
  return `${SO}/namespaces/${ns}/scaledobjects${name ? `/${name}` : ""}`;
}

function ready(obj: Obj | undefined) {
  return obj?.status?.conditions?.find((c) => c.type === "Ready") as
    | { status: string; reason: string; message: string; observedGeneration?: number }
    | undefined;
}

function deployment(ns: string, name: string, kind = "Deployment"): KubeObject {
  return {
    apiVersion: "apps/v1",
    kind,
    metadata: { name, namespace: ns },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: name } },
      ...(kind === "StatefulSet" ? { serviceName: name } : {}),
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: "app", image: "example.invalid/app:1" }] },
      },
    },
  };
}

function service(
  ns: string,
  name: string,
  ports: Array<{ name?: string; port: number }>,
): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: ns },
    spec: { selector: { app: name }, ports },
  };
}

function httpso(
  ns: string,
  name: string,
  spec: Record<string, unknown>,
  metadata = {},
): KubeObject {
  return {
    apiVersion: "http.keda.sh/v1alpha1",
    kind: "HTTPScaledObject",
    metadata: { name, namespace: ns, ...metadata },
    spec,
  };
}

const report = createLogger({ level: "info", fields: { component: "operator-test" } });

Deno.test("operator controller against a real API server", async (t) => {
  await using cluster = await startCluster({ node: false });
  const api = cluster.client;
  // One namespace for every step (distinct object names), watched alone, so
  // on a shared cluster the operator never touches anyone else's objects.
  const shared = await cluster.createNamespace("op");
  const op = await startInProcessOperator(cluster.kubeconfigPath, { watchNamespace: shared });
  let opDisposed = false;
  const get = (path: string) => api.getOrUndefined<Obj>(path);
  const wait = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000) =>
    cluster.waitFor(fn, { what, timeoutMs, intervalMs: 50 });
  const dump = () => op.logs.slice(-20).join("\n");
  const namespaces: string[] = [shared];
  const newNamespace = async (prefix: string) => {
    const ns = await cluster.createNamespace(prefix);
    namespaces.push(ns);
    return ns;
  };
  // Deletes every HTTPScaledObject while an operator still runs to release
  // the finalizers, so the namespaces can go (matters on a shared cluster).
  const finalizeAll = async () => {
    for (const ns of namespaces) {
      const list = await api.list<KubeObject>(httpsoPath(ns));
      for (const o of list.items) await api.delete(httpsoPath(ns, o.metadata!.name!));
    }
    await wait("every HTTPScaledObject finalized", async () => {
      for (const ns of namespaces) {
        if ((await api.list<KubeObject>(httpsoPath(ns))).items.length) return false;
      }
      return true;
    }, 30_000);
    namespaces.length = 0;
  };

  try {
    await t.step(
      "create: the ScaledObject exists within 2 s with every field as specified",
      async (t) => {
        const ns = shared;
        await api.apply([
          deployment(ns, "app"),
          service(ns, "app", [{ name: "http", port: 8080 }]),
        ]);
        const started = performance.now();
        await api.apply(httpso(ns, "app", {
          hosts: ["App.Example.com"],
          pathPrefixes: ["/api"],
          scaleTargetRef: {
            name: "app",
            apiVersion: "apps/v1",
            kind: "Deployment",
            service: "app",
            port: 8080,
          },
          replicas: { min: 1, max: 10 },
          scaledownPeriod: 150,
          initialCooldownPeriod: 20,
        }, {
          labels: { team: "payments" },
          annotations: { "example.com/owner": "alice" },
        }));
        const so = await wait("the ScaledObject", () => get(soPath(ns, "app")), 2_000).catch(
          (e) => {
            throw new Error(`${e.message}\noperator log:\n${dump()}`);
          },
        );
        const elapsed = performance.now() - started;
        const owner = (await get(httpsoPath(ns, "app")))!;
        assert.deepEqual(so.spec, {
          scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "app" },
          minReplicaCount: 1,
          maxReplicaCount: 10,
          cooldownPeriod: 150,
          initialCooldownPeriod: 20,
          pollingInterval: 15,
          advanced: { restoreToOriginalReplicaCount: true },
          triggers: [{
            type: "external-push",
            metadata: { scalerAddress: SCALER_ADDRESS, httpScaledObject: "app" },
          }],
        });
        assert.deepEqual(so.metadata?.labels, { team: "payments" });
        assert.equal(so.metadata?.annotations?.["example.com/owner"], "alice");
        assert.equal(
          so.metadata?.annotations?.["kubectl.kubernetes.io/last-applied-configuration"],
          undefined,
        );
        assert.deepEqual(so.metadata?.ownerReferences, [{
          apiVersion: "http.keda.sh/v1alpha1",
          kind: "HTTPScaledObject",
          name: "app",
          uid: owner.metadata?.uid,
          controller: true,
          blockOwnerDeletion: true,
        }]);
        const done = await wait("Ready=True", async () => {
          const o = await get(httpsoPath(ns, "app"));
          return ready(o)?.status === "True" && o;
        });
        assert.deepEqual(done.metadata?.finalizers, ["httpscaledobject.http.keda.sh"]);
        assert.equal(done.status?.targetWorkload, "apps/v1/Deployment/app");
        assert.equal(done.status?.targetService, "app:8080");
        const cond = ready(done)!;
        assert.equal(cond.reason, "Reconciled");
        assert.equal(cond.message, "ScaledObject created and configured");
        assert.equal(cond.observedGeneration, done.metadata?.generation);
        report.info("ScaledObject created", { afterMs: Math.round(elapsed) });

        await t.step("update: hosts, replicas and scaledownPeriod propagate", async () => {
          await api.patch(httpsoPath(ns, "app"), {
            spec: { hosts: ["new.example.com"], replicas: { min: 0, max: 3 }, scaledownPeriod: 30 },
          });
          const updated = await wait("the updated ScaledObject", async () => {
            const s = await get(soPath(ns, "app"));
            return s?.spec?.maxReplicaCount === 3 && s.spec.cooldownPeriod === 30 && s;
          });
          assert.equal(updated.spec?.minReplicaCount, 0);
          const gen = (await get(httpsoPath(ns, "app")))!.metadata?.generation;
          await wait("observedGeneration to follow", async () => {
            return ready(await get(httpsoPath(ns, "app")))?.observedGeneration === gen;
          });
          // hosts are routing, not ScaledObject fields: /routing_table shows them.
          const stop = new AbortController();
          const listening = Promise.withResolvers<number>();
          const serving = serveAdmin({
            port: 0,
            hostname: "127.0.0.1",
            log: createLogger({ level: "error" }),
            routingTable: () => op.controller.routingTableJSON(),
            ready: () => ({ ready: true, detail: "" }),
            metrics: () => op.metrics.render(),
            onListen: (port) => listening.resolve(port),
          })(stop.signal);
          const port = await listening.promise;
          const res = await fetch(`http://127.0.0.1:${port}/routing_table`);
          const table = await res.json();
          stop.abort();
          await serving;
          assert.deepEqual(table.routes[`${ns}/app`].rules[0].hosts, ["new.example.com"]);
          assert.deepEqual(table.routes[`${ns}/app`].replicas, { min: 0, max: 3 });
        });

        await t.step(
          "fields: a removed label goes, KEDA's and users' additions stay, hand edits are reverted",
          async () => {
            // KEDA labels its ScaledObjects; a user may add a fallback.
            await api.patch(
              soPath(ns, "app"),
              {
                metadata: { labels: { "scaledobject.keda.sh/name": "app" } },
                spec: { fallback: { failureThreshold: 3, replicas: 1 } },
              },
              "merge",
              { fieldManager: "keda" },
            );
            await api.patch(httpsoPath(ns, "app"), {
              metadata: { labels: { team: null, tier: "web" } },
            });
            const relabelled = await wait("labels to follow", async () => {
              const s = await get(soPath(ns, "app"));
              return s?.metadata?.labels?.tier === "web" && s;
            });
            assert.deepEqual(relabelled.metadata?.labels, {
              tier: "web",
              "scaledobject.keda.sh/name": "app",
            });
            assert.deepEqual(relabelled.spec?.fallback, {
              behavior: "static",
              failureThreshold: 3,
              replicas: 1,
            });
            await api.patch(soPath(ns, "app"), { spec: { pollingInterval: 1 } }, "merge", {
              fieldManager: "kubectl-edit",
            });
            const reverted = await wait("the hand edit to be reverted", async () => {
              const s = await get(soPath(ns, "app"));
              return s?.spec?.pollingInterval === 15 && s;
            });
            assert.deepEqual(reverted.spec?.fallback, {
              behavior: "static",
              failureThreshold: 3,
              replicas: 1,
            });
          },
        );

        await t.step("delete: the ScaledObject is removed and the finalizer released", async () => {
          await api.delete(httpsoPath(ns, "app"));
          await wait(
            "the HTTPScaledObject to be gone",
            async () => !(await get(httpsoPath(ns, "app"))),
          );
          await wait("the ScaledObject to be gone", async () => !(await get(soPath(ns, "app"))));
        });
      },
    );

    await t.step(
      "missing Service: Ready=False with the reason and an Event; creating it flips Ready=True",
      async () => {
        const ns = shared;
        await api.apply(deployment(ns, "web"));
        await api.apply(httpso(ns, "web", {
          scaleTargetRef: { name: "web", service: "web-svc", portName: "http" },
        }));
        const notReady = await wait("Ready=False", async () => {
          const o = await get(httpsoPath(ns, "web"));
          return ready(o)?.status === "False" && o;
        });
        const cond = ready(notReady)!;
        assert.equal(cond.reason, "ServiceNotFound");
        assert.match(cond.message, /Service "web-svc" .*does not exist in namespace/);
        assert.equal(notReady.status?.targetService, "web-svc:http");
        assert.ok(await get(soPath(ns, "web")), "the ScaledObject is created anyway");
        const events = await wait("a Warning Event", async () => {
          const list = await api.list<KubeObject>(`/api/v1/namespaces/${ns}/events`, {
            fieldSelector: `involvedObject.name=web,reason=ServiceNotFound`,
          });
          return list.items.length > 0 && list.items;
        });
        assert.equal(events[0]?.type, "Warning");
        assert.match(String(events[0]?.message), /web-svc/);
        const generation = notReady.metadata?.generation;

        await api.apply(service(ns, "web-svc", [{ name: "metrics", port: 9090 }]));
        const wrongPort = await wait("ServicePortNotFound", async () => {
          const o = await get(httpsoPath(ns, "web"));
          return ready(o)?.reason === "ServicePortNotFound" && o;
        });
        assert.match(ready(wrongPort)!.message, /no port named "http" \(it has metrics=9090\)/);

        await api.apply(service(ns, "web-svc", [{ name: "http", port: 80 }]));
        const fixed = await wait("Ready=True", async () => {
          const o = await get(httpsoPath(ns, "web"));
          return ready(o)?.status === "True" && o;
        });
        assert.equal(
          fixed.metadata?.generation,
          generation,
          "the HTTPScaledObject spec was not touched",
        );
        // Only the status subresource and our finalizer were written by the operator.
        const ours = (fixed.metadata?.managedFields as Array<
          { manager: string; subresource?: string; fieldsV1: object }
        >)
          .filter((m) => m.manager === FIELD_MANAGER);
        for (const m of ours) {
          assert.ok(
            m.subresource === "status" ||
              JSON.stringify(m.fieldsV1) ===
                '{"f:metadata":{"f:finalizers":{".":{},"v:\\"httpscaledobject.http.keda.sh\\"":{}}}}',
            `unexpected operator write: ${JSON.stringify(m)}`,
          );
        }
      },
    );

    await t.step("scale target: missing, then a StatefulSet created later", async () => {
      const ns = shared;
      await api.apply(service(ns, "db", [{ port: 5432 }]));
      await api.apply(httpso(ns, "db", {
        scaleTargetRef: {
          name: "db",
          apiVersion: "apps/v1",
          kind: "StatefulSet",
          service: "db",
          port: 5432,
        },
      }));
      const missing = await wait("ScaleTargetNotFound", async () => {
        const o = await get(httpsoPath(ns, "db"));
        return ready(o)?.reason === "ScaleTargetNotFound" && o;
      });
      assert.match(ready(missing)!.message, /StatefulSet "db" \(apps\/v1\) does not exist/);
      assert.equal(missing.status?.targetWorkload, "apps/v1/StatefulSet/db");
      await api.apply(deployment(ns, "db", "StatefulSet"));
      await wait(
        "Ready=True",
        async () => ready(await get(httpsoPath(ns, "db")))?.status === "True",
      );
      const so = (await get(soPath(ns, "db")))!;
      assert.deepEqual(so.spec?.scaleTargetRef, {
        apiVersion: "apps/v1",
        kind: "StatefulSet",
        name: "db",
      });
    });

    await t.step(
      "a ScaledObject of that name owned by someone else: Ready=False, left untouched",
      async () => {
        const ns = shared;
        await api.apply([deployment(ns, "api"), service(ns, "api", [{ port: 80 }])]);
        const [theirs] = await api.apply({
          apiVersion: "keda.sh/v1alpha1",
          kind: "ScaledObject",
          metadata: { name: "api", namespace: ns },
          spec: {
            scaleTargetRef: { name: "api" },
            triggers: [{ type: "cpu", metadata: { value: "50" }, metricType: "Utilization" }],
          },
        });
        await api.apply(
          httpso(ns, "api", { scaleTargetRef: { name: "api", service: "api", port: 80 } }),
        );
        const conflict = await wait("ScaledObjectConflict", async () => {
          const o = await get(httpsoPath(ns, "api"));
          return ready(o)?.reason === "ScaledObjectConflict" && o;
        });
        assert.match(
          ready(conflict)!.message,
          /already exists and is not managed by this HTTPScaledObject/,
        );
        const after = (await get(soPath(ns, "api")))!;
        assert.equal(after.metadata?.resourceVersion, theirs?.metadata?.resourceVersion);
        // Deleting theirs lets ours be created.
        await api.delete(soPath(ns, "api"));
        await wait("our ScaledObject", async () => {
          const s = await get(soPath(ns, "api"));
          return (s?.spec?.triggers as Array<{ type: string }> | undefined)?.[0]?.type ===
            "external-push";
        });
        await wait(
          "Ready=True",
          async () => ready(await get(httpsoPath(ns, "api")))?.status === "True",
        );
      },
    );

    await t.step(
      "annotations: skip deletes our ScaledObject; orphan drops the ownerReference and deletion keeps it",
      async () => {
        const ns = shared;
        await api.apply([deployment(ns, "a"), service(ns, "a", [{ port: 80 }])]);
        await api.apply(httpso(ns, "a", { scaleTargetRef: { name: "a", service: "a", port: 80 } }));
        await wait("the ScaledObject", () => get(soPath(ns, "a")));
        await api.patch(httpsoPath(ns, "a"), {
          metadata: {
            annotations: { "httpscaledobject.keda.sh/skip-scaledobject-creation": "true" },
          },
        });
        await wait("the ScaledObject to be deleted", async () => !(await get(soPath(ns, "a"))));
        const skipped = await wait("Ready with the skip message", async () => {
          const o = await get(httpsoPath(ns, "a"));
          return /skipped/.test(ready(o)?.message ?? "") && o;
        });
        assert.equal(ready(skipped)?.status, "True");

        await api.patch(httpsoPath(ns, "a"), {
          metadata: {
            annotations: {
              "httpscaledobject.keda.sh/skip-scaledobject-creation": null,
            },
          },
        });
        await wait("the ScaledObject again", () => get(soPath(ns, "a")));
        await api.patch(httpsoPath(ns, "a"), {
          metadata: { annotations: { "httpscaledobject.keda.sh/orphan-scaledobject": "true" } },
        });
        await wait("the ownerReference to be dropped", async () => {
          const s = await get(soPath(ns, "a"));
          return s && (s.metadata?.ownerReferences ?? []).length === 0;
        });
        await api.delete(httpsoPath(ns, "a"));
        await wait(
          "the HTTPScaledObject to be gone",
          async () => !(await get(httpsoPath(ns, "a"))),
        );
        assert.ok(
          await get(soPath(ns, "a")),
          "an orphaned ScaledObject outlives its HTTPScaledObject",
        );
      },
    );

    await t.step("the seed's oldest manifest shape (scaleTargetRef.deployment) works", async () => {
      const ns = shared;
      await api.apply([deployment(ns, "legacy"), service(ns, "legacy", [{ port: 8080 }])]);
      await api.apply(httpso(ns, "legacy", {
        host: undefined,
        scaleTargetRef: { deployment: "legacy", service: "legacy", port: 8080 },
      }));
      const so = await wait("the ScaledObject", () => get(soPath(ns, "legacy")));
      assert.deepEqual(so.spec?.scaleTargetRef, {
        apiVersion: "apps/v1",
        kind: "Deployment",
        name: "legacy",
      });
      const o = await wait("Ready", async () => {
        const x = await get(httpsoPath(ns, "legacy"));
        return ready(x)?.status === "True" && x;
      });
      assert.equal(o.status?.targetWorkload, "apps/v1/Deployment/legacy");
    });

    await t.step("the CRD refuses invalid objects with a readable message", async () => {
      const ns = shared;
      const refused = async (spec: Record<string, unknown>) => {
        try {
          await api.create(httpsoPath(ns), httpso(ns, "bad", spec));
        } catch (e) {
          return (e as Error).message;
        }
        throw new Error(`the API server accepted ${JSON.stringify(spec)}`);
      };
      assert.match(
        await refused({ scaleTargetRef: { name: "a", service: "a", port: 80, portName: "http" } }),
        /scaleTargetRef: set exactly one of port or portName/,
      );
      assert.match(
        await refused({ scaleTargetRef: { name: "a", service: "a" } }),
        /scaleTargetRef: set exactly one of port or portName/,
      );
      assert.match(
        await refused({
          scaleTargetRef: { name: "a", service: "a", port: 80 },
          scalingMetric: { concurrency: { targetValue: 10 }, requestRate: { targetValue: 5 } },
        }),
        /concurrency and requestRate are mutually exclusive/,
      );
      assert.match(
        await refused({
          scaleTargetRef: { name: "a", service: "a", port: 80 },
          coldStartTimeoutFailoverRef: { service: "b", port: 80, portName: "x" },
        }),
        /coldStartTimeoutFailoverRef: set exactly one of port or portName/,
      );
      assert.match(
        await refused({
          scaleTargetRef: { name: "a", service: "a", port: 80 },
          scalingMetric: { requestRate: { granularity: "0s" } },
        }),
        /granularity: must be a duration greater than 0/,
      );
      assert.match(
        await refused({
          scaleTargetRef: { name: "a", service: "a", port: 80 },
          replicas: { min: 5, max: 2 },
        }),
        /max must be at least min/,
      );
    });

    await t.step(
      "kubectl apply of an invalid manifest is refused with a readable message",
      async () => {
        const kubectl = [
          "/usr/bin/kubectl",
          `${Deno.env.get("HOME")}/.cache/keda-http-deno/k8s-v1.34.4/bin/kubectl`,
        ]
          .find((p) => {
            try {
              return Deno.statSync(p).isFile;
            } catch {
              return false;
            }
          });
        if (!kubectl) {
          report.warn("kubectl not found; the API-level check above covers the rules");
          return;
        }
        const ns = shared;
        const manifest = `apiVersion: http.keda.sh/v1alpha1
kind: HTTPScaledObject
metadata:
  name: both
  namespace: ${ns}
spec:
  hosts: [both.example.com]
  scaleTargetRef:
    name: app
    service: app
    port: 8080
    portName: http
  scalingMetric:
    concurrency: {targetValue: 10}
    requestRate: {targetValue: 5}
`;
        const child = new Deno.Command(kubectl, {
          args: ["apply", "-f", "-"],
          env: { KUBECONFIG: cluster.kubeconfigPath },
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const writer = child.stdin.getWriter();
        await writer.write(new TextEncoder().encode(manifest));
        await writer.close();
        const out = await child.output();
        const stderr = new TextDecoder().decode(out.stderr);
        assert.notEqual(out.code, 0);
        assert.match(stderr, /scaleTargetRef: set exactly one of port or portName/);
        assert.match(stderr, /concurrency and requestRate are mutually exclusive; set only one/);
        report.info("kubectl refused the manifest", { stderr: stderr.trim() });
      },
    );

    await t.step(
      "KEDA_HTTP_OPERATOR_WATCH_NAMESPACE: only that namespace is reconciled",
      async () => {
        await finalizeAll();
        await op[Symbol.asyncDispose]();
        opDisposed = true;
        const watched = await newNamespace("op-watched");
        const other = await newNamespace("op-other");
        await using scoped = await startInProcessOperator(cluster.kubeconfigPath, {
          watchNamespace: watched,
        });
        for (const ns of [watched, other]) {
          await api.apply(
            httpso(ns, "x", { scaleTargetRef: { name: "x", service: "x", port: 80 } }),
          );
        }
        await wait("the watched namespace's ScaledObject", () => get(soPath(watched, "x")));
        // The watched one is done (its status written) before we look at the other.
        await wait(
          "status in the watched namespace",
          async () => ready(await get(httpsoPath(watched, "x"))),
        );
        assert.equal(await get(soPath(other, "x")), undefined);
        assert.equal((await get(httpsoPath(other, "x")))?.status, undefined);
        assert.equal(scoped.controller.httpsos.store.size, 1);
        // Clean up while the operator still runs, so the finalizer is released.
        await api.delete(httpsoPath(watched, "x"));
        await wait("finalized", async () => !(await get(httpsoPath(watched, "x"))));
      },
    );
  } finally {
    if (!opDisposed) {
      await finalizeAll().catch(() => {});
      await op[Symbol.asyncDispose]();
    }
  }
});
