/**
 * End to end with the real KEDA: our system deployed from k8s/, KEDA 2.20
 * (operator + metrics API server through the aggregation layer), the HPA
 * controller, and demo apps with HTTPScaledObjects as users of the Go add-on
 * write them. Each case has its own namespace and timeout; a failure names the
 * case, the step, and the state of the app, KEDA and the scaler.
 *
 * KEDAHTTP_E2E_CASES="cold start,routing" runs only the cases whose names
 * contain one of those words. See tests/e2e/README.md.
 */
import assert from "node:assert/strict";
import { ExternalScalerClient } from "../../scaler/external_scaler.ts";
import { sleep } from "../../shared/lifetime.ts";
import type { AppSpec } from "./apps.ts";
import { httpScaledObjectYaml } from "./apps.ts";
import { type CaseContext, E2E, e2eLogger, withTimeout } from "./harness.ts";
import type { HttpResponse, HttpTarget } from "./http_client.ts";
import {
  closedLoop,
  describeTally,
  emptyTally,
  failedAccepted,
  fixedRate,
  type LoadTally,
  percentile,
} from "./load.ts";

const figures = e2eLogger("e2e-figures");

const selected = (Deno.env.get("KEDAHTTP_E2E_CASES") ?? "").split(",").map((s) => s.trim())
  .filter(Boolean);

interface Case {
  name: string;
  timeoutMs: number;
  run(env: E2E, ctx: CaseContext): Promise<void>;
}

function appAnswer(r: HttpResponse): { text?: string; path?: string; pod?: string; host?: string } {
  try {
    return JSON.parse(r.body);
  } catch {
    return {};
  }
}

function expectApp(r: HttpResponse, text: string, what: string): void {
  assert.equal(
    r.status,
    200,
    `${what}: expected 200 from ${text}, got ${r.status}: ${r.body.slice(0, 300)}`,
  );
  assert.equal(
    appAnswer(r).text,
    text,
    `${what}: answered by the wrong app: ${r.body.slice(0, 300)}`,
  );
}

/** The case's namespace and app, for its failure diagnosis. */
const current: { ns?: string; app?: string } = {};

const CASES: Case[] = [
  {
    name: "cold start: a request held at 0 replicas is answered once KEDA scales to 1",
    timeoutMs: 180_000,
    async run(env, ctx) {
      const ns = await env.namespace("e2e-cold");
      Object.assign(current, { ns, app: "cold" });
      ctx.step("deploy the app and wait for its route");
      await env.deploy(ns, { name: "cold", hosts: ["cold.e2e.test"] });
      await using watch = env.watch(ns, "cold");
      await env.waitRoutes([`${ns}/cold`]);
      await waitScaledObjectReady(env, ns, "cold");
      await watch.synced;
      assert.equal(watch.now?.desired, 0, "the app starts at 0 replicas");

      ctx.step("first request (held while KEDA scales 0 → 1)");
      const t0 = Date.now();
      const r = await env.get("cold.e2e.test", "/hello?case=cold");
      const coldMs = Date.now() - t0;
      expectApp(r, "cold", "the held request");
      assert.equal(r.headers.get("x-keda-http-cold-start"), "true", "X-KEDA-HTTP-Cold-Start");
      assert.equal(appAnswer(r).path, "/hello");
      const scaled = await watch.until("KEDA to have scaled to 1", (s) => s.desired >= 1, {
        timeoutMs: 5_000,
        since: t0,
      });
      assert.ok(scaled.at >= t0, "the Deployment was at 0 when the request was sent");
      figures.info("cold start", { requestToResponseMs: coldMs, toScaledMs: scaled.at - t0 });

      ctx.step("second request (warm)");
      const warm = await env.get("cold.e2e.test", "/hello");
      expectApp(warm, "cold", "the warm request");
      assert.equal(warm.headers.get("x-keda-http-cold-start"), "false");
    },
  },
  {
    name: "scale out (concurrency): 25 in flight with target 10 → 3 replicas, not more",
    timeoutMs: 240_000,
    async run(env, ctx) {
      const tally = await scaleOut(env, ctx, {
        namespace: "e2e-conc",
        app: "busy",
        scalingMetric: { concurrency: { targetValue: 10 } },
        loadStep: "sustained concurrency 25 (each request takes 1 s)",
        load: (to) =>
          closedLoop({
            ...to,
            request: { host: "busy.e2e.test", path: "/work?delay_ms=1000", timeoutMs: 90_000 },
            concurrency: 25,
          }),
        ceiling: "ceil(25/10)",
        figure: "scale out (concurrency)",
      });
      figures.info("scale out (concurrency) load", {
        tally: describeTally(tally),
        p50Ms: Math.round(percentile(tally.latenciesMs, 50)),
      });
    },
  },
  {
    name: "scale out (requestRate): 10 rps with target 4/s → 3 replicas, not more",
    timeoutMs: 240_000,
    async run(env, ctx) {
      await scaleOut(env, ctx, {
        namespace: "e2e-rate",
        app: "rated",
        scalingMetric: { requestRate: { targetValue: 4, window: "10s", granularity: "1s" } },
        warmUp: true,
        loadStep: "10 requests per second",
        load: (to) =>
          fixedRate({
            ...to,
            request: { host: "rated.e2e.test", path: "/r", timeoutMs: 60_000 },
            rps: 10,
          }),
        ceiling: "ceil(10/4)",
        figure: "scale out (requestRate)",
      });
    },
  },
  {
    name:
      "scale in: traffic keeps the app up; no traffic → 0 after scaledownPeriod; then cold again",
    timeoutMs: 240_000,
    async run(env, ctx) {
      const ns = await env.namespace("e2e-idle");
      Object.assign(current, { ns, app: "idle" });
      await env.deploy(ns, { name: "idle", hosts: ["idle.e2e.test"], scaledownPeriod: 5 });
      await using watch = env.watch(ns, "idle");
      await env.waitRoutes([`${ns}/idle`]);
      await waitScaledObjectReady(env, ns, "idle");

      ctx.step("25 s of traffic (2 in flight): more than scaledownPeriod + KEDA's 15 s poll");
      const stop = new AbortController();
      const load = closedLoop({
        targets: [await env.proxy()],
        request: { host: "idle.e2e.test", path: "/busy?delay_ms=300", timeoutMs: 90_000 },
        concurrency: 2,
        signal: AbortSignal.any([stop.signal, ctx.signal]),
      });
      let up: number;
      try {
        up = (await watch.until("the app to scale to 1", (s) => s.desired >= 1, {
          timeoutMs: 60_000,
          signal: ctx.signal,
        })).at;
        await sleep(25_000, ctx.signal);
      } finally {
        stop.abort();
      }
      const tStop = Date.now();
      const tally = await load;
      assert.equal(failedAccepted(tally), 0, describeTally(tally));
      assert.ok(tally.coldStarts <= 2, `only the first requests are cold: ${describeTally(tally)}`);
      assert.ok(
        watch.minDesiredBetween(up, tStop) >= 1,
        `scaled in while traffic flowed: ${watch.describeHistory(up)}`,
      );

      ctx.step("no traffic: back to 0");
      const zero = await watch.until("KEDA to scale the app to 0", (s) => s.desired === 0, {
        timeoutMs: 90_000,
        since: tStop,
        signal: ctx.signal,
      });
      const so = await env.client.get<
        { spec?: { cooldownPeriod?: number }; status?: { lastActiveTime?: string } }
      >(`/apis/keda.sh/v1alpha1/namespaces/${ns}/scaledobjects/idle`);
      assert.equal(
        so.spec?.cooldownPeriod,
        5,
        "scaledownPeriod becomes the ScaledObject's cooldownPeriod",
      );
      const lastActive = Date.parse(so.status?.lastActiveTime ?? "");
      assert.ok(
        zero.at - lastActive >= 4_000,
        `scaled to 0 only ${
          zero.at - lastActive
        } ms after KEDA last saw the app active (scaledownPeriod 5 s)`,
      );
      figures.info("scale in", {
        trafficStopToZeroMs: zero.at - tStop,
        afterLastActiveMs: zero.at - lastActive,
      });
      await watch.until("the app's pods to be gone", (s) => s.current === 0, {
        timeoutMs: 60_000,
        signal: ctx.signal,
      });

      ctx.step("the next request cold-starts again");
      const t0 = Date.now();
      const again = await env.get("idle.e2e.test", "/again");
      expectApp(again, "idle", "the request after scale-in");
      assert.equal(again.headers.get("x-keda-http-cold-start"), "true");
      figures.info("second cold start", { requestToResponseMs: Date.now() - t0 });
    },
  },
  {
    name:
      "routing: hosts, path prefixes and headers; apps scale independently; live update and delete",
    timeoutMs: 300_000,
    async run(env, ctx) {
      const ns = await env.namespace("e2e-route");
      Object.assign(current, { ns, app: "beta" });
      const alpha: AppSpec = { name: "alpha", hosts: ["alpha.e2e.test", "shop.e2e.test"] };
      const beta: AppSpec = {
        name: "beta",
        hosts: ["beta.e2e.test", "shop.e2e.test"],
        pathPrefixes: ["/api"],
        headers: [{ name: "X-Canary", value: "1" }],
      };
      await env.deploy(ns, alpha, beta);
      await using wa = env.watch(ns, "alpha");
      await using wb = env.watch(ns, "beta");
      await env.waitRoutes([`${ns}/alpha`, `${ns}/beta`]);
      await waitScaledObjectReady(env, ns, "alpha");
      await waitScaledObjectReady(env, ns, "beta");
      const canary = { "x-canary": "1" };

      ctx.step("beta by host + path + header; alpha stays at 0");
      expectApp(
        await env.get("beta.e2e.test", "/api/items", { headers: canary }),
        "beta",
        "beta.e2e.test/api",
      );
      await wb.until("beta to be up", (s) => s.ready >= 1, { timeoutMs: 30_000 });
      assert.equal(
        wa.maxDesiredSince(0),
        0,
        `alpha scaled though only beta was asked: ${wa.describeHistory()}`,
      );

      ctx.step("shared host: longest prefix with header → beta; without header → alpha");
      expectApp(
        await env.get("SHOP.e2e.test:8080", "/api/x", { headers: canary }),
        "beta",
        "shop /api + header",
      );
      const fallback = await env.get("shop.e2e.test", "/api/x");
      expectApp(fallback, "alpha", "shop /api without the header falls back to /");
      expectApp(await env.get("shop.e2e.test", "/other"), "alpha", "shop /other");
      expectApp(
        await env.get("alpha.e2e.test", "/api/x", { headers: canary }),
        "alpha",
        "alpha host",
      );

      ctx.step("no route → 404 from the interceptor");
      for (
        const [host, path, headers] of [
          ["nobody.e2e.test", "/", {}],
          ["beta.e2e.test", "/api/items", {}],
          ["beta.e2e.test", "/other", canary],
        ] as Array<[string, string, Record<string, string>]>
      ) {
        const r = await env.get(host, path, { headers });
        assert.equal(
          r.status,
          404,
          `${host}${path} ${JSON.stringify(headers)}: ${r.status} ${r.body}`,
        );
      }

      ctx.step("live update: beta gains host gamma.e2e.test and prefix /v2");
      await env.cluster.applyYaml(
        httpScaledObjectYaml(ns, {
          ...beta,
          hosts: [...beta.hosts!, "gamma.e2e.test"],
          pathPrefixes: ["/api", "/v2"],
        }),
        { namespace: ns },
      );
      const tUpdate = Date.now();
      await env.until(
        "gamma.e2e.test/v2 to reach beta",
        "gamma.e2e.test",
        "/v2/x",
        (r) => r.status === 200 && appAnswer(r).text === "beta",
        { headers: canary, timeoutMs: 30_000 },
      );
      figures.info("routing update live", { ms: Date.now() - tUpdate });

      ctx.step(
        "delete beta's HTTPScaledObject: its routes go, its ScaledObject goes, its Deployment stays",
      );
      const tDelete = Date.now();
      await env.client.delete(
        `/apis/http.keda.sh/v1alpha1/namespaces/${ns}/httpscaledobjects/beta`,
      );
      await env.until(
        "beta.e2e.test to stop routing",
        "beta.e2e.test",
        "/api/items",
        (r) => r.status === 404,
        {
          headers: canary,
          timeoutMs: 30_000,
        },
      );
      figures.info("routing delete live", { ms: Date.now() - tDelete });
      await env.cluster.waitFor(
        () =>
          env.client.get(`/apis/keda.sh/v1alpha1/namespaces/${ns}/scaledobjects/beta`).then(
            () => false,
            (e) => (e as { status?: number }).status === 404,
          ),
        { what: "beta's ScaledObject to be deleted", timeoutMs: 60_000 },
      );
      await env.cluster.waitFor(
        () =>
          env.client.get(`/apis/http.keda.sh/v1alpha1/namespaces/${ns}/httpscaledobjects/beta`)
            .then(
              () => false,
              (e) => (e as { status?: number }).status === 404,
            ),
        { what: "beta's HTTPScaledObject to be finalized", timeoutMs: 60_000 },
      );
      await env.client.get(`/apis/apps/v1/namespaces/${ns}/deployments/beta`);
      expectApp(
        await env.get("shop.e2e.test", "/api/x", { headers: canary }),
        "alpha",
        "shop /api after beta left",
      );
    },
  },
  {
    name: "two interceptor replicas: the scaler's sum drives the scale",
    timeoutMs: 300_000,
    async run(env, ctx) {
      ctx.step("interceptor ScaledObject minReplicaCount 2");
      await env.interceptorReplicas(2);
      const ns = await env.namespace("e2e-pair");
      Object.assign(current, { ns, app: "pair" });
      await env.deploy(ns, {
        name: "pair",
        hosts: ["pair.e2e.test"],
        max: 6,
        scaledownPeriod: 30,
        scalingMetric: { concurrency: { targetValue: 10 } },
      });
      await using watch = env.watch(ns, "pair");
      await env.waitRoutes([`${ns}/pair`]);
      await waitScaledObjectReady(env, ns, "pair");
      const interceptors = await env.interceptors();
      assert.equal(interceptors.length, 2);
      expectApp(await env.get("pair.e2e.test", "/"), "pair", "warm-up");

      ctx.step("8 in flight on each interceptor (target 10: one alone would mean 1 replica)");
      const stop = new AbortController();
      const tStart = Date.now();
      const loads = interceptors.map((i) =>
        closedLoop({
          targets: [i.proxy],
          request: { host: "pair.e2e.test", path: "/p?delay_ms=1500", timeoutMs: 90_000 },
          concurrency: 8,
          signal: AbortSignal.any([stop.signal, ctx.signal]),
        })
      );
      try {
        ctx.step("each interceptor counts its own 8");
        for (const i of interceptors) {
          await env.cluster.waitFor(
            async () => (await env.interceptorQueue(i.admin))[`${ns}/pair`]?.Concurrency === 8,
            {
              what: `interceptor ${i.pod} to count 8 in flight`,
              timeoutMs: 30_000,
              intervalMs: 250,
            },
          );
        }
        ctx.step("the scaler answers KEDA with the sum, 16");
        using scaler = new ExternalScalerClient(await env.scalerGrpc());
        const ref = { name: "pair", namespace: ns, scalerMetadata: { httpScaledObject: "pair" } };
        const [spec] = await scaler.getMetricSpec(ref);
        assert.ok(spec, "GetMetricSpec returned a metric");
        await env.cluster.waitFor(
          async () => (await scaler.getMetrics(ref, spec.metricName))[0]?.metricValue === 16,
          {
            what: "GetMetrics to report 16",
            timeoutMs: 30_000,
            intervalMs: 250,
          },
        );
        ctx.step("the HPA reads 16 through KEDA's metrics API server");
        const metric = await env.cluster.waitFor(async () => {
          const list = await env.client.get<{ items: Array<{ value: string }> }>(
            `/apis/external.metrics.k8s.io/v1beta1/namespaces/${ns}/s0-${spec.metricName}`,
            { query: { labelSelector: "scaledobject.keda.sh/name=pair" } },
          );
          return list.items[0]?.value === "16" && list.items[0];
        }, { what: "the external metric to read 16", timeoutMs: 30_000, intervalMs: 500 });
        assert.equal(metric.value, "16");
        const at2 = await watch.until(
          "the HPA to scale to 2",
          (s) => s.desired >= 2 && s.ready >= 2,
          {
            timeoutMs: 120_000,
            since: tStart,
            signal: ctx.signal,
          },
        );
        figures.info("two interceptors", { toTwoReadyMs: at2.at - tStart });
        await sleep(8_000, ctx.signal);
        assert.equal(
          watch.maxDesiredSince(tStart),
          2,
          `ceil(16/10) = 2: ${watch.describeHistory(tStart)}`,
        );
      } finally {
        stop.abort();
      }
      for (const tally of await Promise.all(loads)) {
        assert.equal(failedAccepted(tally), 0, describeTally(tally));
      }
    },
  },
  {
    name:
      "resilience: restart the scaler, an interceptor and the operator leader under traffic; crash an interceptor",
    timeoutMs: 480_000,
    async run(env, ctx) {
      await env.interceptorReplicas(2);
      await env.system.waitSettled("operator", 2);
      const ns = await env.namespace("e2e-resil");
      Object.assign(current, { ns, app: "steady" });
      await env.deploy(ns, { name: "steady", hosts: ["steady.e2e.test"], scaledownPeriod: 5 });
      await using watch = env.watch(ns, "steady");
      await env.waitRoutes([`${ns}/steady`]);
      await waitScaledObjectReady(env, ns, "steady");
      expectApp(await env.get("steady.e2e.test", "/"), "steady", "warm-up");
      const tWarm = Date.now();

      ctx.step("traffic: 4 in flight through the proxy Service");
      const stop = new AbortController();
      const CONCURRENCY = 4;
      const tally = emptyTally();
      const load = closedLoop({
        targets: [await env.proxy()],
        request: { host: "steady.e2e.test", path: "/s?delay_ms=200", timeoutMs: 60_000 },
        concurrency: CONCURRENCY,
        tally,
        signal: AbortSignal.any([stop.signal, ctx.signal]),
      });
      const restarts: Record<string, number> = {};
      let graceful = "";
      let crashHit = 0;
      try {
        await sleep(3_000, ctx.signal);
        ctx.step("restart the scaler");
        let t = Date.now();
        const [scaler] = await env.system.readyPods("scaler");
        await env.system.restartPod("scaler", scaler!.name);
        restarts.scalerMs = Date.now() - t;
        await sleep(3_000, ctx.signal);

        ctx.step("restart an interceptor");
        t = Date.now();
        const [interceptor] = await env.system.readyPods("interceptor");
        await env.system.restartPod("interceptor", interceptor!.name);
        await env.system.waitSettled("interceptor", 2);
        restarts.interceptorMs = Date.now() - t;
        await env.waitRoutes([`${ns}/steady`]);
        await sleep(3_000, ctx.signal);

        ctx.step("restart the operator leader");
        t = Date.now();
        const leader = await env.system.operatorLeader();
        assert.ok(leader, "the operator Lease has a holder");
        const pods = await env.system.readyPods("operator");
        assert.ok(
          pods.some((p) => p.name === leader),
          `leader ${leader} is one of ${pods.map((p) => p.name)}`,
        );
        await env.system.restartPod("operator", leader);
        const next = await env.cluster.waitFor(async () => {
          const h = await env.system.operatorLeader();
          return h && h !== leader && h;
        }, { what: "another operator to take the Lease", timeoutMs: 60_000 });
        restarts.operatorFailoverMs = Date.now() - t;
        ctx.step(`the new leader ${next} reconciles: scaledownPeriod 5 → 6`);
        await env.cluster.applyYaml(
          httpScaledObjectYaml(ns, {
            name: "steady",
            hosts: ["steady.e2e.test"],
            scaledownPeriod: 6,
          }),
          { namespace: ns },
        );
        await env.cluster.waitFor(async () => {
          const so = await env.client.get<{ spec?: { cooldownPeriod?: number } }>(
            `/apis/keda.sh/v1alpha1/namespaces/${ns}/scaledobjects/steady`,
          );
          return so.spec?.cooldownPeriod === 6;
        }, { what: "the ScaledObject's cooldownPeriod to follow the update", timeoutMs: 60_000 });
        await sleep(3_000, ctx.signal);
        // Graceful restarts (what rollouts, evictions and scale-in do): every
        // accepted request is answered. Refused connections (never accepted)
        // and stale keep-alive connections (retried once, as HTTP clients
        // do) are allowed and reported.
        graceful = describeTally(tally);
        assert.equal(failedAccepted(tally), 0, `accepted requests failed: ${graceful}`);

        if (env.access.direct) {
          // A crash is different: what was in flight on that interceptor is
          // lost (at most the 4 requests in flight), nothing more. The client
          // cannot tell a request in flight on a reused connection that died
          // from an idle connection the server closed, so both count here
          // (the stale ones were retried and answered).
          ctx.step("crash an interceptor (SIGKILL)");
          const [victim] = await env.system.readyPods("interceptor");
          const hitBefore = failedAccepted(tally) + tally.retriedStale;
          t = Date.now();
          await env.system.crashPod("interceptor", victim!.name);
          restarts.interceptorCrashRecoveryMs = Date.now() - t;
          await env.waitRoutes([`${ns}/steady`]);
          await sleep(3_000, ctx.signal);
          crashHit = failedAccepted(tally) + tally.retriedStale - hitBefore;
          assert.ok(
            crashHit <= CONCURRENCY,
            `a crash hit ${crashHit} requests, more than the ${CONCURRENCY} that can be in flight: ${
              describeTally(tally)
            }`,
          );
        }
      } finally {
        stop.abort();
      }
      const tStop = Date.now();
      await load;
      figures.info("resilience", {
        ...restarts,
        gracefulTally: graceful,
        crashHit,
        tally: describeTally(tally),
      });
      assert.ok(tally.ok > 50, `traffic flowed: ${describeTally(tally)}`);
      assert.ok(
        watch.minDesiredBetween(tWarm, tStop) >= 1,
        `the app scaled in during the restarts: ${watch.describeHistory(tWarm)}`,
      );

      ctx.step("and the app still scales to zero afterwards");
      await watch.until("the app to scale to 0 after the restarts", (s) => s.desired === 0, {
        timeoutMs: 120_000,
        since: tStop,
        signal: ctx.signal,
      });
    },
  },
  {
    name:
      "bad input: an HTTPScaledObject naming a missing Service reports why; nothing else is disturbed",
    timeoutMs: 180_000,
    async run(env, ctx) {
      const ns = await env.namespace("e2e-bad");
      Object.assign(current, { ns, app: "broken" });
      const restartsBefore = await allRestarts(env);
      await env.deploy(ns, { name: "fine", hosts: ["fine.e2e.test"] });
      await env.waitRoutes([`${ns}/fine`]);

      ctx.step("apply an HTTPScaledObject whose Service does not exist");
      await env.deploy(ns, {
        name: "broken",
        hosts: ["broken.e2e.test"],
        service: "no-such-svc",
        createService: false,
      });
      const cond = await env.cluster.waitFor(async () => {
        const o = await env.client.get<
          {
            status?: {
              conditions?: Array<
                { type: string; status: string; reason?: string; message?: string }
              >;
            };
          }
        >(
          `/apis/http.keda.sh/v1alpha1/namespaces/${ns}/httpscaledobjects/broken`,
        );
        const c = o.status?.conditions?.find((c) => c.type === "Ready");
        return c?.status === "False" && c;
      }, { what: "HTTPScaledObject broken to report Ready=False", timeoutMs: 60_000 });
      assert.equal(cond.reason, "ServiceNotFound");
      assert.match(cond.message ?? "", /no-such-svc/);

      ctx.step("an invalid spec is refused by the API server with the reason");
      await assert.rejects(
        env.cluster.applyYaml(
          httpScaledObjectYaml(ns, { name: "invalid", hosts: ["x.e2e.test"] }).replace(
            "    port: 8080",
            "    port: 8080\n    portName: http",
          ),
          { namespace: ns },
        ),
        /port|portName/,
      );

      ctx.step("the other app still cold-starts and serves");
      const r = await env.get("fine.e2e.test", "/");
      expectApp(r, "fine", "the good app next to the broken one");
      assert.equal(r.headers.get("x-keda-http-cold-start"), "true");
      const fine = await env.client.get<
        { status?: { conditions?: Array<{ type: string; status: string }> } }
      >(
        `/apis/http.keda.sh/v1alpha1/namespaces/${ns}/httpscaledobjects/fine`,
      );
      assert.equal(fine.status?.conditions?.find((c) => c.type === "Ready")?.status, "True");
      assert.deepEqual(await allRestarts(env), restartsBefore, "none of our pods restarted");

      ctx.step("creating the Service fixes it (level-triggered)");
      await env.cluster.applyYaml({
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: "no-such-svc", namespace: ns },
        spec: {
          selector: { app: "broken" },
          ports: [{ name: "http", port: 8080, targetPort: 8080 }],
        },
      }, { namespace: ns });
      await env.cluster.waitFor(async () => {
        const o = await env.client.get<
          { status?: { conditions?: Array<{ type: string; status: string }> } }
        >(
          `/apis/http.keda.sh/v1alpha1/namespaces/${ns}/httpscaledobjects/broken`,
        );
        return o.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
      }, {
        what: "HTTPScaledObject broken to turn Ready once its Service exists",
        timeoutMs: 60_000,
      });
    },
  },
];

/** What a scale-out case states; the rest is the same for every metric. */
interface ScaleOutCase {
  namespace: string;
  /** The app, reached as `<app>.e2e.test`; it may scale to 6 replicas. */
  app: string;
  scalingMetric: NonNullable<AppSpec["scalingMetric"]>;
  /** One request first, so that held requests do not reach the app as one burst. */
  warmUp?: boolean;
  loadStep: string;
  /** Starts the load on the proxy; it runs until the signal aborts. */
  load(to: { targets: HttpTarget[]; signal: AbortSignal }): Promise<LoadTally>;
  /** How 3 replicas follow from the load and the target, for the failure message. */
  ceiling: string;
  /** The figures line with the time to 3 ready replicas. */
  figure: string;
}

/**
 * An app under load must reach 3 ready replicas and stay at 3 for two more
 * HPA syncs: the metric KEDA reads must not overshoot. No accepted request
 * may fail; resolves with the load's tally.
 */
async function scaleOut(env: E2E, ctx: CaseContext, c: ScaleOutCase): Promise<LoadTally> {
  const ns = await env.namespace(c.namespace);
  Object.assign(current, { ns, app: c.app });
  const host = `${c.app}.e2e.test`;
  await env.deploy(ns, {
    name: c.app,
    hosts: [host],
    max: 6,
    scaledownPeriod: 30,
    scalingMetric: c.scalingMetric,
  });
  await using watch = env.watch(ns, c.app);
  await env.waitRoutes([`${ns}/${c.app}`]);
  await waitScaledObjectReady(env, ns, c.app);
  if (c.warmUp) {
    ctx.step("warm the app so held requests do not arrive as one burst");
    expectApp(await env.get(host, "/"), c.app, "warm-up");
  }

  ctx.step(c.loadStep);
  const stop = new AbortController();
  const tStart = Date.now();
  const load = c.load({
    targets: [await env.proxy()],
    signal: AbortSignal.any([stop.signal, ctx.signal]),
  });
  try {
    const at3 = await watch.until(
      "the HPA to scale to 3",
      (s) => s.desired >= 3 && s.ready >= 3,
      { timeoutMs: 120_000, since: tStart, signal: ctx.signal },
    );
    figures.info(c.figure, { toThreeReadyMs: at3.at - tStart });
    ctx.step("holding: the count must stay at 3 (two more HPA syncs)");
    await sleep(12_000, ctx.signal);
    assert.equal(
      watch.maxDesiredSince(tStart),
      3,
      `desired replicas went above ${c.ceiling} = 3: ${watch.describeHistory(tStart)}`,
    );
  } finally {
    stop.abort();
  }
  const tally = await load;
  assert.equal(failedAccepted(tally), 0, describeTally(tally));
  return tally;
}

async function waitScaledObjectReady(env: E2E, ns: string, name: string): Promise<void> {
  await env.cluster.waitFor(async () => {
    const so = await env.client.get<
      { status?: { conditions?: Array<{ type: string; status: string }> } }
    >(
      `/apis/keda.sh/v1alpha1/namespaces/${ns}/scaledobjects/${name}`,
    );
    return so.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
  }, { what: `the operator's ScaledObject ${ns}/${name} to be Ready in KEDA`, timeoutMs: 60_000 });
}

async function allRestarts(env: E2E): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const c of ["interceptor", "scaler", "operator"] as const) {
    for (const p of await env.system.pods(c)) if (!p.deleting) out[p.name] = p.restarts;
  }
  return out;
}

Deno.test({
  name: "e2e with the real KEDA",
  // @grpc/grpc-js and informers keep timers between calls.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const tSuite = Date.now();
    await using env = await E2E.start();
    for (const c of CASES) {
      if (selected.length && !selected.some((s) => c.name.includes(s))) continue;
      await t.step(c.name, async () => {
        const t0 = Date.now();
        current.ns = undefined;
        current.app = undefined;
        try {
          await withTimeout(c.name, c.timeoutMs, (ctx) => c.run(env, ctx), async () => {
            const parts = [];
            if (current.ns && current.app) parts.push(await env.diagnose(current.ns, current.app));
            parts.push(`--- ${env.system.namespace} ---\n${await env.system.describe()}`);
            return parts.join("\n");
          });
        } finally {
          if (current.ns) await env.dropNamespace(current.ns);
          figures.info("case done", { case: c.name, ms: Date.now() - t0 });
        }
      });
    }
    figures.info("suite done", { ms: Date.now() - tSuite });
  },
});
