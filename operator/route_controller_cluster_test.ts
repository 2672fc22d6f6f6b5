/**
 * The InterceptorRoute controller and the HTTPScaledObject deprecation
 * notice, in-process against a real kube-apiserver (tests/cluster, control
 * plane only, every CRD of k8s/crd installed).
 */
import assert from "node:assert/strict";
import { type KubeObject, startCluster } from "../tests/cluster/mod.ts";
import { createLogger } from "../shared/log.ts";
import { KubeApiError, type KubeClient } from "../shared/kube.ts";
import { Controller, DEPRECATION_MESSAGE, IR_MISSING_HINT } from "./controller.ts";
import { EventRecorder } from "./events.ts";
import { OperatorMetrics } from "./metrics.ts";
import { NO_RULES_MESSAGE, RECONCILED_MESSAGE } from "./route_status.ts";
import { metricSum, parseMetrics, startInProcessOperator } from "./testing.ts";

type Condition = {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
};
type Obj = KubeObject & { spec?: Record<string, unknown>; status?: { conditions?: Condition[] } };

const IR = "/apis/http.keda.sh/v1beta1";
const HTTPSO = "/apis/http.keda.sh/v1alpha1";

function routePath(ns: string, name = "") {
  return `${IR}/namespaces/${ns}/interceptorroutes${name ? `/${name}` : ""}`;
}
function httpsoPath(ns: string, name = "") {
  return `${HTTPSO}/namespaces/${ns}/httpscaledobjects${name ? `/${name}` : ""}`;
}

function ready(obj: Obj | undefined): Condition | undefined {
  return obj?.status?.conditions?.find((c) => c.type === "Ready");
}

function service(ns: string, name: string, ports: Array<{ name?: string; port: number }>) {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: ns },
    spec: { selector: { app: name }, ports },
  };
}

function route(ns: string, name: string, spec: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: "http.keda.sh/v1beta1",
    kind: "InterceptorRoute",
    metadata: { name, namespace: ns },
    spec: {
      target: { service: name, port: 8080 },
      scalingMetric: { concurrency: { targetValue: 10 } },
      rules: [{ hosts: [`${name}.example.com`] }],
      ...spec,
    },
  };
}

const report = createLogger({ level: "info", fields: { component: "route-controller-test" } });

Deno.test("InterceptorRoute status and HTTPScaledObject deprecation against a real API server", async (t) => {
  await using cluster = await startCluster({ node: false });
  const api = cluster.client;
  const ns = await cluster.createNamespace("ir");
  // A short resync, so "nothing is rewritten" and "the Event exists once"
  // are checked across many reconciles of every key.
  const resyncPeriodMs = 200;
  let op = await startInProcessOperator(cluster.kubeconfigPath, {
    watchNamespace: ns,
    resyncPeriodMs,
  });
  const get = (path: string) => api.getOrUndefined<Obj>(path);
  const wait = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000) =>
    cluster.waitFor(fn, { what, timeoutMs, intervalMs: 50 }).catch((e) => {
      throw new Error(`${e.message}\noperator log:\n${op.logs.slice(-20).join("\n")}`);
    });
  const readyWith = (name: string, pred: (c: Condition, o: Obj) => boolean, what: string) =>
    wait(what, async () => {
      const o = await get(routePath(ns, name));
      const c = ready(o);
      return c && o && pred(c, o) && o;
    });
  const statusWrites = () =>
    metricSum(
      new Map(
        [...parseMetrics(op.metrics.render())].filter(([k]) =>
          k.includes('resource="interceptorroutes/status"')
        ),
      ),
      "keda_http_operator_api_writes_total",
    );

  try {
    await t.step(
      "valid route with its Service: Ready True/Reconciled, nothing else written",
      async (t) => {
        await api.apply(service(ns, "app", [{ name: "http", port: 8080 }]));
        const started = performance.now();
        await api.apply(route(ns, "app"));
        const o = await readyWith("app", (c) => c.status === "True", "Ready=True");
        report.info("InterceptorRoute Ready", { afterMs: Math.round(performance.now() - started) });
        const c = ready(o)!;
        assert.equal(c.reason, "Reconciled");
        assert.equal(c.message, RECONCILED_MESSAGE);
        assert.equal(c.observedGeneration, o.metadata?.generation);
        assert.match(c.lastTransitionTime ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
        assert.deepEqual(o.metadata?.finalizers ?? [], [], "no finalizer: nothing to clean up");
        // The operator writes no ScaledObject for an InterceptorRoute.
        const sos = await api.list<KubeObject>(
          `/apis/keda.sh/v1alpha1/namespaces/${ns}/scaledobjects`,
        );
        assert.deepEqual(sos.items.map((s) => s.metadata?.name), []);
        // Only /status was written by the operator.
        const ours = (o.metadata?.managedFields as Array<{ manager: string; subresource?: string }>)
          .filter((m) => m.manager === "keda-http-add-on-operator");
        assert.deepEqual(ours.map((m) => m.subresource), ["status"]);

        await t.step("status is not rewritten when nothing changed", async () => {
          const rv = o.metadata?.resourceVersion;
          const writes = statusWrites();
          const reconciles = () =>
            parseMetrics(op.metrics.render()).get(
              'keda_http_operator_interceptorroute_reconcile_total{result="success"}',
            ) ?? 0;
          const before = reconciles();
          // A Service change that is not about ports is no news; resyncs revisit the key.
          await api.patch(`/api/v1/namespaces/${ns}/services/app`, {
            metadata: { labels: { touched: "yes" } },
          });
          await wait("several resyncs", () => Promise.resolve(reconciles() >= before + 5));
          assert.equal((await get(routePath(ns, "app")))?.metadata?.resourceVersion, rv);
          assert.equal(statusWrites(), writes);
        });

        await t.step("/routing_table includes the route", () => {
          const table = JSON.parse(op.controller.routingTableJSON());
          const entry = table.routes[`${ns}/app`];
          assert.equal(entry?.kind, "InterceptorRoute");
          assert.deepEqual(entry.target, { namespace: ns, service: "app", port: 8080 });
          assert.deepEqual(entry.rules[0].hosts, ["app.example.com"]);
        });

        await t.step(
          "a spec change bumps observedGeneration; lastTransitionTime stays",
          async () => {
            await api.patch(routePath(ns, "app"), {
              spec: { rules: [{ hosts: ["b.example.com"] }] },
            });
            const gen = (await get(routePath(ns, "app")))!.metadata!.generation!;
            assert.ok(gen > (o.metadata?.generation ?? 0));
            const bumped = await readyWith(
              "app",
              (cc) => cc.observedGeneration === gen,
              "observedGeneration to follow",
            );
            assert.equal(ready(bumped)!.status, "True");
            assert.equal(ready(bumped)!.lastTransitionTime, c.lastTransitionTime);
          },
        );
      },
    );

    await t.step("Service missing: ServiceNotFound; created: True without a restart", async () => {
      await api.apply(route(ns, "late", { target: { service: "late-svc", portName: "http" } }));
      const missing = await readyWith("late", (c) => c.status === "False", "Ready=False");
      assert.equal(ready(missing)!.reason, "ServiceNotFound");
      assert.equal(
        ready(missing)!.message,
        `Service ${ns}/late-svc not found: create it or fix spec.target.service`,
      );
      await api.apply(service(ns, "late-svc", [{ name: "metrics", port: 9090 }]));
      const wrongPort = await readyWith(
        "late",
        (c) => c.reason === "PortNotFound",
        "PortNotFound",
      );
      assert.match(ready(wrongPort)!.message, /has no port named "http" \(it has metrics=9090\)/);
      await api.apply(service(ns, "late-svc", [{ name: "http", port: 80 }]));
      const fixed = await readyWith("late", (c) => c.status === "True", "Ready=True");
      assert.equal(ready(fixed)!.reason, "Reconciled");
      assert.notEqual(ready(fixed)!.lastTransitionTime, undefined);
      assert.equal(fixed.metadata?.generation, missing.metadata?.generation, "spec untouched");
    });

    await t.step("port number missing: PortNotFound lists the Service's ports", async () => {
      await api.apply(
        service(ns, "ports", [{ name: "http", port: 80 }, { name: "admin", port: 81 }]),
      );
      await api.apply(route(ns, "ports", { target: { service: "ports", port: 8080 } }));
      const o = await readyWith("ports", (c) => c.status === "False", "Ready=False");
      assert.equal(ready(o)!.reason, "PortNotFound");
      assert.equal(
        ready(o)!.message,
        `Service ${ns}/ports has no port 8080 (it has http=80, admin=81): fix spec.target.port or the Service`,
      );
    });

    await t.step("fallback Service missing: FallbackServiceNotFound, then fixed", async () => {
      await api.apply(service(ns, "fb", [{ port: 8080 }]));
      await api.apply(route(ns, "fb", {
        coldStart: { fallback: { service: { name: "sorry", port: 80 } } },
      }));
      const o = await readyWith("fb", (c) => c.status === "False", "Ready=False");
      assert.equal(ready(o)!.reason, "FallbackServiceNotFound");
      assert.match(ready(o)!.message, /fallback Service .*\/sorry not found/);
      await api.apply(service(ns, "sorry", [{ port: 8080 }]));
      await readyWith("fb", (c) => c.reason === "FallbackPortNotFound", "FallbackPortNotFound");
      await api.apply(service(ns, "sorry", [{ port: 80 }]));
      await readyWith("fb", (c) => c.status === "True", "Ready=True");
    });

    await t.step("no rules: Ready True with a message saying nothing is routed", async () => {
      await api.apply(service(ns, "quiet", [{ port: 8080 }]));
      const r = route(ns, "quiet");
      delete (r.spec as Record<string, unknown>).rules;
      await api.apply(r);
      const o = await readyWith("quiet", (c) => c.status === "True", "Ready=True");
      assert.equal(ready(o)!.message, NO_RULES_MESSAGE);
    });

    await t.step(
      "HTTPScaledObject: one Deprecated Warning Event across resyncs and a restart",
      async () => {
        await api.apply(service(ns, "old", [{ port: 8080 }]));
        await api.apply({
          apiVersion: "http.keda.sh/v1alpha1",
          kind: "HTTPScaledObject",
          metadata: { name: "old", namespace: ns },
          spec: { scaleTargetRef: { name: "old", service: "old", port: 8080 } },
        });
        const h = await wait("the HTTPScaledObject's status", async () => {
          const o = await get(httpsoPath(ns, "old"));
          return ready(o) && o;
        });
        const uid = h.metadata!.uid!;
        const deprecated = async () =>
          (await api.list<KubeObject & { type?: string; message?: string; count?: number }>(
            `/api/v1/namespaces/${ns}/events`,
            { fieldSelector: `involvedObject.uid=${uid},reason=Deprecated` },
          )).items;
        const events = await wait("the Deprecated Event", async () => {
          const items = await deprecated();
          return items.length > 0 && items;
        });
        assert.equal(events[0]!.type, "Warning");
        assert.equal(events[0]!.message, DEPRECATION_MESSAGE);
        // Many resyncs later: still exactly one, and one log line.
        const reconciles = () =>
          parseMetrics(op.metrics.render()).get(
            'keda_http_operator_reconcile_total{result="success"}',
          ) ?? 0;
        const before = reconciles();
        await wait("several resyncs", () => Promise.resolve(reconciles() >= before + 5));
        assert.equal((await deprecated()).length, 1);
        assert.equal(op.logs.filter((l) => l.includes("HTTPScaledObject is deprecated")).length, 1);

        // A restart (a new process) logs it again but finds the Event there: no second one.
        await op[Symbol.asyncDispose]();
        op = await startInProcessOperator(cluster.kubeconfigPath, {
          watchNamespace: ns,
          resyncPeriodMs,
        });
        await wait(
          "the deprecation line of the new process",
          () => Promise.resolve(op.logs.some((l) => l.includes("HTTPScaledObject is deprecated"))),
        );
        await new Promise((r) => setTimeout(r, 1_000));
        const after = await deprecated();
        assert.equal(after.length, 1);
        assert.equal(after[0]!.metadata?.resourceVersion, events[0]!.metadata?.resourceVersion);
        assert.equal(
          parseMetrics(op.metrics.render()).get(
            'keda_http_operator_api_writes_total{resource="events",verb="create"}',
          ) ?? 0,
          0,
        );
      },
    );

    await t.step(
      "an InterceptorRoute wins over a namesake HTTPScaledObject in /routing_table",
      async () => {
        await api.apply(route(ns, "old", { target: { service: "old", port: 8080 } }));
        await readyWith("old", (c) => c.status === "True", "Ready=True");
        const table = JSON.parse(op.controller.routingTableJSON());
        assert.equal(table.routes[`${ns}/old`]?.kind, "InterceptorRoute");
        // Still no ScaledObject of ours for the route: the one there is the HTTPScaledObject's.
        const sos = await api.list<KubeObject>(
          `/apis/keda.sh/v1alpha1/namespaces/${ns}/scaledobjects`,
        );
        assert.deepEqual(sos.items.map((s) => s.metadata?.name), ["old"]);
        assert.equal(
          (sos.items[0]!.metadata?.ownerReferences as Array<{ kind: string }>)[0]?.kind,
          "HTTPScaledObject",
        );
      },
    );
  } finally {
    // Release the HTTPScaledObject's finalizer while an operator runs.
    await api.request("DELETE", httpsoPath(ns)).catch(() => {});
    await wait("HTTPScaledObjects finalized", async () => {
      return (await api.list<KubeObject>(httpsoPath(ns))).items.length === 0;
    }).catch(() => {});
    await op[Symbol.asyncDispose]();
  }
});

Deno.test("a missing InterceptorRoute CRD: logged once with the hint, counted as synced and empty", async () => {
  const lines: string[] = [];
  const log = createLogger({ level: "info", sink: (l) => lines.push(l) });
  let routeLists = 0;
  // Every list is empty and every watch stays open, except InterceptorRoutes: 404.
  const client = {
    listPages(path: string, _o: unknown, onPage: (items: unknown[]) => void) {
      if (path.includes("/interceptorroutes")) {
        routeLists++;
        return Promise.reject(new KubeApiError(404, "NotFound", `GET ${path}: 404`));
      }
      onPage([]);
      return Promise.resolve("1");
    },
    fetch(_m: string, _p: string, o: { signal?: AbortSignal }) {
      return Promise.resolve(
        new Response(
          new ReadableStream({
            start(c) {
              o.signal?.addEventListener("abort", () => c.close());
            },
          }),
        ),
      );
    },
  } as unknown as KubeClient;
  const metrics = new OperatorMetrics();
  const controller = new Controller({
    client,
    log,
    watchNamespace: "",
    scalerAddress: "x:9090",
    resyncPeriodMs: 300_000,
    metrics,
    events: new EventRecorder({ client, log, component: "t", instance: "t" }),
  });
  const stop = new AbortController();
  const runs = controller.informerMembers().map(([, member]) => member(stop.signal));
  try {
    assert.ok(await controller.waitForSync(AbortSignal.timeout(5_000)));
    assert.deepEqual(controller.unsynced(), [], "/readyz is not held back by the missing CRD");
    assert.equal(controller.interceptorRoutes.store.size, 0);
    assert.deepEqual(JSON.parse(controller.routingTableJSON()), { routes: {}, invalid: {} });
    const hinted = lines.filter((l) => l.includes(IR_MISSING_HINT));
    assert.equal(hinted.length, 1, lines.join("\n"));
    assert.match(hinted[0]!, /"level":"warn"/);
    assert.equal(routeLists, 1, "the next list waits 30 s");
  } finally {
    stop.abort();
    await Promise.all(runs);
  }
});
