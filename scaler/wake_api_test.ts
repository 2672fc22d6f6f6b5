/**
 * The wake API end to end: POST/DELETE/GET /wake over real sockets on the
 * scaler's HTTP server, and a real gRPC client seeing StreamIsActive flip
 * the moment a wake is recorded, ended or runs out (tick and heartbeat at
 * 60 s, so only the push path can answer in time).
 */
import assert from "node:assert/strict";
import { scalerHttpHandler } from "./http_server.ts";
import { Readiness } from "./readiness.ts";
import {
  httpsoObject,
  interceptorRouteObject,
  startTestScaler,
  type TestScaler,
  waitFor,
} from "./testing/harness.ts";
import { QueueServer } from "./testing/queue_server.ts";

const routeRef = (namespace: string, name: string) => ({
  name: `${name}-so`,
  namespace,
  scalerMetadata: { interceptorRoute: name },
});
const httpsoRef = (namespace: string, name: string) => ({
  name,
  namespace,
  scalerMetadata: { httpScaledObject: name },
});

interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { text };
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

const errorOf = (a: Answer) => String(a.body.error ?? "");

async function quietScaler(
  extra: Parameters<typeof startTestScaler>[0] = {},
): Promise<TestScaler> {
  return await startTestScaler({
    routes: [interceptorRouteObject("apps", "shop"), interceptorRouteObject("apps", "both")],
    httpsos: [httpsoObject("apps", "legacy"), httpsoObject("apps", "both")],
    env: { KEDA_HTTP_QUEUE_TICK_DURATION: "60s", KEDA_HTTP_SCALER_STREAM_INTERVAL_MS: "60000" },
    ...extra,
  });
}

Deno.test("POST /wake: JSON body or query, 201 then 200, listed by GET /wake and in /queue", async () => {
  await using a = new QueueServer();
  a.setConcurrency("apps/legacy", 2);
  await using scaler = await quietScaler({ interceptors: [a] });
  const base = scaler.httpUrl;
  assert.equal(await scaler.client.isActive(routeRef("apps", "shop")), false);

  const before = Date.now();
  const woken = await call(base, "POST", "/wake", {
    namespace: "apps",
    name: "shop",
    kind: "InterceptorRoute",
    for: "10m",
  });
  assert.equal(woken.status, 201, JSON.stringify(woken.body));
  assert.equal(woken.headers.get("content-type"), "application/json");
  assert.equal(woken.body.created, true);
  assert.equal(woken.body.kind, "InterceptorRoute");
  assert.equal(woken.body.route, "apps/shop");
  assert.equal(woken.body.remaining, "10m0s");
  const until = Date.parse(String(woken.body.until));
  assert.match(String(woken.body.until), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, "RFC 3339");
  assert.ok(until >= before + 600_000 && until <= Date.now() + 600_000);

  // Active while woken; the metric values do not change.
  assert.equal(await scaler.client.isActive(routeRef("apps", "shop")), true);
  assert.deepEqual(
    (await scaler.client.getMetrics(routeRef("apps", "shop"), "")).map((v) => v.metricValue),
    [0],
  );

  // Query parameters; the kind in any case; re-waking answers 200 with the new end.
  const viaQuery = await call(
    base,
    "POST",
    "/wake?namespace=apps&name=legacy&kind=httpscaledobject&for=90s",
  );
  assert.equal(viaQuery.status, 201, JSON.stringify(viaQuery.body));
  assert.equal(viaQuery.body.kind, "HTTPScaledObject");
  const renewed = await call(base, "POST", "/wake?namespace=apps&name=legacy", {
    kind: "HTTPScaledObject",
    for: "2m",
  });
  assert.equal(renewed.status, 200, JSON.stringify(renewed.body));
  assert.equal(renewed.body.created, false);
  assert.equal(renewed.body.remaining, "2m0s");
  assert.equal(await scaler.client.isActive(httpsoRef("apps", "legacy")), true);

  const list = await call(base, "GET", "/wake");
  assert.equal(list.status, 200);
  assert.deepEqual(
    (list.body.wakes as Array<{ route: string; kind: string }>).map((w) => `${w.kind} ${w.route}`),
    ["HTTPScaledObject apps/legacy", "InterceptorRoute apps/shop"],
  );
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^keda_http_scaler_wakes\{kind="HTTPScaledObject"\} 1$/m);
  assert.match(metrics, /^keda_http_scaler_wakes\{kind="InterceptorRoute"\} 1$/m);

  // /queue: the woken route without traffic appears, with zero counts; the
  // route with traffic keeps its fields and gains WakeUntil.
  const queue = await call(base, "GET", "/queue");
  assert.deepEqual(queue.body["apps/shop"], {
    Concurrency: 0,
    RequestCount: 0,
    RPS: 0,
    WakeUntil: woken.body.until,
  });
  assert.deepEqual(queue.body["apps/legacy"], {
    Concurrency: 2,
    RequestCount: 0,
    RPS: 0,
    WakeUntil: renewed.body.until,
  });
  assert.deepEqual(Object.keys(queue.body), ["apps/legacy", "apps/shop"], "sorted");
  const pinged = await call(base, "GET", "/queue_ping");
  assert.equal(
    pinged.body["apps/shop"] && (pinged.body["apps/shop"] as { WakeUntil: string }).WakeUntil,
    woken.body.until,
  );

  // DELETE ends it (query or body); a second DELETE finds none.
  const ended = await call(base, "DELETE", "/wake?namespace=apps&name=shop&kind=InterceptorRoute");
  assert.equal(ended.status, 200, JSON.stringify(ended.body));
  assert.equal(ended.body.ended, true);
  assert.equal(await scaler.client.isActive(routeRef("apps", "shop")), false);
  const again = await call(base, "DELETE", "/wake", {
    namespace: "apps",
    name: "shop",
    kind: "InterceptorRoute",
  });
  assert.equal(again.status, 404);
  assert.match(
    errorOf(again),
    /no wake in force for InterceptorRoute apps\/shop; GET \/wake lists them/,
  );
  assert.equal((await call(base, "GET", "/queue")).body["apps/shop"], undefined);
  // Without a wake and without traffic, /queue is as before: no WakeUntil anywhere.
  await call(base, "DELETE", "/wake?namespace=apps&name=legacy&kind=HTTPScaledObject");
  assert.deepEqual((await call(base, "GET", "/queue")).body, {
    "apps/legacy": { Concurrency: 2, RequestCount: 0, RPS: 0 },
  });
});

Deno.test("POST /wake: bad input is 400 saying what to fix; unknown objects 404", async () => {
  await using scaler = await quietScaler();
  const base = scaler.httpUrl;
  const post = (body: unknown, path = "/wake") => call(base, "POST", path, body);
  const ok = { namespace: "apps", name: "shop", kind: "InterceptorRoute", for: "10m" };
  const cases: Array<[unknown, RegExp]> = [
    [
      { ...ok, kind: "Deployment" },
      /"kind": "Deployment" is not a kind that can be woken: use InterceptorRoute or HTTPScaledObject/,
    ],
    [
      { ...ok, name: undefined },
      /missing "name": send "namespace", "name", "kind", "for" in a JSON body or as query parameters/,
    ],
    [{}, /missing "namespace", "name", "kind", "for"/],
    [
      { ...ok, for: "ten minutes" },
      /"for": "ten minutes" is not a duration: use a number with a unit/,
    ],
    [{ ...ok, for: "25h" }, /"for": "25h" is out of range: a wake lasts from 1s to 24h/],
    [{ ...ok, for: "500ms" }, /out of range: a wake lasts from 1s to 24h/],
    [{ ...ok, for: 600 }, /"for" must be a string, a duration such as "10m", not 600/],
    [
      { ...ok, duration: "10m" },
      /unknown field "duration" in the body: the fields are namespace, name, kind, for/,
    ],
    [{ ...ok, namespace: "Apps_1" }, /"namespace": "Apps_1" is not a namespace name/],
    ["{not json", /the body is not JSON .*: send a JSON object, e\.g\. \{"namespace": "apps"/],
    [["apps", "shop"], /the body must be a JSON object/],
  ];
  for (const [body, message] of cases) {
    const a = await post(body);
    assert.equal(a.status, 400, `${JSON.stringify(body)} → ${a.status} ${JSON.stringify(a.body)}`);
    assert.match(errorOf(a), message);
  }
  // Every problem at once.
  const many = await post({ namespace: "apps", kind: "Pod", for: "1y" });
  assert.equal(many.status, 400);
  assert.match(errorOf(many), /missing "name"/);
  assert.match(errorOf(many), /"kind": "Pod"/);
  assert.match(errorOf(many), /"for": "1y" is not a duration/);
  // The same field in the query and the body, with different values.
  const twice = await post(ok, "/wake?name=other");
  assert.equal(twice.status, 400);
  assert.match(errorOf(twice), /"name" is given twice with different values: "other" and "shop"/);
  // DELETE takes no "for".
  const del = await call(
    base,
    "DELETE",
    "/wake?namespace=apps&name=shop&kind=InterceptorRoute&for=1m",
  );
  assert.equal(del.status, 400);
  assert.match(
    errorOf(del),
    /unknown field "for" in the query \(DELETE ends the wake now and takes no "for"\)/,
  );

  // The indexes know these do not exist.
  const missing = await post({ ...ok, name: "nope" });
  assert.equal(missing.status, 404);
  assert.match(
    errorOf(missing),
    /InterceptorRoute apps\/nope not found: check the namespace and name/,
  );
  const otherKind = await post({ ...ok, name: "legacy" });
  assert.equal(otherKind.status, 404);
  assert.match(
    errorOf(otherKind),
    /an HTTPScaledObject apps\/legacy exists: to wake the ScaledObject that names it, send kind=HTTPScaledObject/,
  );
  // A name both kinds use wakes the kind asked for only.
  assert.equal((await post({ ...ok, name: "both", kind: "HTTPScaledObject" })).status, 201);
  assert.equal(await scaler.client.isActive(httpsoRef("apps", "both")), true);
  assert.equal(await scaler.client.isActive(routeRef("apps", "both")), false);

  // Other methods.
  const put = await call(base, "PUT", "/wake", ok);
  assert.equal(put.status, 405);
  assert.equal(put.headers.get("allow"), "GET, HEAD, POST, DELETE");
  // Nothing was woken by the bad calls.
  assert.deepEqual(
    ((await call(base, "GET", "/wake")).body.wakes as Array<{ route: string }>).map((w) => w.route),
    ["apps/both"],
  );
  // Other endpoints still refuse non-GET methods, and the 404 lists /wake.
  assert.equal((await call(base, "POST", "/queue")).status, 405);
  assert.match(String((await call(base, "GET", "/nope")).body.text), /\/wake/);
});

Deno.test("POST /wake before the objects are listed: taken on trust (no 404)", async () => {
  await using scaler = await quietScaler();
  // The same parts, but a readiness that has not started: the indexes know nothing yet.
  const handler = scalerHttpHandler({
    ...scaler.parts,
    log: scaler.log,
    readiness: new Readiness(["InterceptorRoutes listed"]),
  });
  const res = await handler(
    new Request("http://scaler/wake", {
      method: "POST",
      body: JSON.stringify({
        namespace: "apps",
        name: "later",
        kind: "InterceptorRoute",
        for: "1m",
      }),
    }),
  );
  assert.equal(res.status, 201, await res.clone().text());
  await res.body?.cancel();
  assert.equal(scaler.parts.grpc.answers.wakes.isAwake("InterceptorRoute", "apps/later"), true);
});

Deno.test("KEDA_HTTP_SCALER_WAKE_TOKEN: POST and DELETE need the bearer token, GET does not", async () => {
  await using scaler = await quietScaler();
  const token = "s3cret-t0ken";
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    scalerHttpHandler({ ...scaler.parts, log: scaler.log, wakeToken: token }),
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  const body = { namespace: "apps", name: "shop", kind: "InterceptorRoute", for: "1m" };

  const none = await call(base, "POST", "/wake", body);
  assert.equal(none.status, 401);
  assert.match(
    errorOf(none),
    /POST \/wake needs the wake token: send the header "Authorization: Bearer <token>" with the value of the scaler's KEDA_HTTP_SCALER_WAKE_TOKEN/,
  );
  assert.equal(none.headers.get("www-authenticate"), `Bearer realm="keda-http-scaler"`);
  const wrong = await call(base, "POST", "/wake", body, { authorization: "Bearer nope" });
  assert.equal(wrong.status, 401);
  assert.match(errorOf(wrong), /check the token/);
  assert.doesNotMatch(errorOf(wrong), new RegExp(token), "the token is never echoed");
  assert.match(wrong.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
  const basic = await call(base, "POST", "/wake", body, { authorization: `Basic ${token}` });
  assert.equal(basic.status, 401);
  const longer = await call(base, "POST", "/wake", body, { authorization: `Bearer ${token}x` });
  assert.equal(longer.status, 401);
  assert.equal(scaler.parts.grpc.answers.wakes.size, 0, "nothing woken without the token");

  const right = await call(base, "POST", "/wake", body, { authorization: `Bearer ${token}` });
  assert.equal(right.status, 201, JSON.stringify(right.body));
  assert.equal((await call(base, "GET", "/wake")).status, 200, "GET /wake stays open");
  const delNone = await call(
    base,
    "DELETE",
    "/wake?namespace=apps&name=shop&kind=InterceptorRoute",
  );
  assert.equal(delNone.status, 401);
  assert.match(errorOf(delNone), /DELETE \/wake needs the wake token/);
  const del = await call(
    base,
    "DELETE",
    "/wake?namespace=apps&name=shop&kind=InterceptorRoute",
    undefined,
    { authorization: `bearer ${token}` },
  );
  assert.equal(del.status, 200);
});

Deno.test("StreamIsActive: true at once after POST /wake, false at once after DELETE and after expiry", async () => {
  await using a = new QueueServer();
  a.addRoute("apps/shop");
  await using scaler = await quietScaler({ interceptors: [a] });
  await waitFor(
    "the watch to be open",
    () => scaler.parts.aggregator.podStatuses().every((p) => p.health === "ok") ? true : undefined,
  );
  const base = scaler.httpUrl;
  const controller = new AbortController();
  const stream = scaler.client.streamIsActive(routeRef("apps", "shop"), {
    signal: controller.signal,
  });
  // The ScaledObject naming the HTTPScaledObject apps/both: a wake of the
  // InterceptorRoute apps/both (same queue key) is not for it.
  const otherController = new AbortController();
  const other = scaler.client.streamIsActive(httpsoRef("apps", "both"), {
    signal: otherController.signal,
  });
  const wake = (forText: string) =>
    call(base, "POST", "/wake", {
      namespace: "apps",
      name: "shop",
      kind: "InterceptorRoute",
      for: forText,
    });
  try {
    assert.equal((await stream.next()).value, false, "the current state comes first");
    assert.equal((await other.next()).value, false);
    const bothWake = (kind: string) =>
      call(base, "POST", "/wake", { namespace: "apps", name: "both", kind, for: "10m" });
    const otherNext = other.next();
    assert.equal((await bothWake("InterceptorRoute")).status, 201);
    const early = await Promise.race([
      otherNext.then(() => "pushed"),
      new Promise((r) => setTimeout(() => r("nothing"), 300)),
    ]);
    assert.equal(early, "nothing", "a wake of the other kind pushes nothing");
    assert.equal((await bothWake("HTTPScaledObject")).status, 201);
    assert.equal((await otherNext).value, true);

    // POST → true, pushed (tick and heartbeat are 60 s).
    let t0 = performance.now();
    assert.equal((await wake("10m")).status, 201);
    assert.equal((await stream.next()).value, true);
    const wakeMs = performance.now() - t0;
    assert.ok(wakeMs < 2_000, `true arrived ${wakeMs} ms after the POST`);
    assert.equal(scaler.parts.metrics.streamActivations.get(), 2, "apps/both, then apps/shop");

    // DELETE → false at once.
    t0 = performance.now();
    const del = await call(base, "DELETE", "/wake?namespace=apps&name=shop&kind=InterceptorRoute");
    assert.equal(del.status, 200);
    assert.equal((await stream.next()).value, false);
    assert.ok(performance.now() - t0 < 2_000);

    // A 1 s wake: true, then false when it runs out.
    t0 = performance.now();
    assert.equal((await wake("1s")).status, 201);
    assert.equal((await stream.next()).value, true);
    assert.equal((await stream.next()).value, false);
    const lastedMs = performance.now() - t0;
    assert.ok(lastedMs >= 900 && lastedMs < 3_000, `the 1 s wake lasted ${lastedMs} ms`);
    assert.equal(await scaler.client.isActive(routeRef("apps", "shop")), false);

    // Traffic keeps the route active when its wake ends: no false until the request goes.
    assert.equal((await wake("1s")).status, 201);
    assert.equal((await stream.next()).value, true);
    const release = a.hold("apps/shop");
    await waitFor(
      "the held request to be counted",
      () => scaler.parts.aggregator.concurrency("apps/shop") === 1 ? true : undefined,
    );
    await waitFor(
      "the wake to run out",
      () =>
        scaler.parts.grpc.answers.wakes.isAwake("InterceptorRoute", "apps/shop") ? undefined : true,
    );
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await scaler.client.isActive(routeRef("apps", "shop")), true);
    const next = stream.next();
    release();
    assert.equal((await next).value, false, "false once the last request is gone");
  } finally {
    controller.abort();
    otherController.abort();
    await stream.return(undefined);
    await other.return(undefined);
  }
});
