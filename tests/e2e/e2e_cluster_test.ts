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
import { isNotFound } from "../../shared/kube.ts";
import { sleep } from "../../shared/lifetime.ts";
import type { AppSpec, RouteSpec } from "./apps.ts";
import {
  httpScaledObjectYaml,
  interceptorRouteYaml,
  scaledObjectYaml,
  workloadYaml,
} from "./apps.ts";
import { type CaseContext, E2E, e2eLogger, withTimeout } from "./harness.ts";
import { httpGet, type HttpResponse, type HttpTarget } from "./http_client.ts";
import { SCALER_SERVICE } from "./system.ts";
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

function appAnswer(
  r: HttpResponse,
): { text?: string; path?: string; pod?: string; host?: string; listeningAt?: number } {
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
      figures.info("cold start", { requestToResponseMs: coldMs, toScaledMs: scaled.at - t0 });

      ctx.step("second request (warm: once the kubelet says Ready)");
      // Before that, another interceptor replica holds it while it probes
      // the pod itself (probe-driven forwarding), and says cold start.
      await watch.until("the pod Ready", (s) => s.ready >= 1, {
        timeoutMs: 60_000,
        since: t0,
        signal: ctx.signal,
      });
      const warm = await env.get("cold.e2e.test", "/hello");
      expectApp(warm, "cold", "the warm request");
      assert.equal(warm.headers.get("x-keda-http-cold-start"), "false");
    },
  },
  {
    name:
      "default probe timings: the held request is answered once the app listens, not at the kubelet's next probe",
    timeoutMs: 180_000,
    async run(env, ctx) {
      const ns = await env.namespace("e2e-probes");
      const app = "slowprobe";
      Object.assign(current, { ns, app });
      ctx.step("deploy an app with Kubernetes' default probe period (10 s) that listens 1 s late");
      // The kubelet probes as the container starts (the app does not listen
      // yet) and again 10 s later: without our probing the request waits for that.
      await env.deploy(ns, {
        name: app,
        hosts: ["slowprobe.e2e.test"],
        defaultProbes: true,
        env: { LISTEN_DELAY_MS: "1000" },
      });
      await using watch = env.watch(ns, app);
      await env.waitRoutes([`${ns}/${app}`]);
      await waitScaledObjectReady(env, ns, app);
      await watch.synced;
      assert.equal(watch.now?.desired, 0, "the app starts at 0 replicas");

      ctx.step("first request (held; answered by the pod that passed our probe)");
      const t0 = Date.now();
      const r = await env.get("slowprobe.e2e.test", "/hello?case=probes");
      const answeredAt = Date.now();
      expectApp(r, app, "the held request");
      assert.equal(r.headers.get("x-keda-http-cold-start"), "true", "X-KEDA-HTTP-Cold-Start");
      const listeningAt = appAnswer(r).listeningAt ?? 0;
      assert.ok(listeningAt > t0, `the app reports when it listened: ${r.body.slice(0, 300)}`);
      assert.ok(
        !watch.history.some((s) => s.ready > 0 && s.at <= answeredAt),
        `answered before the kubelet marked the pod Ready: ${JSON.stringify(watch.history)}`,
      );

      ctx.step("the kubelet's Ready comes later; requests keep being served");
      const ready = await watch.until("the kubelet to mark the pod Ready", (s) => s.ready >= 1, {
        timeoutMs: 60_000,
        since: t0,
        signal: ctx.signal,
      });
      const warm = await env.get("slowprobe.e2e.test", "/hello");
      expectApp(warm, app, "the warm request");
      assert.equal(warm.headers.get("x-keda-http-cold-start"), "false");
      figures.info("default probes cold start", {
        requestToResponseMs: answeredAt - t0,
        requestToListeningMs: listeningAt - t0,
        listeningToResponseMs: answeredAt - listeningAt,
        responseToKubeletReadyMs: ready.at - answeredAt,
      });
    },
  },
  {
    name:
      "wake API: POST /wake scales an app from zero with no request, keeps it up for the duration, then lets it go to 0",
    timeoutMs: 180_000,
    async run(env, ctx) {
      const ns = await env.namespace("e2e-wake");
      const app = "woken";
      Object.assign(current, { ns, app });
      ctx.step("deploy the app (scaledownPeriod 1 s)");
      await env.deploy(ns, { name: app, hosts: ["woken.e2e.test"], scaledownPeriod: 1 });
      await using watch = env.watch(ns, app);
      await env.waitRoutes([`${ns}/${app}`]);
      await waitScaledObjectReady(env, ns, app);
      await watch.synced;
      assert.equal(watch.now?.desired, 0, "the app starts at 0 replicas");
      const scaler = await env.scalerHttp();
      const wakeQuery = `namespace=${ns}&name=${app}&kind=HTTPScaledObject`;

      ctx.step("POST /wake for 25s: KEDA scales it to 1 without any request");
      const t0 = Date.now();
      const posted = await httpGet(scaler, {
        host: "scaler",
        path: `/wake?${wakeQuery}&for=25s`,
        method: "POST",
        timeoutMs: 10_000,
      });
      assert.equal(posted.status, 201, posted.body);
      const wakeEnd = Date.parse((JSON.parse(posted.body) as { until: string }).until);
      assert.ok(wakeEnd >= t0 + 24_000, posted.body);
      const up = await watch.until("KEDA to scale the woken app to 1", (s) => s.desired >= 1, {
        timeoutMs: 60_000,
        since: t0,
        signal: ctx.signal,
      });
      const queue = JSON.parse(
        (await httpGet(scaler, { host: "scaler", path: "/queue", timeoutMs: 10_000 })).body,
      ) as Record<string, { WakeUntil?: string }>;
      assert.ok(
        queue[`${ns}/${app}`]?.WakeUntil,
        `/queue shows the wake: ${JSON.stringify(queue)}`,
      );
      const listed = JSON.parse(
        (await httpGet(scaler, { host: "scaler", path: "/wake", timeoutMs: 10_000 })).body,
      ) as { wakes: Array<{ route: string }> };
      assert.deepEqual(listed.wakes.map((w) => w.route), [`${ns}/${app}`]);

      ctx.step("kept up while the wake lasts (cooldown 1 s, KEDA polls every 15 s)");
      await sleep(Math.max(0, wakeEnd - Date.now()), ctx.signal);
      assert.ok(
        !watch.history.some((s) => s.at >= up.at && s.desired === 0),
        `never scaled in while awake: ${JSON.stringify(watch.history)}`,
      );

      ctx.step("after the wake: back to 0");
      const zero = await watch.until("KEDA to scale the app to 0", (s) => s.desired === 0, {
        timeoutMs: 90_000,
        since: wakeEnd,
        signal: ctx.signal,
      });

      ctx.step("DELETE /wake ends a wake; a second DELETE says there is none");
      const again = await httpGet(scaler, {
        host: "scaler",
        path: `/wake?${wakeQuery}&for=10m`,
        method: "POST",
        timeoutMs: 10_000,
      });
      assert.equal(again.status, 201, again.body);
      const ended = await httpGet(scaler, {
        host: "scaler",
        path: `/wake?${wakeQuery}`,
        method: "DELETE",
        timeoutMs: 10_000,
      });
      assert.equal(ended.status, 200, ended.body);
      const gone = await httpGet(scaler, {
        host: "scaler",
        path: `/wake?${wakeQuery}`,
        method: "DELETE",
        timeoutMs: 10_000,
      });
      assert.equal(gone.status, 404, gone.body);
      figures.info("wake", {
        postToScaledMs: up.at - t0,
        wakeEndToZeroMs: zero.at - wakeEnd,
      });
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
  {
    name: "InterceptorRoute + own ScaledObject: scale from zero and back",
    timeoutMs: 180_000,
    async run(env, ctx) {
      const ns = await env.namespace("e2e-ir");
      Object.assign(current, { ns, app: "routed" });
      ctx.step("deploy the app, its InterceptorRoute and the user's own ScaledObject");
      await deployRouted(env, ns, {
        name: "routed",
        hosts: ["routed.e2e.test"],
        scalingMetric: { concurrency: { targetValue: 10 } },
        cooldownPeriod: 3,
        // KEDA scales to 0 at a poll (it ignores the scaler's pushed `false`);
        // its default 30 s would make this case wait up to 33 s.
        pollingInterval: 3,
      });
      await using watch = env.watch(ns, "routed");
      await env.waitRoutes([`${ns}/routed`], { check: isInterceptorRoute });
      const ready = await waitRouteReady(env, ns, "routed");
      assert.equal(ready.reason, "Reconciled", `route status: ${JSON.stringify(ready)}`);
      await waitScaledObjectReady(env, ns, "routed");
      const so = await getScaledObject(env, ns, "routed");
      assert.deepEqual(
        so.metadata?.ownerReferences ?? [],
        [],
        "the user's ScaledObject is left alone (no ownerReference)",
      );
      const others = await env.client.list(`/apis/keda.sh/v1alpha1/namespaces/${ns}/scaledobjects`);
      assert.deepEqual(
        others.items.map((o) => o.metadata?.name),
        ["routed"],
        "the operator writes no ScaledObject for an InterceptorRoute",
      );
      await watch.synced;
      assert.equal(watch.now?.desired, 0, "the app starts at 0 replicas");

      ctx.step("first request (held while KEDA scales 0 → 1)");
      const t0 = Date.now();
      const r = await env.get("routed.e2e.test", "/hello?case=ir");
      const coldMs = Date.now() - t0;
      expectApp(r, "routed", "the held request");
      assert.equal(r.headers.get("x-keda-http-cold-start"), "true", "X-KEDA-HTTP-Cold-Start");
      const scaled = await watch.until("KEDA to have scaled to 1", (s) => s.desired >= 1, {
        timeoutMs: 5_000,
        since: t0,
      });
      // Warm once the kubelet says Ready (see the first case).
      await watch.until("the pod Ready", (s) => s.ready >= 1, {
        timeoutMs: 60_000,
        since: t0,
        signal: ctx.signal,
      });
      const warm = await env.get("routed.e2e.test", "/hello");
      expectApp(warm, "routed", "the warm request");
      assert.equal(warm.headers.get("x-keda-http-cold-start"), "false");

      ctx.step("no traffic: back to 0 after cooldownPeriod");
      const tStop = Date.now();
      const zero = await watch.until("KEDA to scale the app to 0", (s) => s.desired === 0, {
        timeoutMs: 90_000,
        since: tStop,
        signal: ctx.signal,
      });
      figures.info("InterceptorRoute cold start and back", {
        requestToResponseMs: coldMs,
        toScaledMs: scaled.at - t0,
        trafficStopToZeroMs: zero.at - tStop,
      });
    },
  },
  {
    name: "InterceptorRoute with both metrics: the HPA follows the larger replica count",
    timeoutMs: 240_000,
    async run(env, ctx) {
      const ns = await env.namespace("e2e-irboth");
      const app = "both";
      Object.assign(current, { ns, app });
      await deployRouted(env, ns, {
        name: app,
        hosts: ["both.e2e.test"],
        scalingMetric: {
          concurrency: { targetValue: 10 },
          requestRate: { targetValue: 1000 },
        },
        max: 6,
        cooldownPeriod: 30,
      });
      await using watch = env.watch(ns, app);
      await env.waitRoutes([`${ns}/${app}`], { check: isInterceptorRoute });
      await waitRouteReady(env, ns, app);
      await waitScaledObjectReady(env, ns, app);
      const concurrencyMetric = `http_${app}_concurrency`;
      const rateMetric = `http_${app}_rate`;

      ctx.step("KEDA's HPA has one External metric per scalingMetric");
      const hpaPath =
        `/apis/autoscaling/v2/namespaces/${ns}/horizontalpodautoscalers/keda-hpa-${app}`;
      const hpaMetrics = await env.cluster.waitFor(async () => {
        const hpa = await env.client.get<HpaObject>(hpaPath);
        const names = externalMetricNames(hpa);
        return names.length === 2 && names;
      }, { what: "KEDA's HPA with two External metrics", timeoutMs: 30_000, intervalMs: 500 });
      assert.deepEqual(hpaMetrics, [`s0-${concurrencyMetric}`, `s0-${rateMetric}`]);

      ctx.step("sustained concurrency 25 (each request takes 1 s), about 25 requests/s");
      const stop = new AbortController();
      const tStart = Date.now();
      const load = closedLoop({
        targets: [await env.proxy()],
        request: { host: "both.e2e.test", path: "/work?delay_ms=1000", timeoutMs: 90_000 },
        concurrency: 25,
        signal: AbortSignal.any([stop.signal, ctx.signal]),
      });
      const seen: Record<string, unknown> = {};
      try {
        const at3 = await watch.until(
          "the HPA to scale to 3 (concurrency: ceil(25/10); rate alone: 1)",
          (s) => s.desired >= 3 && s.ready >= 3,
          { timeoutMs: 120_000, since: tStart, signal: ctx.signal },
        );

        ctx.step("the scaler reports a value for each metric, and only the one asked for");
        using scaler = new ExternalScalerClient(await env.scalerGrpc());
        const ref = { name: app, namespace: ns, scalerMetadata: { interceptorRoute: app } };
        const specs = await scaler.getMetricSpec(ref);
        assert.deepEqual(
          specs.map((s) => [s.metricName, s.targetSizeFloat]).sort(),
          [[concurrencyMetric, 10], [rateMetric, 1000]],
        );
        const conc = await env.cluster.waitFor(async () => {
          const v = await scaler.getMetrics(ref, concurrencyMetric);
          return v.length === 1 && v[0]!.metricName === concurrencyMetric &&
            v[0]!.metricValueFloat === 25 && v[0]!;
        }, { what: "GetMetrics concurrency to report 25", timeoutMs: 30_000, intervalMs: 250 });
        const rate = await scaler.getMetrics(ref, rateMetric);
        assert.equal(rate.length, 1, `one value for ${rateMetric}: ${JSON.stringify(rate)}`);
        assert.equal(rate[0]!.metricName, rateMetric);
        assert.ok(
          rate[0]!.metricValueFloat > 0 && rate[0]!.metricValueFloat < 1000,
          `the request rate is measured (> 0) and far below its target: ${JSON.stringify(rate)}`,
        );
        seen.grpc = { concurrency: conc.metricValueFloat, rate: rate[0]!.metricValueFloat };

        ctx.step("KEDA's metrics API server serves both to the HPA");
        for (const metric of [concurrencyMetric, rateMetric]) {
          const value = await env.cluster.waitFor(async () => {
            const list = await env.client.get<{ items: Array<{ value: string }> }>(
              `/apis/external.metrics.k8s.io/v1beta1/namespaces/${ns}/s0-${metric}`,
              { query: { labelSelector: `scaledobject.keda.sh/name=${app}` } },
            );
            const v = list.items[0]?.value;
            return v !== undefined && quantity(v) > 0 && v;
          }, { what: `external metric s0-${metric} > 0`, timeoutMs: 30_000, intervalMs: 500 });
          seen[metric] = value;
        }
        const hpa = await env.cluster.waitFor(async () => {
          const h = await env.client.get<HpaObject>(hpaPath);
          return (h.status?.currentMetrics ?? []).length === 2 && h;
        }, { what: "the HPA to read both metrics", timeoutMs: 30_000, intervalMs: 500 });
        seen.hpaCurrentMetrics = hpa.status?.currentMetrics;
        figures.info("InterceptorRoute both metrics", { toThreeReadyMs: at3.at - tStart, seen });

        ctx.step("holding: the count must stay at 3 (two more HPA syncs)");
        await sleep(10_000, ctx.signal);
        assert.equal(
          watch.maxDesiredSince(tStart),
          3,
          `desired replicas went above max(ceil(25/10), ceil(25/1000)) = 3: ${
            watch.describeHistory(tStart)
          }`,
        );
      } finally {
        stop.abort();
      }
      const tally = await load;
      assert.equal(failedAccepted(tally), 0, describeTally(tally));
    },
  },
  {
    name: "an HTTPScaledObject and an InterceptorRoute side by side",
    timeoutMs: 180_000,
    async run(env, ctx) {
      const ns = await env.namespace("e2e-mixed");
      Object.assign(current, { ns, app: "modern" });
      ctx.step("legacy: an HTTPScaledObject; modern: an InterceptorRoute and its ScaledObject");
      await env.deploy(ns, { name: "legacy", hosts: ["legacy.e2e.test"] });
      await deployRouted(env, ns, {
        name: "modern",
        hosts: ["modern.e2e.test"],
        scalingMetric: { concurrency: { targetValue: 10 } },
      });
      await using wl = env.watch(ns, "legacy");
      await using wm = env.watch(ns, "modern");
      await env.waitRoutes([`${ns}/legacy`, `${ns}/modern`]);
      const table = await routingTableOf(env);
      assert.equal(table[`${ns}/legacy`]?.kind, "HTTPScaledObject");
      assert.equal(table[`${ns}/modern`]?.kind, "InterceptorRoute");
      await waitRouteReady(env, ns, "modern");
      await waitScaledObjectReady(env, ns, "legacy");
      await waitScaledObjectReady(env, ns, "modern");
      const legacySo = await getScaledObject(env, ns, "legacy");
      assert.deepEqual(legacySo.spec?.triggers?.[0]?.metadata, {
        scalerAddress: scalerAddressOf(env),
        httpScaledObject: "legacy",
      }, "the operator's ScaledObject dials the scaler at the address ours does");
      assert.deepEqual(
        (await getScaledObject(env, ns, "modern")).metadata?.ownerReferences ?? [],
        [],
      );
      await wl.synced;
      await wm.synced;
      assert.equal(wl.now?.desired, 0);
      assert.equal(wm.now?.desired, 0);

      ctx.step("modern cold-starts; legacy stays at 0");
      const t0 = Date.now();
      const m = await env.get("modern.e2e.test", "/m");
      const modernMs = Date.now() - t0;
      expectApp(m, "modern", "modern's held request");
      assert.equal(m.headers.get("x-keda-http-cold-start"), "true");
      assert.equal(wl.maxDesiredSince(0), 0, `legacy scaled: ${wl.describeHistory()}`);

      ctx.step("legacy cold-starts too");
      const t1 = Date.now();
      const l = await env.get("legacy.e2e.test", "/l");
      const legacyMs = Date.now() - t1;
      expectApp(l, "legacy", "legacy's held request");
      assert.equal(l.headers.get("x-keda-http-cold-start"), "true");
      await wl.until("legacy to be up", (s) => s.desired >= 1, { timeoutMs: 5_000, since: t1 });
      assert.ok(wm.now!.desired >= 1, `modern still up: ${wm.describeHistory()}`);
      expectApp(await env.get("modern.e2e.test", "/m2"), "modern", "modern warm");
      figures.info("side by side", { modernColdMs: modernMs, legacyColdMs: legacyMs });
    },
  },
  {
    name: "migration HTTPScaledObject → InterceptorRoute with traffic running loses no request",
    timeoutMs: 240_000,
    async run(env, ctx) {
      const ns = await env.namespace("e2e-migrate");
      const app = "mig";
      const host = "mig.e2e.test";
      Object.assign(current, { ns, app });
      const soPath = `/apis/keda.sh/v1alpha1/namespaces/${ns}/scaledobjects/${app}`;
      const httpsoPath = `/apis/http.keda.sh/v1alpha1/namespaces/${ns}/httpscaledobjects/${app}`;
      ctx.step("an app scaled by an HTTPScaledObject, kept warm by replicas.min 1");
      await env.deploy(ns, { name: app, hosts: [host], min: 1, max: 4, scaledownPeriod: 5 });
      await using watch = env.watch(ns, app);
      await env.waitRoutes([`${ns}/${app}`]);
      await waitScaledObjectReady(env, ns, app);
      await watch.until("the app to be up (min 1)", (s) => s.ready >= 1, {
        timeoutMs: 60_000,
        signal: ctx.signal,
      });
      const before = await getScaledObject(env, ns, app);
      assert.ok(
        hasHttpsoOwner(before),
        `the operator's ScaledObject is owned: ${JSON.stringify(before.metadata)}`,
      );
      const uid = before.metadata?.uid;

      ctx.step("steady traffic: 20 requests per second");
      const stop = new AbortController();
      const tally = emptyTally();
      const load = fixedRate({
        targets: [await env.proxy()],
        request: { host, path: "/m", timeoutMs: 60_000 },
        rps: 20,
        tally,
        signal: AbortSignal.any([stop.signal, ctx.signal]),
      });
      const tStart = Date.now();
      // Requests and failures per migration step, for the report.
      const steps: Array<{ step: string; ms: number; sent: number; failed: number }> = [];
      let mark = { at: Date.now(), sent: 0, failed: 0 };
      const done = (step: string) => {
        const now = { at: Date.now(), sent: tally.sent, failed: failedAccepted(tally) };
        steps.push({
          step,
          ms: now.at - mark.at,
          sent: now.sent - mark.sent,
          failed: now.failed - mark.failed,
        });
        mark = now;
      };
      let tStop: number;
      try {
        await sleep(2_000, ctx.signal);
        done("warm traffic");

        ctx.step("(a) annotate the HTTPScaledObject orphan-scaledobject");
        await env.client.patch(httpsoPath, {
          metadata: { annotations: { "httpscaledobject.keda.sh/orphan-scaledobject": "true" } },
        });
        await env.cluster.waitFor(
          async () => !hasHttpsoOwner(await getScaledObject(env, ns, app)),
          { what: "the ScaledObject to lose its ownerReference", timeoutMs: 30_000 },
        );
        done("(a) orphan");

        ctx.step("(b) an InterceptorRoute of the same name and hosts takes the routing");
        await env.cluster.applyYaml(
          interceptorRouteYaml(ns, {
            name: app,
            rules: [{ hosts: [host] }],
            scalingMetric: { concurrency: { targetValue: 100 } },
          }),
          { namespace: ns },
        );
        await env.waitRoutes([`${ns}/${app}`], { check: isInterceptorRoute });
        await waitRouteReady(env, ns, app);
        done("(b) InterceptorRoute");

        ctx.step("(c) the ScaledObject's trigger: httpScaledObject → interceptorRoute");
        const so = await getScaledObject(env, ns, app);
        const triggers = (so.spec?.triggers ?? []).map((t) => {
          if (t.type !== "external-push") return t;
          const { httpScaledObject: _, ...rest } = t.metadata ?? {};
          return { ...t, metadata: { ...rest, interceptorRoute: app } };
        });
        // A merge patch replaces the list whole: the httpScaledObject key is gone.
        await env.client.patch(soPath, { spec: { triggers } });
        const hpaPath =
          `/apis/autoscaling/v2/namespaces/${ns}/horizontalpodautoscalers/keda-hpa-${app}`;
        await env.cluster.waitFor(async () => {
          const names = externalMetricNames(await env.client.get<HpaObject>(hpaPath));
          return names.length === 1 && names[0] === `s0-http_${app}_concurrency`;
        }, { what: "KEDA's HPA to read the InterceptorRoute's metric", timeoutMs: 60_000 });
        await waitScaledObjectReady(env, ns, app);
        done("(c) trigger switched");

        ctx.step("(d) delete the HTTPScaledObject: the orphaned ScaledObject survives");
        await env.client.delete(httpsoPath);
        await env.cluster.waitFor(
          () => env.client.get(httpsoPath).then(() => false, (e) => isNotFound(e)),
          { what: "the HTTPScaledObject to be finalized and gone", timeoutMs: 60_000 },
        );
        // Time for a garbage collector or a finalizer to act on it, had it been owned.
        await sleep(3_000, ctx.signal);
        const after = await getScaledObject(env, ns, app);
        assert.equal(after.metadata?.uid, uid, "the same ScaledObject, never re-created");
        assert.ok(!after.metadata?.deletionTimestamp, "the ScaledObject is not being deleted");
        assert.deepEqual(after.spec?.triggers?.[0]?.metadata, {
          scalerAddress: scalerAddressOf(env),
          interceptorRoute: app,
        });
        done("(d) HTTPScaledObject deleted");

        ctx.step("(e) the ScaledObject is Ready and the app still up");
        await waitScaledObjectReady(env, ns, app);
        const d = await env.client.get<{ spec?: { replicas?: number } }>(
          `/apis/apps/v1/namespaces/${ns}/deployments/${app}`,
        );
        assert.ok((d.spec?.replicas ?? 0) >= 1, `replicas ${d.spec?.replicas}`);
        using scaler = new ExternalScalerClient(await env.scalerGrpc());
        const [spec] = await scaler.getMetricSpec({
          name: app,
          namespace: ns,
          scalerMetadata: { interceptorRoute: app },
        });
        assert.equal(spec?.metricName, `http_${app}_concurrency`);
        await sleep(3_000, ctx.signal);
        done("(e) after the migration");
      } finally {
        stop.abort();
        tStop = Date.now();
      }
      await load;
      figures.info("migration", { steps, tally: describeTally(tally) });
      assert.equal(
        failedAccepted(tally),
        0,
        `requests failed during the migration: ${describeTally(tally)}; per step ${
          JSON.stringify(steps)
        }`,
      );
      assert.equal(tally.ok, tally.sent, `every request got 200: ${describeTally(tally)}`);
      assert.ok(tally.ok > 100, `traffic flowed: ${describeTally(tally)}`);
      assert.ok(
        watch.minDesiredBetween(tStart, tStop) >= 1,
        `the app was scaled in during the migration: ${watch.describeHistory(tStart)}`,
      );
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
  }, { what: `the ScaledObject ${ns}/${name} to be Ready in KEDA`, timeoutMs: 60_000 });
}

/** An app routed by an InterceptorRoute and scaled by the user's own ScaledObject. */
interface RoutedApp {
  name: string;
  hosts: string[];
  scalingMetric: RouteSpec["scalingMetric"];
  min?: number;
  max?: number;
  cooldownPeriod?: number;
  pollingInterval?: number;
}

/** Where KEDA dials our scaler (what the operator writes: operator/reconcile.ts scalerAddressOf). */
function scalerAddressOf(env: E2E): string {
  return `${SCALER_SERVICE}.${env.system.namespace}:9090`;
}

/** Deployment at 0 + Service, the InterceptorRoute, and a ScaledObject as the Go docs write it. */
async function deployRouted(env: E2E, ns: string, app: RoutedApp): Promise<void> {
  await env.cluster.applyYaml(workloadYaml(ns, { name: app.name }), { namespace: ns });
  await env.cluster.applyYaml(
    interceptorRouteYaml(ns, {
      name: app.name,
      rules: [{ hosts: app.hosts }],
      scalingMetric: app.scalingMetric,
    }),
    { namespace: ns },
  );
  await env.cluster.applyYaml(
    scaledObjectYaml(ns, {
      name: app.name,
      scalerAddress: scalerAddressOf(env),
      min: app.min,
      max: app.max,
      cooldownPeriod: app.cooldownPeriod,
      pollingInterval: app.pollingInterval,
    }),
    { namespace: ns },
  );
}

/** waitRoutes check: the route comes from an InterceptorRoute (not an HTTPScaledObject). */
function isInterceptorRoute(route: Record<string, unknown>): boolean {
  return route.kind === "InterceptorRoute";
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  observedGeneration?: number;
}

/** Waits for the InterceptorRoute's Ready=True (for its current generation); returns it. */
async function waitRouteReady(env: E2E, ns: string, name: string): Promise<Condition> {
  let last = "no status";
  return await env.cluster.waitFor(async () => {
    const o = await env.client.get<
      { metadata?: { generation?: number }; status?: { conditions?: Condition[] } }
    >(`/apis/http.keda.sh/v1beta1/namespaces/${ns}/interceptorroutes/${name}`);
    const c = o.status?.conditions?.find((c) => c.type === "Ready");
    last = JSON.stringify(o.status ?? {});
    return c?.status === "True" &&
      (c.observedGeneration === undefined || c.observedGeneration === o.metadata?.generation) &&
      c;
  }, { what: `InterceptorRoute ${ns}/${name} to be Ready`, timeoutMs: 60_000 }).catch((e) => {
    throw new Error(`${(e as Error).message}; last status: ${last}`);
  });
}

interface ScaledObjectView {
  metadata?: {
    uid?: string;
    deletionTimestamp?: string;
    ownerReferences?: Array<{ kind?: string; name?: string }>;
  };
  spec?: { triggers?: Array<{ type?: string; metadata?: Record<string, string> }> };
}

async function getScaledObject(env: E2E, ns: string, name: string): Promise<ScaledObjectView> {
  return await env.client.get<ScaledObjectView>(
    `/apis/keda.sh/v1alpha1/namespaces/${ns}/scaledobjects/${name}`,
  );
}

function hasHttpsoOwner(so: ScaledObjectView): boolean {
  return (so.metadata?.ownerReferences ?? []).some((r) => r.kind === "HTTPScaledObject");
}

interface HpaObject {
  spec?: { metrics?: Array<{ type: string; external?: { metric?: { name?: string } } }> };
  status?: { currentMetrics?: unknown[] };
}

/** The External metric names of an HPA, sorted. */
function externalMetricNames(hpa: HpaObject): string[] {
  return (hpa.spec?.metrics ?? []).filter((m) => m.type === "External")
    .map((m) => m.external?.metric?.name ?? "").sort();
}

/** A Kubernetes quantity as a number ("25", "24500m", "2k"). */
function quantity(text: string): number {
  const m = /^([0-9.]+)([mk]?)$/.exec(text);
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === "m" ? 1e-3 : m[2] === "k" ? 1e3 : 1);
}

/** One interceptor's routing table (they all agree once waitRoutes passed). */
async function routingTableOf(env: E2E): Promise<Record<string, { kind?: string }>> {
  const [i] = await env.interceptors();
  assert.ok(i, "a ready interceptor");
  const r = await httpGet(i.admin, { host: "admin", path: "/routing_table", timeoutMs: 5_000 });
  return (JSON.parse(r.body) as { routes: Record<string, { kind?: string }> }).routes;
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
