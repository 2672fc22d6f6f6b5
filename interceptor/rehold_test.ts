/**
 * Re-holds over real loopback sockets: an early endpoint (a starting pod that
 * passed our own readiness check) refuses the connection, so the request goes
 * back on hold (upstream_leg.ts connect -> proxy.ts #rehold). The request
 * keeps its body (HTTP/1.1 Content-Length, chunked, HTTP/2), fails over to
 * the route's fallback Service at the timeout, does not count against the
 * dropped pod's per-pod cap while it waits, and says it was a cold start.
 */
import assert from "node:assert/strict";
import { nodeRequests } from "./h2_testing.ts";
import {
  type Harness,
  RawClient,
  type RawResponse,
  startApp,
  startHarness,
  until,
} from "./proxy_testing.ts";

const KEY = "default/app";
const appRoute = (spec: Record<string, unknown> = {}) => ({
  name: "app",
  spec: { hosts: ["app.test"], ...spec },
});

/** Pod slots of this file (the harness hands out small ones from 1). */
const SLOT_EARLY = 980;
const SLOT_READY = 981;

/** The route's target gets one endpoint on `port`, early (passed our probe) unless told. */
function setEarly(h: Harness, port: number, slot: number, early = true): void {
  h.proxy.setTargets([{
    key: h.routes.get(KEY)!.targetKey,
    h2c: false,
    tls: false,
    endpoints: [{ ip: "127.0.0.1", port, slot, ...(early ? { early: true } : {}) }],
  }]);
}

/** A loopback port nothing listens on (listened on, then closed). */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const routeSlot = (h: Harness) => h.routes.get(KEY)!.slot;
const held = (h: Harness) => h.counters.held(routeSlot(h));

/** Every counter the request touched is back to 0. */
async function settled(h: Harness, podSlots: number[]): Promise<void> {
  const slot = routeSlot(h);
  const now = () => ({
    concurrency: h.counters.concurrency(slot),
    held: h.counters.held(slot),
    pods: podSlots.map((s) => h.counters.podLoad(s)),
  });
  const zero = { concurrency: 0, held: 0, pods: podSlots.map(() => 0) };
  await until(() => JSON.stringify(now()) === JSON.stringify(zero), "counters back to 0", 3_000)
    .catch(() => {});
  assert.deepEqual(now(), zero);
}

/** `p`, or a rejection after `ms` (a hung request fails the test instead of stalling it). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An app recording the bodies it received. */
function bodyApp(bodies: string[]) {
  return startApp(async (req) => {
    bodies.push(await req.text());
    return new Response("got it");
  });
}

/**
 * HTTP/1.1: head (and `before`) sent while an early endpoint refuses; `after`
 * sent during the re-hold; then a ready endpoint comes.
 */
async function reheldUpload(
  head: string,
  before: string,
  after: string,
): Promise<{ r: RawResponse; bodies: string[] }> {
  const h = startHarness();
  const bodies: string[] = [];
  const app = bodyApp(bodies);
  try {
    h.setRoutes([appRoute()]);
    setEarly(h, closedPort(), SLOT_EARLY);
    using c = await RawClient.connect(h.port);
    await c.send(head + before);
    await until(() => held(h) === 1, "the request to be held again");
    await c.send(after);
    // Let the proxy read it into its buffer while the request is held.
    await sleep(200);
    setEarly(h, app.port, SLOT_READY, false);
    const r = await within(c.response(), 5_000, "the re-held upload");
    await settled(h, [SLOT_EARLY, SLOT_READY]);
    return { r, bodies };
  } finally {
    await app.shutdown();
    await h.close();
  }
}

Deno.test("rehold: a Content-Length body sent during the re-hold reaches the app", async () => {
  const { r, bodies } = await reheldUpload(
    "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 6\r\n\r\n",
    "",
    "abcdef",
  );
  assert.equal(r.status, 200, r.body);
  assert.equal(r.body, "got it");
  assert.deepEqual(bodies, ["abcdef"]);
});

Deno.test("rehold: a Content-Length body split around the re-hold reaches the app whole", async () => {
  const { r, bodies } = await reheldUpload(
    "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 6\r\n\r\n",
    "abc",
    "def",
  );
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(bodies, ["abcdef"]);
});

Deno.test("rehold: a chunked body split around the re-hold reaches the app whole", async () => {
  const { r, bodies } = await reheldUpload(
    "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n",
    "3\r\nabc\r\n",
    "3\r\ndef\r\n0\r\n\r\n",
  );
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(bodies, ["abcdef"]);
});

Deno.test("rehold: an HTTP/2 POST whose body arrives during the re-hold reaches the app whole", async () => {
  await using h = startHarness();
  const bodies: string[] = [];
  await using app = bodyApp(bodies);
  h.setRoutes([appRoute()]);
  setEarly(h, closedPort(), SLOT_EARLY);
  const results = nodeRequests(`http://127.0.0.1:${h.port}`, [{
    headers: { ":method": "POST", ":path": "/up", ":authority": "app.test" },
    body: ["abc", "def"],
    gapMs: 300,
  }]);
  await until(() => held(h) === 1, "the stream to be held again");
  // The second part and the end of the stream arrive while held.
  await sleep(700);
  setEarly(h, app.port, SLOT_READY, false);
  const [r] = await within(results, 8_000, "the re-held h2 upload");
  assert.equal(r!.status, 200, r!.body + (r!.error ?? ""));
  assert.equal(r!.body, "got it");
  assert.deepEqual(bodies, ["abcdef"]);
  await settled(h, [SLOT_EARLY, SLOT_READY]);
});

Deno.test("rehold: at the timeout a re-held request fails over to the fallback Service", async () => {
  await using h = startHarness();
  await using fb = startApp(() => new Response("fallback"));
  h.setRoutes([appRoute({
    coldStartTimeoutFailoverRef: { service: "fb", port: 80, timeoutSeconds: 1 },
  })]);
  h.setEndpoints(KEY, [fb.port], { fallback: true });
  setEarly(h, closedPort(), 904);
  using c = await RawClient.connect(h.port);
  const t0 = Date.now();
  await c.send("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
  const r = await within(c.response(), 5_000, "the re-held request");
  assert.equal(r.status, 200, r.body);
  assert.equal(r.body, "fallback");
  assert.ok(Date.now() - t0 >= 950, `answered after ${Date.now() - t0} ms`);
  await settled(h, [904]);
});

Deno.test("rehold: with podConcurrencyLimit 1 the dropped pod coming back ready serves the re-held request", async () => {
  await using h = startHarness({ readinessTimeoutMs: 2_000, podConcurrencyLimit: 1 });
  h.setRoutes([appRoute()]);
  const port = closedPort();
  setEarly(h, port, 905);
  using c = await RawClient.connect(h.port);
  await c.send("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
  await until(() => held(h) === 1, "the request to be held again");
  const loadWhileHeld = h.counters.podLoad(905);
  await using app = startApp(() => new Response("back"), port);
  setEarly(h, app.port, 905, false);
  const r = await within(c.response(), 5_000, "the re-held request");
  assert.equal(r.status, 200, r.body);
  assert.equal(r.body, "back");
  assert.equal(loadWhileHeld, 0, "a re-held request is no load on the dropped pod");
  await settled(h, [905]);
});

Deno.test("rehold: a re-held request reports X-KEDA-HTTP-Cold-Start: true", async () => {
  // The harness config has coldStartHeader: true.
  await using h = startHarness();
  await using app = startApp(() => new Response("warm now"));
  h.setRoutes([appRoute()]);
  setEarly(h, closedPort(), 906);
  using c = await RawClient.connect(h.port);
  await c.send("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
  await until(() => held(h) === 1, "the request to be held again");
  setEarly(h, app.port, 907, false);
  const r = await within(c.response(), 5_000, "the re-held request");
  assert.equal(r.status, 200, r.body);
  assert.equal(r.body, "warm now");
  assert.equal(r.headers.get("x-keda-http-cold-start"), "true");
  // A request served by a ready endpoint straight away is no cold start.
  await c.send("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
  const warm = await within(c.response(), 5_000, "the next request");
  assert.equal(warm.headers.get("x-keda-http-cold-start"), "false");
  await settled(h, [906, 907]);
});

Deno.test({
  name: "re-hold: the connect window starts again after it, as after a first hold",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using h = startHarness({ readinessTimeoutMs: 1_000 });
  h.setRoutes([appRoute()]);
  setEarly(h, closedPort(), SLOT_EARLY);
  using c = await RawClient.connect(h.port);
  await c.send("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
  await until(() => held(h) === 1, "the request re-held");
  // The pod turns ready near the hold deadline; its port opens a little later.
  await new Promise((r) => setTimeout(r, 800));
  const port = closedPort();
  setEarly(h, port, SLOT_READY, false);
  let app: Deno.HttpServer | undefined;
  const late = setTimeout(() => {
    app = startApp(() => new Response("late but fine"), port);
  }, 300);
  try {
    const res = await within(c.response(), 5_000, "the re-held request");
    assert.equal(res.status, 200, res.body);
    assert.equal(res.body, "late but fine");
  } finally {
    clearTimeout(late);
    await app?.shutdown();
  }
  await settled(h, [SLOT_EARLY, SLOT_READY]);
});
