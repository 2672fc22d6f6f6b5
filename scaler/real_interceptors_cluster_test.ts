/**
 * The scaler with three real interceptor processes (interceptor/main.ts)
 * holding real requests to an app at zero replicas, on a real API server:
 * exact sums, activation pushed over StreamIsActive, one replica killed.
 */
import assert from "node:assert/strict";
import { startCluster } from "../tests/cluster/mod.ts";
import {
  appObjects,
  type InterceptorProcess,
  startInterceptor,
} from "../interceptor/cluster_testing.ts";
import { startTestScaler, waitFor } from "./testing/harness.ts";

Deno.test({
  name: "real interceptors: exact sums, instant activation, a replica killed",
  ignore: Deno.uid() !== 0,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using cluster = await startCluster({ node: false });
    const ns = await cluster.createNamespace("scaler-ic");
    const app = appObjects({ namespace: ns, name: "app", spec: { hosts: ["app.test"] } });
    await cluster.applyYaml([app.service, app.httpso], { namespace: ns });

    const interceptors: InterceptorProcess[] = [];
    const held: AbortController[] = [];
    const pending: Promise<unknown>[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        interceptors.push(
          await startInterceptor({
            kubeconfigPath: cluster.kubeconfigPath,
            env: {
              KEDA_HTTP_WATCH_NAMESPACE: ns,
              KEDA_HTTP_READINESS_TIMEOUT: "120s",
              KEDA_HTTP_PROXY_WORKERS: "1",
            },
          }),
        );
      }
      for (const ic of interceptors) {
        await cluster.waitFor(async () => {
          const table = await ic.adminJson<{ routes: Record<string, unknown> }>("/routing_table");
          return `${ns}/app` in table.routes;
        }, { what: "the route in every interceptor's table" });
      }

      await using scaler = await startTestScaler({
        httpsos: [{ ...app.httpso, metadata: { name: "app", namespace: ns } }],
        env: { KEDA_HTTP_SCALER_STALE_COUNTS_TTL: "3s", KEDA_HTTP_SCALER_FETCH_TIMEOUT: "500ms" },
      });
      scaler.parts.fleet.setPods(interceptors.map((ic, i) => ({
        id: `interceptor-${i}`,
        name: `interceptor-${i}`,
        url: ic.adminUrl,
        ready: true,
      })));
      await waitFor(
        "every interceptor answering",
        () =>
          scaler.parts.aggregator.podStatuses().every((p) => p.health === "ok") ? true : undefined,
      );
      const ref = { name: "app", namespace: ns, scalerMetadata: { httpScaledObject: "app" } };
      const c = scaler.client;
      const value = async () => (await c.getMetrics(ref, ""))[0]?.metricValue;
      assert.equal(await value(), 0);

      const hold = (i: number) => {
        const ctl = new AbortController();
        held.push(ctl);
        pending.push(
          interceptors[i]!.request("app.test", "/", { signal: ctl.signal }).then(
            (r) => r.body?.cancel(),
            () => {},
          ),
        );
      };

      // Activation: the first held request reaches the stream as a push.
      const controller = new AbortController();
      const stream = c.streamIsActive(ref, { signal: controller.signal });
      try {
        assert.equal((await stream.next()).value, false);
        const t0 = performance.now();
        hold(1);
        let next = await stream.next();
        while (next.value === false) next = await stream.next(); // heartbeats
        assert.equal(next.value, true);
        const ms = performance.now() - t0;
        assert.ok(ms < 5_000, `activation took ${ms} ms`);
      } finally {
        controller.abort();
        await stream.return(undefined);
      }

      // 1 + 2 + 3 held requests over the three replicas: the sum is exact.
      hold(0);
      hold(2);
      hold(2);
      hold(1);
      hold(2);
      await waitFor(
        "the sum of held requests to reach 6",
        async () => (await value()) === 6 ? true : undefined,
      );
      assert.equal(await c.isActive(ref), true);

      // Kill the replica holding three: counts kept while stale, then dropped.
      interceptors[2]!.signal("SIGKILL");
      await waitFor(
        "the killed interceptor to be noticed",
        () =>
          scaler.parts.aggregator.podStatuses().some((p) =>
              p.name === "interceptor-2" && p.health !== "ok"
            )
            ? true
            : undefined,
      );
      const during = await value();
      assert.ok(during === 6 || during === 3, `sum while stale is ${during}, want 6 or 3`);
      await waitFor(
        "the dead interceptor's counts to drop out",
        async () => (await value()) === 3 ? true : undefined,
      );
      assert.equal(await c.healthCheck(), "SERVING");
    } finally {
      for (const ctl of held) ctl.abort();
      await Promise.all(pending);
      for (const ic of interceptors) await ic.stop();
    }
  },
});
