/**
 * InterceptorRoute behaviour of the data plane over real loopback sockets:
 * several rules per route, static routes in both modes, the cold-start
 * placeholder, ConfigMap bodies, per-route timeouts and the fallback.
 */
import assert from "node:assert/strict";
import {
  type Harness,
  RawClient,
  startApp,
  startHarness,
  type TestRouteObject,
} from "./proxy_testing.ts";

const KEY = "default/web";

function route(spec: Record<string, unknown>, name = "web", createdAt?: string): TestRouteObject {
  return {
    name,
    kind: "InterceptorRoute",
    spec,
    ...(createdAt ? { createdAt } : {}),
  };
}

function get(path: string, host = "web.test", extra = "", method = "GET"): string {
  return `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;
}

/** Concurrency now, and requests counted since the route's slot was assigned. */
function counts(h: Harness, key = KEY) {
  const slot = h.routes.get(key)!.slot;
  return { concurrency: h.counters.concurrency(slot), requests: h.counters.requests32(slot) };
}

async function ask(h: Harness, text: string) {
  using c = await RawClient.connect(h.port);
  await c.send(text);
  return await c.response({ head: text.startsWith("HEAD ") });
}

Deno.test("route: any of several rules matches; a route without rules gets nothing", async () => {
  await using h = startHarness();
  await using app = startApp((req) => new Response(new URL(req.url).pathname));
  h.setRoutes([
    route({
      rules: [
        { hosts: ["web.test"] },
        { paths: [{ value: "/shop" }], headers: [{ name: "X-Shop" }] },
      ],
    }),
    route({ rules: [] }, "silent"),
  ]);
  h.setEndpoints(KEY, [app.port]);
  assert.equal((await ask(h, get("/a"))).body, "/a");
  assert.equal((await ask(h, get("/shop/cart", "other.test", "X-Shop: 1\r\n"))).body, "/shop/cart");
  // The second rule needs its header too; the first needs its host.
  assert.equal((await ask(h, get("/shop/cart", "other.test"))).status, 404);
  assert.equal((await ask(h, get("/", "silent.test"))).status, 404);
});

Deno.test("route: among equal matches the older route wins, whatever the names", async () => {
  await using h = startHarness();
  await using a = startApp(() => new Response("a"));
  await using z = startApp(() => new Response("z"));
  h.setRoutes([
    route({ rules: [{ hosts: ["tie.test"] }] }, "a", "2026-12-02T10:00:05Z"),
    route({ rules: [{ hosts: ["tie.test"] }] }, "z", "2026-12-02T10:00:00Z"),
  ]);
  h.setEndpoints("default/a", [a.port]);
  h.setEndpoints("default/z", [z.port]);
  assert.equal((await ask(h, get("/", "tie.test"))).body, "z");
});

Deno.test("route: an InterceptorRoute replaces the HTTPScaledObject of the same name", async () => {
  await using h = startHarness();
  await using app = startApp(() => new Response("route"));
  h.setRoutes([
    { name: "web", spec: { hosts: ["old.test"] } },
    route({ rules: [{ hosts: ["new.test"] }] }),
  ]);
  assert.equal(h.routes.get(KEY)!.kind, "InterceptorRoute");
  h.setEndpoints(KEY, [app.port]);
  assert.equal((await ask(h, get("/", "new.test"))).body, "route");
  assert.equal((await ask(h, get("/", "old.test"))).status, 404);
});

Deno.test("static route Always: answered without the app, never counted", async () => {
  await using h = startHarness();
  let calls = 0;
  await using app = startApp(() => {
    calls++;
    return new Response("app");
  });
  h.setRoutes([route({
    rules: [{ hosts: ["web.test"] }],
    staticRoutes: [
      {
        rules: [{ paths: [{ value: "/healthz" }] }],
        responseMode: "Always",
        response: { body: "ok", headers: { "X-Static": "yes", "Cache-Control": "no-store" } },
      },
      // Never reached for /healthz: the first match wins.
      { rules: [{ paths: [{ value: "/" }] }], responseMode: "Always", response: { body: "2" } },
    ],
  })]);
  h.setEndpoints(KEY, [app.port]);
  const before = counts(h);
  using c = await RawClient.connect(h.port);
  for (let i = 0; i < 3; i++) {
    await c.send(get("/healthz"));
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(r.body, "ok");
    assert.equal(r.headers.get("x-static"), "yes");
    assert.equal(r.headers.get("cache-control"), "no-store");
    assert.equal(r.headers.get("content-length"), "2");
  }
  assert.equal(calls, 0);
  assert.deepEqual(counts(h), before);
  assert.deepEqual(h.activity, []);
  // Other paths of the route: the second static route.
  assert.equal((await ask(h, get("/other"))).body, "2");
});

Deno.test("static route WhenUnavailable: static at zero, forwarded but not counted when ready", async () => {
  await using h = startHarness();
  await using app = startApp(() => new Response("app"));
  h.setRoutes([route({
    rules: [{ hosts: ["web.test"] }],
    staticRoutes: [{
      rules: [{ paths: [{ value: "/healthz" }] }],
      response: { statusCode: 200, body: "static" },
    }],
  })]);
  const before = counts(h);
  // No ready endpoint: static, and the app is not woken (nothing counted).
  const cold = await ask(h, get("/healthz"));
  assert.equal(cold.body, "static");
  assert.deepEqual(counts(h), before);
  h.setEndpoints(KEY, [app.port]);
  const warm = await ask(h, get("/healthz"));
  assert.equal(warm.body, "app");
  assert.deepEqual(counts(h), before);
  assert.deepEqual(h.activity, []);
  // A request outside the static route is counted as usual.
  assert.equal((await ask(h, get("/page"))).body, "app");
  assert.equal(counts(h).requests, before.requests + 1);
});

Deno.test("placeholder: answered at once while the app has no ready endpoint, and still counted", async () => {
  await using h = startHarness({ readinessTimeoutMs: 60_000 });
  await using app = startApp(() => new Response("app"));
  h.setRoutes([route({
    rules: [{ hosts: ["web.test"] }],
    coldStart: {
      placeholder: {
        response: {
          body: "<p>waking up</p>",
          headers: { "Content-Type": "text/html", "Retry-After": "2" },
        },
      },
    },
  })]);
  const before = counts(h);
  const r = await ask(h, get("/"));
  assert.equal(r.status, 503, "the placeholder's default status");
  assert.equal(r.body, "<p>waking up</p>");
  assert.equal(r.headers.get("content-type"), "text/html");
  assert.equal(r.headers.get("retry-after"), "2");
  // Counted: the scaler sees the request (RequestCount) and the 0 -> 1 -> 0 pulse.
  const after = counts(h);
  assert.equal(after.requests, before.requests + 1);
  assert.equal(after.concurrency, 0);
  const slot = h.routes.get(KEY)!.slot;
  assert.deepEqual(h.activity, [[slot, true], [slot, false]]);
  h.setEndpoints(KEY, [app.port]);
  assert.equal((await ask(h, get("/"))).body, "app");
});

Deno.test("static bodies from a ConfigMap: key from the path, Content-Type from the key", async () => {
  await using h = startHarness();
  h.setRoutes([route({
    rules: [{ hosts: ["web.test"] }],
    staticRoutes: [
      {
        rules: [{ paths: [{ value: "/named" }] }],
        responseMode: "Always",
        response: { bodyFromConfigMap: { name: "pages", key: "named.json" } },
      },
      {
        rules: [{ paths: [{ value: "/gone" }] }],
        responseMode: "Always",
        response: { bodyFromConfigMap: { name: "absent" } },
      },
      {
        rules: [{ paths: [{ value: "/typed" }] }],
        responseMode: "Always",
        response: {
          bodyFromConfigMap: { name: "pages", key: "index.html" },
          headers: { "Content-Type": "text/plain" },
        },
      },
      {
        rules: [{ paths: [{ value: "/" }] }],
        responseMode: "Always",
        response: { bodyFromConfigMap: { name: "pages" } },
      },
    ],
  })], {
    "default/pages": {
      data: { "index.html": "<h1>home</h1>", "style.css": "h1{}", "named.json": "{}" },
    },
  });
  const home = await ask(h, get("/"));
  assert.equal(home.body, "<h1>home</h1>");
  assert.equal(home.headers.get("content-type"), "text/html; charset=utf-8");
  const css = await ask(h, get("/style.css?v=2"));
  assert.equal(css.body, "h1{}");
  assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
  const named = await ask(h, get("/named"));
  assert.equal(named.body, "{}");
  assert.equal(named.headers.get("content-type"), "application/json");
  assert.equal((await ask(h, get("/typed"))).headers.get("content-type"), "text/plain");
  const missingKey = await ask(h, get("/nope.html"));
  assert.equal(missingKey.status, 500);
  assert.match(missingKey.body, /no key "nope\.html" in ConfigMap default\/pages/);
  const missingMap = await ask(h, get("/gone"));
  assert.equal(missingMap.status, 500);
  assert.match(
    missingMap.body,
    /ConfigMap default\/absent not found.*http\.keda\.sh\/response-body/,
  );
});

Deno.test("static responses: framing is ours (HEAD, 204, a request body closes)", async () => {
  await using h = startHarness();
  h.setRoutes([route({
    rules: [{ hosts: ["web.test"] }],
    staticRoutes: [
      {
        rules: [{ paths: [{ value: "/empty" }] }],
        responseMode: "Always",
        response: { statusCode: 204, body: "ignored" },
      },
      { rules: [{ paths: [{ value: "/" }] }], responseMode: "Always", response: { body: "hello" } },
    ],
  })]);
  const head = await ask(h, get("/", "web.test", "", "HEAD"));
  assert.equal(head.headers.get("content-length"), "5");
  assert.equal(head.body, "");
  using c = await RawClient.connect(h.port);
  await c.send(get("/empty"));
  const empty = await c.response();
  assert.equal(empty.status, 204);
  assert.equal(empty.headers.get("content-length"), undefined);
  // The connection is still in step: the 204 carried no body.
  await c.send(get("/"));
  assert.equal((await c.response()).body, "hello");
  // A request with a body it did not read: answered, then closed.
  await c.send("POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 5\r\n\r\nabcde");
  const posted = await c.response();
  assert.equal(posted.headers.get("connection"), "close");
  assert.equal(await c.closedWithin(2_000), true);
});

Deno.test("timeouts: the route's request timeout ends a hold; 0s leaves the global one off", async () => {
  await using h = startHarness({ readinessTimeoutMs: 0, requestTimeoutMs: 0 });
  h.setRoutes([route({ rules: [{ hosts: ["web.test"] }], timeouts: { request: "300ms" } })]);
  const r = await ask(h, get("/"));
  assert.equal(r.status, 504);
  assert.match(r.body, /did not become ready within 300ms/);
  assert.equal(counts(h).concurrency, 0);
});

Deno.test("timeouts: the route's responseHeader timeout bounds the wait for the app's head", async () => {
  await using h = startHarness();
  await using app = startApp(async () => {
    await new Promise((r) => setTimeout(r, 1_500));
    return new Response("late");
  });
  h.setRoutes([route({ rules: [{ hosts: ["web.test"] }], timeouts: { responseHeader: "200ms" } })]);
  h.setEndpoints(KEY, [app.port]);
  const r = await ask(h, get("/"));
  assert.equal(r.status, 504);
  assert.match(r.body, /sent no response head within 200ms/);
});

Deno.test("fallback: after the route's readiness timeout the fallback Service answers", async () => {
  await using h = startHarness({ readinessTimeoutMs: 0 });
  await using fb = startApp(() => new Response("fallback"));
  h.setRoutes([route({
    rules: [{ hosts: ["web.test"] }],
    timeouts: { readiness: "200ms" },
    coldStart: { fallback: { service: { name: "web-fallback", port: 80 } } },
  })]);
  h.setEndpoints(KEY, [fb.port], { fallback: true });
  const r = await ask(h, get("/"));
  assert.equal(r.body, "fallback");
  assert.equal(r.headers.get("x-keda-http-cold-start"), "true");
});

Deno.test("KEDA_HTTP_LOG_REQUESTS: one access-log line per request", async () => {
  await using h = startHarness({ logRequests: true });
  await using app = startApp(() => new Response("app"));
  h.setRoutes([route({
    rules: [{ hosts: ["web.test"] }],
    staticRoutes: [{
      rules: [{ paths: [{ value: "/s" }] }],
      responseMode: "Always",
      response: { body: "s" },
    }],
  })]);
  h.setEndpoints(KEY, [app.port]);
  await ask(h, get("/page", "web.test", "User-Agent: t/1\r\n"));
  await ask(h, get("/s"));
  const lines = h.logs.map((l) => JSON.parse(l)).filter((l) => l.msg === "request");
  assert.equal(lines.length, 2);
  assert.equal(lines[0].route, KEY);
  assert.equal(lines[0].path, "/page");
  assert.equal(lines[0].status, 200);
  assert.equal(lines[0].method, "GET");
  assert.equal(lines[0].userAgent, "t/1");
  assert.equal(typeof lines[0].ms, "number");
  assert.equal(lines[1].path, "/s");
});
