/**
 * ScaledObjects written for an InterceptorRoute (metadata interceptorRoute:
 * <name>), end to end: a real gRPC client against the scaler's real parts,
 * fed by real HTTP servers speaking the interceptor admin wire format.
 */
import assert from "node:assert/strict";
import { GrpcCallError } from "./external_scaler.ts";
import {
  httpsoObject,
  interceptorRouteObject,
  startTestScaler,
  type TestScaler,
  waitFor,
} from "./testing/harness.ts";
import { QueueServer } from "./testing/queue_server.ts";

const ref = (namespace: string, route: string) => ({
  name: `${route}-so`,
  namespace,
  scalerMetadata: { interceptorRoute: route },
});

async function rejectsWith(p: Promise<unknown>, code: string, message: RegExp) {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof GrpcCallError, `expected a gRPC error, got ${e}`);
    assert.equal(e.codeName, code, e.details);
    assert.match(e.details, message);
    return;
  }
  assert.fail(`expected ${code}, but the call succeeded`);
}

/**
 * The stream's next value, or a failure after `ms`: far below the 60 s
 * heartbeat these tests set, so only a pushed message can arrive in time.
 */
async function nextWithin(stream: AsyncGenerator<boolean>, ms = 5_000): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const next = await Promise.race([
      stream.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`nothing pushed within ${ms} ms`)), ms);
      }),
    ]);
    assert.equal(next.done, false, "the stream ended");
    return next.value as boolean;
  } finally {
    clearTimeout(timer);
  }
}

function waitForWatches(scaler: TestScaler) {
  return waitFor(
    "watches open",
    () => scaler.parts.aggregator.podStatuses().every((p) => p.health === "ok") ? true : undefined,
  );
}

Deno.test("interceptorRoute GetMetricSpec: concurrency only, rate only, both", async () => {
  await using scaler = await startTestScaler({
    routes: [
      interceptorRouteObject("team-a", "web", {
        scalingMetric: { concurrency: { targetValue: 7 } },
      }),
      interceptorRouteObject("team-a", "api", {
        scalingMetric: { requestRate: { targetValue: 25, window: "2s", granularity: "100ms" } },
      }),
      interceptorRouteObject("team-a", "shop.v2", {
        scalingMetric: {
          concurrency: { targetValue: 10 },
          requestRate: { targetValue: 50 },
        },
      }),
    ],
  });
  const c = scaler.client;
  assert.deepEqual(await c.getMetricSpec(ref("team-a", "web")), [
    { metricName: "http_web_concurrency", targetSize: 7, targetSizeFloat: 7 },
  ]);
  assert.deepEqual(await c.getMetricSpec(ref("team-a", "api")), [
    { metricName: "http_api_rate", targetSize: 25, targetSizeFloat: 25 },
  ]);
  // Both: two HPA metrics; the name is used as it is, like Go.
  assert.deepEqual(await c.getMetricSpec(ref("team-a", "shop.v2")), [
    { metricName: "http_shop.v2_concurrency", targetSize: 10, targetSizeFloat: 10 },
    { metricName: "http_shop.v2_rate", targetSize: 50, targetSizeFloat: 50 },
  ]);
});

Deno.test("interceptorRoute GetMetrics: the metric asked for, the rate as a float; IsActive from the rate", async () => {
  await using a = new QueueServer();
  await using b = new QueueServer();
  a.addRoute("ns/shop", 1000);
  b.addRoute("ns/shop", 5000);
  a.setConcurrency("ns/shop", 2);
  b.setConcurrency("ns/shop", 3);
  a.addRoute("ns/feed");
  await using scaler = await startTestScaler({
    routes: [
      interceptorRouteObject("ns", "shop", {
        scalingMetric: {
          concurrency: { targetValue: 10 },
          requestRate: { targetValue: 10, window: "2s", granularity: "100ms" },
        },
      }),
      interceptorRouteObject("ns", "feed", {
        scalingMetric: { requestRate: { targetValue: 10, window: "2s", granularity: "100ms" } },
      }),
    ],
    interceptors: [a, b],
  });
  const c = scaler.client;
  assert.deepEqual(await c.getMetrics(ref("ns", "shop"), "http_shop_concurrency"), [
    { metricName: "http_shop_concurrency", metricValue: 5, metricValueFloat: 5 },
  ]);
  // Pre-existing counts are a baseline, not a burst.
  assert.deepEqual(await c.getMetrics(ref("ns", "shop"), "http_shop_rate"), [
    { metricName: "http_shop_rate", metricValue: 0, metricValueFloat: 0 },
  ]);
  assert.deepEqual((await c.getMetrics(ref("ns", "shop"), "")).map((v) => v.metricName), [
    "http_shop_concurrency",
    "http_shop_rate",
  ]);
  a.setRate("ns/shop", 7);
  b.setRate("ns/shop", 6.5);
  const rate = await waitFor("a fractional rate near 13.5 req/s", async () => {
    const [v] = await c.getMetrics(ref("ns", "shop"), "http_shop_rate");
    return v && v.metricValueFloat > 11 && v.metricValueFloat < 16 &&
        !Number.isInteger(v.metricValueFloat)
      ? v
      : undefined;
  });
  assert.equal(rate.metricValue, Math.ceil(rate.metricValueFloat), "the int field is the ceil");

  // A rate-only route with nothing in flight is active while its rate is > 0.
  assert.equal(await c.isActive(ref("ns", "feed")), false);
  a.setRate("ns/feed", 20);
  await waitFor("feed active from its rate", async () => {
    const [v] = await c.getMetrics(ref("ns", "feed"), "http_feed_rate");
    return v && v.metricValueFloat > 0 && (await c.isActive(ref("ns", "feed"))) ? true : undefined;
  });
  assert.equal(scaler.parts.aggregator.concurrency("ns/feed"), 0);
  a.setRate("ns/feed", 0);
  await waitFor(
    "feed idle after its 2 s window",
    async () => (await c.isActive(ref("ns", "feed"))) ? undefined : true,
  );
});

Deno.test("interceptorRoute: a placeholder route is active from the requests it answered", async () => {
  await using a = new QueueServer();
  a.addRoute("ns/sleepy", 40);
  a.addRoute("ns/plain", 40);
  // Polling only: the rate path (the watch path is the StreamIsActive test below).
  await using scaler = await startTestScaler({
    routes: [
      interceptorRouteObject("ns", "sleepy", {
        coldStart: { placeholder: { response: { body: "waking up" } } },
      }),
      interceptorRouteObject("ns", "plain"),
    ],
    interceptors: [a],
    watch: false,
  });
  const c = scaler.client;
  assert.equal(await c.isActive(ref("ns", "sleepy")), false);
  a.answered("ns/sleepy");
  a.answered("ns/plain");
  await waitFor(
    "sleepy active",
    async () => (await c.isActive(ref("ns", "sleepy"))) ? true : undefined,
  );
  // Concurrency never rose: the value is 0, and a route without placeholder stays idle.
  assert.equal((await c.getMetrics(ref("ns", "sleepy"), ""))[0]?.metricValue, 0);
  assert.equal(await c.isActive(ref("ns", "plain")), false);
});

Deno.test("interceptorRoute StreamIsActive: true is pushed when a request is held", async () => {
  await using a = new QueueServer();
  a.addRoute("ns/web");
  // Poll tick and heartbeat of a minute: only the push path can answer.
  await using scaler = await startTestScaler({
    routes: [interceptorRouteObject("ns", "web")],
    interceptors: [a],
    env: { KEDA_HTTP_QUEUE_TICK_DURATION: "60s", KEDA_HTTP_SCALER_STREAM_INTERVAL_MS: "60000" },
  });
  await waitForWatches(scaler);
  const controller = new AbortController();
  const stream = scaler.client.streamIsActive(ref("ns", "web"), { signal: controller.signal });
  try {
    assert.equal((await stream.next()).value, false, "the current state comes first");
    const release = a.hold("ns/web");
    assert.equal(await nextWithin(stream), true);
    release();
    assert.equal(await nextWithin(stream), false);
    assert.equal(scaler.parts.metrics.streamActivations.get(), 1);
  } finally {
    controller.abort();
    await stream.return(undefined);
  }
});

Deno.test("interceptorRoute StreamIsActive: a placeholder's request pushes true from the watch line", async () => {
  await using a = new QueueServer();
  a.addRoute("ns/sleepy", 7);
  await using scaler = await startTestScaler({
    routes: [
      interceptorRouteObject("ns", "sleepy", {
        coldStart: { placeholder: { response: { statusCode: 503 } } },
      }),
    ],
    interceptors: [a],
    env: { KEDA_HTTP_QUEUE_TICK_DURATION: "60s", KEDA_HTTP_SCALER_STREAM_INTERVAL_MS: "60000" },
  });
  await waitForWatches(scaler);
  const controller = new AbortController();
  const stream = scaler.client.streamIsActive(ref("ns", "sleepy"), { signal: controller.signal });
  try {
    assert.equal((await stream.next()).value, false);
    // Concurrency stays 0 throughout; only RequestCount rises.
    a.answered("ns/sleepy");
    assert.equal(await nextWithin(stream), true);
  } finally {
    controller.abort();
    await stream.return(undefined);
  }
});

Deno.test("interceptorRoute StreamIsActive: polling only, a request seen only as a RequestCount rise pushes true", async () => {
  await using a = new QueueServer();
  a.addRoute("ns/sleepy", 7);
  await using scaler = await startTestScaler({
    routes: [
      interceptorRouteObject("ns", "sleepy", {
        coldStart: { placeholder: { response: { body: "soon" } } },
      }),
    ],
    interceptors: [a],
    watch: false,
    env: { KEDA_HTTP_QUEUE_TICK_DURATION: "100ms", KEDA_HTTP_SCALER_STREAM_INTERVAL_MS: "60000" },
  });
  const controller = new AbortController();
  const stream = scaler.client.streamIsActive(ref("ns", "sleepy"), { signal: controller.signal });
  try {
    assert.equal((await stream.next()).value, false);
    a.answered("ns/sleepy", 2);
    assert.equal(await nextWithin(stream), true, "pushed on the poll's change event");
  } finally {
    controller.abort();
    await stream.return(undefined);
  }
});

Deno.test("interceptorRoute StreamIsActive ends with NOT_FOUND when the route is deleted", async () => {
  await using scaler = await startTestScaler({
    routes: [interceptorRouteObject("ns", "web")],
    env: { KEDA_HTTP_SCALER_STREAM_INTERVAL_MS: "50" },
  });
  const stream = scaler.client.streamIsActive(ref("ns", "web"));
  assert.equal((await stream.next()).value, false);
  scaler.routeStore.delete("ns/web");
  await rejectsWith(
    (async () => {
      for await (const _ of stream) { /* heartbeats until the deletion is seen */ }
    })(),
    "NOT_FOUND",
    /InterceptorRoute ns\/web not found/,
  );
});

Deno.test("interceptorRoute errors: missing, invalid, both keys, empty, unknown metric", async () => {
  await using scaler = await startTestScaler({
    routes: [
      interceptorRouteObject("ns", "web"),
      interceptorRouteObject("ns", "broken", { scalingMetric: {} }),
    ],
    httpsos: [httpsoObject("ns", "legacy")],
  });
  const c = scaler.client;
  await rejectsWith(
    c.getMetricSpec(ref("ns", "nope")),
    "NOT_FOUND",
    /InterceptorRoute ns\/nope not found: check that it exists in namespace "ns" and that scalerMetadata\.interceptorRoute of ScaledObject ns\/nope-so names it/,
  );
  await rejectsWith(c.isActive(ref("ns", "nope")), "NOT_FOUND", /ns\/nope/);
  // The name of an object of the other kind: the message says which key to use.
  await rejectsWith(
    c.getMetrics(ref("ns", "legacy"), ""),
    "NOT_FOUND",
    /an HTTPScaledObject ns\/legacy exists: .* set scalerMetadata\.httpScaledObject instead/,
  );
  await rejectsWith(
    c.getMetricSpec({ name: "so", namespace: "ns", scalerMetadata: { httpScaledObject: "web" } }),
    "NOT_FOUND",
    /an InterceptorRoute ns\/web exists: .* set scalerMetadata\.interceptorRoute instead/,
  );
  await rejectsWith(
    c.getMetricSpec(ref("ns", "broken")),
    "FAILED_PRECONDITION",
    /InterceptorRoute ns\/broken is invalid: .*at least one of 'concurrency' or 'requestRate'.*; fix its spec/,
  );
  await rejectsWith(
    c.isActive({
      name: "so",
      namespace: "ns",
      scalerMetadata: { interceptorRoute: "web", httpScaledObject: "web" },
    }),
    "INVALID_ARGUMENT",
    /has both interceptorRoute and httpScaledObject: set only one/,
  );
  await rejectsWith(
    c.getMetricSpec({ name: "so", namespace: "ns", scalerMetadata: { interceptorRoute: "" } }),
    "INVALID_ARGUMENT",
    /scalerMetadata\.interceptorRoute of ScaledObject ns\/so is empty: set it to the name of the InterceptorRoute/,
  );
  await rejectsWith(
    c.getMetrics(ref("ns", "web"), "http_web_rate"),
    "NOT_FOUND",
    /InterceptorRoute ns\/web has no metric "http_web_rate"; its metrics are http_web_concurrency/,
  );
  await rejectsWith(
    (async () => {
      for await (const _ of c.streamIsActive(ref("ns", "nope"))) { /* none expected */ }
    })(),
    "NOT_FOUND",
    /InterceptorRoute ns\/nope not found/,
  );
  // The interceptor's own ScaledObject is unaffected, and so is the server.
  assert.equal(
    (await c.getMetricSpec({
      name: "keda-add-ons-http-interceptor",
      namespace: "keda",
      scalerMetadata: { interceptorTargetPendingRequests: "200" },
    }))[0]?.targetSize,
    200,
  );
  assert.equal(await c.healthCheck(), "SERVING");
  const metrics = await (await fetch(`${scaler.httpUrl}/metrics`)).text();
  assert.match(metrics, /keda_http_scaler_interceptorroutes\{valid="true"\} 1/);
  assert.match(metrics, /keda_http_scaler_interceptorroutes\{valid="false"\} 1/);
  assert.match(metrics, /keda_http_scaler_httpscaledobjects\{valid="true"\} 1/);
  assert.match(
    metrics,
    /keda_http_scaler_grpc_requests_total\{method="GetMetricSpec",code="FAILED_PRECONDITION"\} 1/,
  );
});
