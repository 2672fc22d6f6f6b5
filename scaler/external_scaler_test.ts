/**
 * The gRPC contract, end to end: a real gRPC client (built from proto/)
 * against the scaler's real parts, fed by real HTTP servers speaking the
 * interceptor admin wire format (/queue and /queue/watch).
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { GrpcCallError } from "./external_scaler.ts";
import { httpsoObject, startTestScaler, waitFor } from "./testing/harness.ts";
import { QueueServer } from "./testing/queue_server.ts";

const ref = (namespace: string, name: string) => ({
  name,
  namespace,
  scalerMetadata: { httpScaledObject: name },
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

Deno.test("GetMetricSpec: escaped metric name and target for concurrency and requestRate routes", async () => {
  await using scaler = await startTestScaler({
    httpsos: [
      httpsoObject("team-a", "web", { scalingMetric: { concurrency: { targetValue: 7 } } }),
      httpsoObject("team-a", "api", {
        scalingMetric: { requestRate: { targetValue: 25, window: "2s", granularity: "100ms" } },
      }),
      httpsoObject("team-b", "legacy", { targetPendingRequests: 42 }),
      httpsoObject("team-b", "plain"),
    ],
  });
  const c = scaler.client;
  assert.deepEqual(await c.getMetricSpec(ref("team-a", "web")), [
    { metricName: "http-team-a_002Fweb", targetSize: 7, targetSizeFloat: 7 },
  ]);
  assert.deepEqual(await c.getMetricSpec(ref("team-a", "api")), [
    { metricName: "http-team-a_002Fapi", targetSize: 25, targetSizeFloat: 25 },
  ]);
  // The deprecated targetPendingRequests applies when scalingMetric is unset; default 100.
  assert.equal((await c.getMetricSpec(ref("team-b", "legacy")))[0]?.targetSize, 42);
  assert.equal((await c.getMetricSpec(ref("team-b", "plain")))[0]?.targetSizeFloat, 100);
});

Deno.test("GetMetrics and IsActive: concurrency summed exactly over three interceptors", async () => {
  await using a = new QueueServer();
  await using b = new QueueServer();
  await using c = new QueueServer();
  a.setConcurrency("ns/app", 3);
  b.setConcurrency("ns/app", 4);
  c.setConcurrency("ns/app", 5);
  c.setConcurrency("ns/other", 2);
  await using scaler = await startTestScaler({
    httpsos: [httpsoObject("ns", "app"), httpsoObject("ns", "idle")],
    interceptors: [a, b, c],
  });
  const values = await scaler.client.getMetrics(ref("ns", "app"), "http-ns_002Fapp");
  assert.deepEqual(values, [{
    metricName: "http-ns_002Fapp",
    metricValue: 12,
    metricValueFloat: 12,
  }]);
  assert.equal(await scaler.client.isActive(ref("ns", "app")), true);
  // Known route with nothing in flight anywhere.
  assert.deepEqual(await scaler.client.getMetrics(ref("ns", "idle"), "x"), [
    { metricName: "http-ns_002Fidle", metricValue: 0, metricValueFloat: 0 },
  ]);
  assert.equal(await scaler.client.isActive(ref("ns", "idle")), false);

  // Changes show up within a few ticks.
  b.setConcurrency("ns/app", 0);
  await waitFor("sum to drop to 8", async () => {
    const [v] = await scaler.client.getMetrics(ref("ns", "app"), "");
    return v?.metricValue === 8 ? true : undefined;
  });
});

Deno.test("GetMetrics: requestRate is the ceil of the summed rate, with sub-second granularity", async () => {
  await using a = new QueueServer();
  await using b = new QueueServer();
  a.addRoute("ns/api", 1000);
  b.addRoute("ns/api", 5000);
  await using scaler = await startTestScaler({
    httpsos: [httpsoObject("ns", "api", {
      scalingMetric: { requestRate: { targetValue: 10, window: "2s", granularity: "100ms" } },
    })],
    interceptors: [a, b],
  });
  // Pre-existing counts are a baseline, not a burst.
  assert.equal((await scaler.client.getMetrics(ref("ns", "api"), ""))[0]?.metricValue, 0);
  a.setRate("ns/api", 20);
  b.setRate("ns/api", 13.5);
  const value = await waitFor("rate to settle near 33.5 req/s", async () => {
    const [v] = await scaler.client.getMetrics(ref("ns", "api"), "");
    return v && v.metricValue >= 32 && v.metricValue <= 36 ? v : undefined;
  });
  assert.equal(value.metricValue, value.metricValueFloat);
  assert.ok(Number.isInteger(value.metricValue));
  assert.equal(await scaler.client.isActive(ref("ns", "api")), true);
  // Traffic stops: after the 2 s window the rate, and activity, are back to 0.
  a.setRate("ns/api", 0);
  b.setRate("ns/api", 0);
  await waitFor("rate to return to 0", async () => {
    const [v] = await scaler.client.getMetrics(ref("ns", "api"), "");
    return v?.metricValue === 0 ? true : undefined;
  });
  assert.equal(await scaler.client.isActive(ref("ns", "api")), false);
});

Deno.test("interceptorTargetPendingRequests: the interceptor's own ScaledObject", async () => {
  await using a = new QueueServer();
  await using b = new QueueServer();
  a.setConcurrency("ns/x", 2);
  a.setConcurrency("ns/y", 3);
  b.setConcurrency("other/z", 4);
  await using scaler = await startTestScaler({ interceptors: [a, b] });
  const interceptorRef = {
    name: "keda-add-ons-http-interceptor",
    namespace: "keda",
    scalerMetadata: { interceptorTargetPendingRequests: "200" },
  };
  assert.deepEqual(await scaler.client.getMetricSpec(interceptorRef), [
    {
      metricName: "http-keda_002Fkeda-add-ons-http-interceptor",
      targetSize: 200,
      targetSizeFloat: 200,
    },
  ]);
  assert.equal((await scaler.client.getMetrics(interceptorRef, ""))[0]?.metricValue, 9);
  assert.equal(await scaler.client.isActive(interceptorRef), true);
});

Deno.test("errors: unknown HTTPScaledObject, missing or bad metadata, invalid spec", async () => {
  await using scaler = await startTestScaler({
    httpsos: [
      httpsoObject("ns", "broken", {
        scalingMetric: { requestRate: { window: "1s", granularity: "0s" } },
      }),
    ],
  });
  const c = scaler.client;
  await rejectsWith(
    c.getMetricSpec(ref("ns", "nope")),
    "NOT_FOUND",
    /HTTPScaledObject ns\/nope not found/,
  );
  await rejectsWith(c.getMetrics(ref("ns", "nope"), ""), "NOT_FOUND", /ns\/nope/);
  await rejectsWith(c.isActive(ref("ns", "nope")), "NOT_FOUND", /ns\/nope/);
  await rejectsWith(
    c.isActive({ name: "so", namespace: "ns", scalerMetadata: {} }),
    "INVALID_ARGUMENT",
    /has no interceptorRoute .*, httpScaledObject .* or interceptorTargetPendingRequests: add interceptorRoute: <name>/,
  );
  await rejectsWith(
    c.getMetricSpec({ name: "so", namespace: "ns", scalerMetadata: { httpScaledObject: " " } }),
    "INVALID_ARGUMENT",
    /scalerMetadata\.httpScaledObject .* is empty/,
  );
  await rejectsWith(
    c.getMetricSpec({
      name: "so",
      namespace: "ns",
      scalerMetadata: { interceptorTargetPendingRequests: "lots" },
    }),
    "INVALID_ARGUMENT",
    /interceptorTargetPendingRequests="lots" is not a whole number/,
  );
  await rejectsWith(
    c.getMetricSpec(ref("ns", "broken")),
    "FAILED_PRECONDITION",
    /HTTPScaledObject ns\/broken is invalid: .*granularity/,
  );
  // StreamIsActive for an unknown route ends with the same status.
  await rejectsWith(
    (async () => {
      for await (const _ of c.streamIsActive(ref("ns", "nope"))) { /* none expected */ }
    })(),
    "NOT_FOUND",
    /ns\/nope/,
  );
  // After all that, the server is still healthy.
  assert.equal(await c.healthCheck(), "SERVING");
  assert.equal(await c.healthCheck("externalscaler.ExternalScaler"), "SERVING");
  await rejectsWith(c.healthCheck("nope"), "NOT_FOUND", /unknown service/);
});

Deno.test("StreamIsActive: true is pushed when a request is held, not on the next tick", async () => {
  await using a = new QueueServer();
  await using b = new QueueServer();
  a.addRoute("ns/app");
  b.addRoute("ns/app");
  // Poll tick and stream heartbeat of a minute: only the push path can be fast.
  await using scaler = await startTestScaler({
    httpsos: [httpsoObject("ns", "app")],
    interceptors: [a, b],
    env: { KEDA_HTTP_QUEUE_TICK_DURATION: "60s", KEDA_HTTP_SCALER_STREAM_INTERVAL_MS: "60000" },
  });
  // Wait for both watches to be open (their snapshots mark the pods as seen).
  await waitFor(
    "watches open",
    () => scaler.parts.aggregator.podStatuses().every((p) => p.health === "ok") ? true : undefined,
  );
  const controller = new AbortController();
  const stream = scaler.client.streamIsActive(ref("ns", "app"), { signal: controller.signal });
  try {
    assert.equal((await stream.next()).value, false, "the current state comes first");
    const heldAt = performance.now();
    const release = b.hold("ns/app");
    const next = await stream.next();
    const latencyMs = performance.now() - heldAt;
    assert.equal(next.value, true);
    // Far below the 60 s tick and heartbeat; the benchmark measures the real figure.
    assert.ok(latencyMs < 5_000, `true arrived after ${latencyMs} ms`);
    // A second held request on another interceptor changes nothing on the stream...
    const release2 = a.hold("ns/app");
    release();
    // ...until the last one is released: false follows at once too.
    release2();
    assert.equal((await stream.next()).value, false);
    assert.equal(scaler.parts.metrics.streamActivations.get(), 1);
  } finally {
    controller.abort();
    await stream.return(undefined);
  }
});

Deno.test("StreamIsActive: heartbeats repeat the current state", async () => {
  await using a = new QueueServer();
  a.setConcurrency("ns/app", 1);
  await using scaler = await startTestScaler({
    httpsos: [httpsoObject("ns", "app")],
    interceptors: [a],
    env: { KEDA_HTTP_SCALER_STREAM_INTERVAL_MS: "50" },
  });
  const controller = new AbortController();
  const seen: boolean[] = [];
  for await (
    const v of scaler.client.streamIsActive(ref("ns", "app"), { signal: controller.signal })
  ) {
    seen.push(v);
    if (seen.length === 4) controller.abort();
  }
  assert.deepEqual(seen, [true, true, true, true]);
  await waitFor(
    "stream closed on the server",
    () => scaler.parts.grpc.openStreams === 0 ? true : undefined,
  );
});

Deno.test("StreamIsActive ends with NOT_FOUND when its HTTPScaledObject is deleted", async () => {
  await using scaler = await startTestScaler({
    httpsos: [httpsoObject("ns", "app")],
    env: { KEDA_HTTP_SCALER_STREAM_INTERVAL_MS: "50" },
  });
  const stream = scaler.client.streamIsActive(ref("ns", "app"));
  assert.equal((await stream.next()).value, false);
  scaler.store.delete("ns/app");
  await rejectsWith(
    (async () => {
      for await (const _ of stream) { /* heartbeats until the deletion is seen */ }
    })(),
    "NOT_FOUND",
    /ns\/app not found/,
  );
});

Deno.test("one interceptor dies: its counts stay for the TTL, then drop out; the scaler stays healthy", async () => {
  await using a = new QueueServer();
  await using b = new QueueServer();
  const c = new QueueServer();
  a.setConcurrency("ns/app", 1);
  b.setConcurrency("ns/app", 2);
  c.setConcurrency("ns/app", 4);
  const logLines: string[] = [];
  await using scaler = await startTestScaler({
    httpsos: [httpsoObject("ns", "app")],
    interceptors: [a, b, c],
    env: { KEDA_HTTP_SCALER_STALE_COUNTS_TTL: "1500ms", KEDA_HTTP_SCALER_FETCH_TIMEOUT: "300ms" },
    logLines,
  });
  const value = async () => (await scaler.client.getMetrics(ref("ns", "app"), ""))[0]?.metricValue;
  assert.equal(await value(), 7);
  await c.close();
  // Stale but kept: the sum does not jump while the pod might come back.
  await waitFor(
    "the dead pod to be marked stale",
    () =>
      scaler.parts.aggregator.podStatuses().some((p) => p.health === "stale") ? true : undefined,
  );
  assert.equal(await value(), 7);
  // After the TTL it drops out.
  await waitFor(
    "the dead pod's counts to drop out",
    async () => (await value()) === 3 ? true : undefined,
  );
  assert.equal(await scaler.client.healthCheck(), "SERVING");
  assert.ok(
    logLines.some((l) => l.includes("does not answer /queue") && l.includes('"level":"warn"')),
    "a warning names the unreachable interceptor",
  );
  const metrics = await (await fetch(`${scaler.httpUrl}/metrics`)).text();
  assert.match(metrics, /keda_http_scaler_interceptor_pods\{health="down"\} 1/);
  assert.match(metrics, /keda_http_scaler_interceptor_up\{pod="interceptor-2"\} 0/);
  assert.match(metrics, /keda_http_scaler_route_concurrency\{route="ns\/app"\} 3/);
  // The pod leaves the endpoints: gone entirely.
  scaler.setInterceptors([a, b]);
  assert.equal(scaler.parts.aggregator.podStatuses().length, 2);
  assert.equal(await value(), 3);
});

Deno.test("HTTP: /queue, /queue_ping, /readyz, /livez, /interceptors", async () => {
  await using a = new QueueServer();
  a.setConcurrency("ns/app", 2);
  await using scaler = await startTestScaler({
    httpsos: [httpsoObject("ns", "app")],
    interceptors: [a],
    env: { KEDA_HTTP_QUEUE_TICK_DURATION: "60s" },
  });
  const get = async (path: string) => {
    const res = await fetch(`${scaler.httpUrl}${path}`);
    return { status: res.status, body: await res.text() };
  };
  assert.deepEqual(JSON.parse((await get("/queue")).body), {
    "ns/app": { Concurrency: 2, RequestCount: 0, RPS: 0 },
  });
  a.setConcurrency("ns/app", 5);
  // The coalesced watch line may already have carried it; /queue_ping certainly does.
  const pinged = JSON.parse((await get("/queue_ping")).body);
  assert.equal(pinged["ns/app"].Concurrency, 5);
  assert.equal((await get("/readyz")).status, 200);
  assert.equal((await get("/livez")).status, 200);
  const pods = JSON.parse((await get("/interceptors")).body);
  assert.equal(pods.length, 1);
  assert.equal(pods[0].health, "ok");
  assert.equal((await get("/nope")).status, 404);
  scaler.parts.readiness.stopping();
  const r = await get("/readyz");
  assert.equal(r.status, 503);
  assert.match(r.body, /shutting down/);
});

interface HealthStub extends grpc.Client {
  Check(
    req: { service: string },
    cb: (err: grpc.ServiceError | null, res: { status: string }) => void,
  ): void;
  Watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
}

/** A plain grpc-js client of grpc.health.v1.Health, as the kubelet's gRPC probe asks. */
function healthClient(address: string) {
  const def = protoLoader.loadSync(
    decodeURIComponent(new URL("../proto/health.proto", import.meta.url).pathname),
    { keepCase: true, enums: String, defaults: true },
  );
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  const client = new pkg.grpc.health.v1.Health(
    address,
    grpc.credentials.createInsecure(),
  ) as unknown as HealthStub;
  const check = (service: string) =>
    new Promise<string>((resolve, reject) =>
      client.Check({ service }, (err, res) => err ? reject(err) : resolve(res.status))
    );
  /** Statuses a Watch stream sent, and a promise of its end. */
  const watch = (service: string) => {
    const seen: string[] = [];
    const call = client.Watch({ service });
    const ended = new Promise<void>((resolve) => {
      call.on("data", (m: { status: string }) => seen.push(m.status));
      call.on("error", () => resolve());
      call.on("end", () => resolve());
    });
    return { seen, ended };
  };
  return { check, watch, close: () => client.close() };
}

Deno.test("gRPC health: liveness and readiness answer as the Go chart's probes ask", async () => {
  const a = new QueueServer();
  a.setConcurrency("ns/app", 1);
  await using scaler = await startTestScaler({
    httpsos: [httpsoObject("ns", "app")],
    interceptors: [a],
    env: { KEDA_HTTP_SCALER_FETCH_TIMEOUT: "300ms" },
  });
  const h = healthClient(scaler.grpcAddress);
  try {
    for (const name of ["liveness", "readiness", "", "externalscaler.ExternalScaler"]) {
      assert.equal(await h.check(name), "SERVING", name);
    }
    await assert.rejects(h.check("nope"), /unknown service "nope".*"liveness", "readiness"/);
    const ready = h.watch("readiness");
    const live = h.watch("liveness");
    await waitFor("Watch to send SERVING", () => ready.seen.length ? true : undefined);
    // The only interceptor stops answering: not ready (its counts are guesses), still alive.
    await a.close();
    await waitFor(
      "readiness NOT_SERVING",
      async () => (await h.check("readiness")) === "NOT_SERVING" ? true : undefined,
    );
    assert.equal(await h.check("liveness"), "SERVING");
    assert.equal(await h.check(""), "NOT_SERVING");
    // /readyz says the same, from the same rule.
    const r = await fetch(`${scaler.httpUrl}/readyz`);
    assert.equal(r.status, 503);
    assert.match(await r.text(), /an interceptor answering/);
    await waitFor(
      "Watch to send NOT_SERVING",
      () => ready.seen.at(-1) === "NOT_SERVING" || undefined,
    );
    // No interceptor left at all (e.g. scaled away): ready again.
    scaler.setInterceptors([]);
    assert.equal(await h.check("readiness"), "SERVING");
    await waitFor(
      "Watch to send SERVING again",
      () => ready.seen.at(-1) === "SERVING" || undefined,
    );
    assert.deepEqual(ready.seen, ["SERVING", "NOT_SERVING", "SERVING"]);
    // Shutdown: both turn NOT_SERVING and the Watch streams end.
    await scaler.parts.grpc.drain(200);
    await Promise.all([ready.ended, live.ended]);
    assert.deepEqual(live.seen, ["SERVING", "NOT_SERVING"]);
    assert.equal(ready.seen.at(-1), "NOT_SERVING");
  } finally {
    h.close();
  }
});

Deno.test("gRPC health: ready with no interceptor yet; shutting down is NOT_SERVING but alive", async () => {
  await using scaler = await startTestScaler({});
  const h = healthClient(scaler.grpcAddress);
  try {
    // No interceptor exists yet: a fresh install must become ready.
    assert.equal(await h.check("readiness"), "SERVING");
    scaler.parts.readiness.stopping();
    assert.equal(await h.check("readiness"), "NOT_SERVING");
    assert.equal(await h.check("liveness"), "SERVING");
  } finally {
    h.close();
  }
});
