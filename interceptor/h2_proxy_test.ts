/**
 * HTTP/2 through the data plane, over real loopback sockets: h2c with prior
 * knowledge on the proxy port beside HTTP/1.1, with Node.js (nghttp2) and
 * Deno's fetch (hyper) as clients, and Node's http2 server as an h2c app.
 * Every rule of an HTTP/1.1 request applies per stream: routing, counting,
 * holding (a held stream leaves its connection usable), static answers,
 * metrics.
 */
import assert from "node:assert/strict";
import { nodeRequests, startNodeH2App } from "./h2_testing.ts";
import { RawClient, startApp, startHarness, until } from "./proxy_testing.ts";

const KEY = "default/web";

function h2Fetch(): Deno.HttpClient {
  return Deno.createHttpClient({ http1: false, http2: true, allowHost: true });
}

Deno.test("h2c prior knowledge: a GET and a POST reach an HTTP/1.1 app; HTTP/1.1 still works on the port", async () => {
  await using h = startHarness();
  const seen: Array<
    { method: string; path: string; body: string; xff: string | null; host: string | null }
  > = [];
  await using app = startApp(async (req) => {
    const u = new URL(req.url);
    seen.push({
      method: req.method,
      path: u.pathname + u.search,
      body: await req.text(),
      xff: req.headers.get("x-forwarded-for"),
      host: req.headers.get("host"),
    });
    return new Response(`hello ${u.pathname}`, { headers: { "x-app": "1" } });
  });
  // hyper sends :authority from the URL and the Host given as a field: :authority routes.
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test", "127.0.0.1"] } }]);
  h.setEndpoints(KEY, [app.port]);
  const client = h2Fetch();
  try {
    const r1 = await fetch(`http://127.0.0.1:${h.port}/a?q=1`, {
      client,
      headers: { host: "web.test" },
    });
    assert.equal(r1.status, 200);
    assert.equal(await r1.text(), "hello /a");
    assert.equal(r1.headers.get("x-app"), "1");
    assert.equal(r1.headers.get("x-keda-http-cold-start"), "false");
    const r2 = await fetch(`http://127.0.0.1:${h.port}/post`, {
      client,
      method: "POST",
      headers: { host: "web.test" },
      body: "x".repeat(100_000),
    });
    assert.equal(r2.status, 200);
    await r2.text();
  } finally {
    client.close();
  }
  assert.deepEqual(seen.map((s) => [s.method, s.path, s.body.length, s.host, s.xff]), [
    ["GET", "/a?q=1", 0, `127.0.0.1:${h.port}`, "127.0.0.1"],
    ["POST", "/post", 100_000, `127.0.0.1:${h.port}`, "127.0.0.1"],
  ]);
  // HTTP/1.1 on the same port.
  using c = await RawClient.connect(h.port);
  await c.send("GET /h1 HTTP/1.1\r\nHost: web.test\r\n\r\n");
  assert.equal((await c.response()).body, "hello /h1");
  const slot = h.routes.get(KEY)!.slot;
  await until(() => h.counters.concurrency(slot) === 0, "concurrency back to 0");
  assert.equal(h.counters.requests32(slot), 3);
});

Deno.test("h2c: a held stream leaves its connection serving other streams, then completes", async () => {
  await using h = startHarness();
  await using app = startApp((req) => new Response(new URL(req.url).pathname));
  h.setRoutes([
    { name: "web", spec: { hosts: ["web.test"] } },
    { name: "cold", spec: { hosts: ["cold.test"] } },
  ]);
  h.setEndpoints(KEY, [app.port]);
  const coldSlot = h.routes.get("default/cold")!.slot;
  const done = nodeRequests(`http://127.0.0.1:${h.port}`, [
    { id: 1, headers: { ":path": "/held", ":authority": "cold.test" } },
    ...Array.from({ length: 5 }, (_, i) => ({
      id: 10 + i,
      headers: { ":path": `/warm${i}`, ":authority": "web.test" },
    })),
  ]);
  // The held stream is counted as concurrency and as held while the others finish.
  await until(() => h.counters.held(coldSlot) === 1, "the cold stream held");
  await new Promise((r) => setTimeout(r, 300));
  h.setEndpoints("default/cold", [app.port]);
  const results = await done;
  const byId = new Map(results.map((r) => [r.id, r]));
  for (let i = 0; i < 5; i++) assert.equal(byId.get(10 + i)!.body, `/warm${i}`);
  assert.equal(byId.get(1)!.status, 200);
  assert.equal(byId.get(1)!.body, "/held");
  assert.equal(byId.get(1)!.headers["x-keda-http-cold-start"], "true");
  // The warm ones finished first: completion order puts the held one last.
  assert.equal(results.at(-1)!.id, 1);
  await until(() => h.counters.concurrency(coldSlot) === 0, "cold concurrency back to 0");
  assert.equal(h.counters.held(coldSlot), 0);
});

Deno.test("h2c: no route is a 404 on the stream; a malformed request is RST_STREAM, the connection lives", async () => {
  await using h = startHarness();
  await using app = startApp(() => new Response("ok"));
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test"] } }]);
  h.setEndpoints(KEY, [app.port]);
  const results = await nodeRequests(`http://127.0.0.1:${h.port}`, [
    { id: 1, headers: { ":path": "/x", ":authority": "nowhere.test" } },
    { id: 2, headers: { ":path": "/ok", ":authority": "web.test" } },
  ]);
  const byId = new Map(results.map((r) => [r.id, r]));
  assert.equal(byId.get(1)!.status, 404);
  assert.match(byId.get(1)!.body, /no route for host "nowhere.test"/);
  assert.equal(byId.get(2)!.body, "ok");
  const snap = h.metrics.snapshot();
  assert.ok(JSON.stringify(snap).includes("404"), "the 404 is in the metrics");
});

Deno.test("h2c upstream: HTTP/2 end to end with trailers relayed; an HTTP/1.1 client still gets the answer", async () => {
  await using h = startHarness();
  await using app = await startNodeH2App();
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test"] } }]);
  h.setEndpoints(KEY, [app.port], { h2c: true });
  const results = await nodeRequests(`http://127.0.0.1:${h.port}`, [
    {
      id: 1,
      headers: {
        ":method": "POST",
        ":path": "/trailers",
        ":authority": "web.test",
        "content-type": "application/grpc",
        te: "trailers",
      },
      body: "\u0000\u0000\u0000\u0000\u0003abc",
    },
    { id: 2, headers: { ":path": "/info", ":authority": "web.test", "x-custom": "v" } },
    // Found by the bench: a content-length beside trailers lost the trailers.
    {
      id: 3,
      headers: { ":method": "POST", ":path": "/trailers-cl", ":authority": "web.test" },
      body: "abc",
    },
  ]);
  const byId = new Map(results.map((r) => [r.id, r]));
  const t = byId.get(1)!;
  assert.equal(t.status, 200);
  assert.equal(t.body, "\u0000\u0000\u0000\u0000\u0003abc");
  assert.equal(t.trailers["grpc-status"], "7");
  assert.equal(t.trailers["grpc-message"], "denied%20here");
  assert.equal(byId.get(3)!.body, "abc");
  assert.equal(byId.get(3)!.trailers["grpc-status"], "7");
  const info = JSON.parse(byId.get(2)!.body) as { headers: Record<string, string> };
  assert.equal(info.headers[":authority"], "web.test");
  assert.equal(info.headers["x-custom"], "v");
  assert.equal(info.headers["x-forwarded-for"], "127.0.0.1");
  // HTTP/1.1 client, h2c app: the trailers come as a chunked body's trailer section.
  using c = await RawClient.connect(h.port);
  await c.send("POST /trailers HTTP/1.1\r\nHost: web.test\r\nContent-Length: 3\r\n\r\nabc");
  const r = await c.response();
  assert.equal(r.status, 200);
  assert.equal(r.body, "abc");
});

Deno.test("h2c upstream: a 1 MiB response and request stream through both windows", async () => {
  await using h = startHarness();
  await using app = await startNodeH2App();
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test"] } }]);
  h.setEndpoints(KEY, [app.port], { h2c: true });
  const big = "y".repeat(1 << 20);
  const results = await nodeRequests(`http://127.0.0.1:${h.port}`, [
    { id: 1, headers: { ":path": `/big?n=${1 << 20}`, ":authority": "web.test" } },
    {
      id: 2,
      headers: { ":method": "POST", ":path": "/info", ":authority": "web.test" },
      body: big,
    },
  ]);
  const byId = new Map(results.map((r) => [r.id, r]));
  assert.equal(byId.get(1)!.body.length, 1 << 20);
  assert.equal((JSON.parse(byId.get(2)!.body) as { body: string }).body.length, 1 << 20);
});

Deno.test("h2c: a client that cancels a stream is a 499, and the counters return to 0", async () => {
  await using h = startHarness();
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => (release = r));
  await using app = startApp(async () => {
    await gate;
    return new Response("late");
  });
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test"] } }]);
  h.setEndpoints(KEY, [app.port]);
  const slot = h.routes.get(KEY)!.slot;
  const results = await nodeRequests(`http://127.0.0.1:${h.port}`, [
    { id: 1, headers: { ":path": "/slow", ":authority": "web.test" }, cancelAfterMs: 200 },
  ]);
  release();
  assert.equal(results[0]!.status, 0);
  await until(() => h.counters.concurrency(slot) === 0, "concurrency back to 0");
  await until(() => JSON.stringify(h.metrics.snapshot()).includes("499"), "a 499 recorded");
});
