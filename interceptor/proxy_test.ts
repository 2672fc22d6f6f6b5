/**
 * The data plane over real loopback sockets: a Proxy in this isolate, apps
 * served by Deno.serve, clients speaking raw HTTP/1.1 or fetch.
 */
import assert from "node:assert/strict";
import { RawClient, rawRequest, startApp, startHarness, until } from "./proxy_testing.ts";

const KEY = "default/app";
const appRoute = (spec: Record<string, unknown> = {}) => ({
  name: "app",
  spec: { hosts: ["app.test"], ...spec },
});

function get(path: string, host = "app.test", extra = ""): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;
}

function counted(h: ReturnType<typeof startHarness>, key = KEY) {
  const slot = h.routes.get(key)!.slot;
  return { concurrency: h.counters.concurrency(slot), held: h.counters.held(slot) };
}

Deno.test("proxy: no route → 404 naming host and path, connection kept", async () => {
  await using h = startHarness();
  h.setRoutes([appRoute()]);
  using c = await RawClient.connect(h.port);
  await c.send(get("/x?y=1", "Other.Test:8080"));
  const r = await c.response();
  assert.equal(r.status, 404);
  assert.match(r.body, /no route for host "Other\.Test:8080" and path "\/x\?y=1"/);
  await c.send(get("/again", "other.test"));
  assert.equal((await c.response()).status, 404);
});

Deno.test("proxy: forwards with Host kept, X-Forwarded-* added, hop-by-hop dropped, reuses connections", async () => {
  await using h = startHarness();
  const seen: Array<Record<string, string>> = [];
  const remotePorts = new Set<number>();
  await using app = startApp((req, info) => {
    seen.push(Object.fromEntries(req.headers));
    remotePorts.add((info.remoteAddr as Deno.NetAddr).port);
    return new Response("ok", { headers: { "keep-alive": "timeout=5", "x-app": "1" } });
  });
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  using c = await RawClient.connect(h.port);
  for (let i = 0; i < 3; i++) {
    await c.send(
      get(
        "/p",
        "App.Test:8080",
        "X-Forwarded-For: 203.0.113.7\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nProxy-Authorization: x\r\n",
      ),
    );
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(r.body, "ok");
    assert.equal(r.headers.get("x-keda-http-cold-start"), "false");
    assert.equal(r.headers.get("keep-alive"), undefined);
    assert.equal(r.headers.get("x-app"), "1");
  }
  const first = seen[0]!;
  assert.equal(first.host, "App.Test:8080");
  assert.equal(first["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
  assert.equal(first["x-forwarded-host"], "App.Test:8080");
  assert.equal(first["x-forwarded-proto"], "http");
  assert.equal(first["x-secret"], undefined);
  assert.equal(first["keep-alive"], undefined);
  assert.equal(first["proxy-authorization"], undefined);
  assert.equal(remotePorts.size, 1, "one upstream connection reused for all requests");
  assert.deepEqual(counted(h), { concurrency: 0, held: 0 });
  assert.deepEqual(h.activity, [[1, true], [1, false], [1, true], [1, false], [1, true], [
    1,
    false,
  ]]);
});

Deno.test("proxy: a held request is woken by endpoints, not by polling, and says it was a cold start", async () => {
  await using h = startHarness();
  await using app = startApp(() => new Response("woke"));
  h.setRoutes([appRoute()]);
  using c = await RawClient.connect(h.port);
  await c.send(get("/"));
  await until(() => counted(h).held === 1, "the request to be held");
  assert.equal(counted(h).concurrency, 1);
  h.setEndpoints(KEY, [app.port]);
  const r = await c.response();
  assert.equal(r.status, 200);
  assert.equal(r.body, "woke");
  assert.equal(r.headers.get("x-keda-http-cold-start"), "true");
  assert.deepEqual(counted(h), { concurrency: 0, held: 0 });
});

Deno.test("proxy: readiness timeout → 504 saying the app did not become ready", async () => {
  await using h = startHarness({ readinessTimeoutMs: 60_000 });
  h.setRoutes([appRoute({ timeouts: { conditionWait: "300ms" } })]);
  const t0 = Date.now();
  const r = await rawRequest(h.port, get("/"));
  const took = Date.now() - t0;
  assert.equal(r.status, 504);
  assert.match(r.body, /default\/app did not become ready within 300ms/);
  assert.equal(r.headers.get("x-keda-http-cold-start"), "true");
  assert.ok(took >= 290, `answered after ${took} ms`);
  assert.deepEqual(counted(h), { concurrency: 0, held: 0 });
});

Deno.test("proxy: fallback Service answers after timeoutSeconds", async () => {
  await using h = startHarness();
  await using fb = startApp(() => new Response("fallback"));
  h.setRoutes([appRoute({
    coldStartTimeoutFailoverRef: { service: "fb", port: 80, timeoutSeconds: 1 },
  })]);
  h.setEndpoints(KEY, [fb.port], { fallback: true });
  const t0 = Date.now();
  const r = await rawRequest(h.port, get("/"));
  assert.equal(r.status, 200);
  assert.equal(r.body, "fallback");
  assert.ok(Date.now() - t0 >= 950);
  assert.deepEqual(counted(h), { concurrency: 0, held: 0 });
});

Deno.test("proxy: past the hold cap → 503 with Retry-After; held ones still complete", async () => {
  await using h = startHarness({ maxHeldRequests: 2 });
  await using app = startApp(() => new Response("ok"));
  h.setRoutes([appRoute()]);
  const a = await RawClient.connect(h.port);
  const b = await RawClient.connect(h.port);
  await a.send(get("/"));
  await b.send(get("/"));
  await until(() => counted(h).held === 2, "two held requests");
  const r = await rawRequest(h.port, get("/"));
  assert.equal(r.status, 503);
  assert.equal(r.headers.get("retry-after"), "2");
  assert.match(r.body, /too many requests are waiting/);
  h.setEndpoints(KEY, [app.port]);
  assert.equal((await a.response()).status, 200);
  assert.equal((await b.response()).status, 200);
  a.close();
  b.close();
  assert.deepEqual(counted(h), { concurrency: 0, held: 0 });
});

Deno.test("proxy: a client that hangs up while held is counted as 499 and releases its place", async () => {
  await using h = startHarness();
  h.setRoutes([appRoute()]);
  const c = await RawClient.connect(h.port);
  await c.send(get("/"));
  await until(() => counted(h).held === 1, "the request to be held");
  c.close();
  await until(() => counted(h).concurrency === 0, "concurrency back to 0");
  assert.equal(counted(h).held, 0);
  const snap = h.metrics.snapshot();
  assert.deepEqual(snap.counts.find(([route]) => route === KEY)?.slice(1), ["GET", 499, 1]);
  assert.ok(h.logs.some((l) => l.includes('"status":499')));
});

Deno.test("proxy: a client that hangs up mid-request cancels the app's request (499, not 502)", async () => {
  await using h = startHarness();
  let aborted = 0;
  let started = 0;
  await using app = startApp(async (req) => {
    started++;
    await new Promise<void>((resolve) => {
      req.signal.addEventListener("abort", () => {
        aborted++;
        resolve();
      });
    });
    return new Response("never");
  });
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  const c = await RawClient.connect(h.port);
  await c.send(get("/hang"));
  await until(() => started === 1, "the app to get the request");
  c.close();
  await until(() => aborted === 1, "the app's request to be cancelled");
  await until(() => counted(h).concurrency === 0, "concurrency back to 0");
  const codes = h.metrics.snapshot().counts.filter(([r]) => r === KEY).map(([, , code]) => code);
  assert.deepEqual(codes, [499]);
});

Deno.test("proxy: response header timeout → 504; the connection to the app is dropped", async () => {
  await using h = startHarness();
  let aborted = false;
  await using app = startApp(async (req) => {
    await new Promise<void>((r) => req.signal.addEventListener("abort", () => r()));
    aborted = true;
    return new Response("late");
  });
  h.setRoutes([appRoute({ timeouts: { responseHeader: "300ms" } })]);
  h.setEndpoints(KEY, [app.port]);
  const r = await rawRequest(h.port, get("/"));
  assert.equal(r.status, 504);
  assert.match(r.body, /sent no response head within 300ms/);
  await until(() => aborted, "the app to see the request cancelled");
  assert.deepEqual(counted(h), { concurrency: 0, held: 0 });
});

Deno.test("proxy: connect is retried until the app listens", async () => {
  await using h = startHarness({ readinessTimeoutMs: 5_000 });
  // Reserve a port, free it, publish it as ready before anything listens there.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [port]);
  let app: ReturnType<typeof startApp> | undefined;
  const late = setTimeout(() => (app = startApp(() => new Response("late listener"), port)), 400);
  try {
    const r = await rawRequest(h.port, get("/"));
    assert.equal(r.status, 200);
    assert.equal(r.body, "late listener");
  } finally {
    clearTimeout(late);
    await app?.shutdown();
  }
});

Deno.test("proxy: nothing listening until the deadline → 502 naming the target", async () => {
  await using h = startHarness({ readinessTimeoutMs: 300, connectTimeoutMs: 100 });
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [port]);
  const r = await rawRequest(h.port, get("/"));
  assert.equal(r.status, 502);
  assert.match(r.body, new RegExp(`could not connect to default/app:80 at 127.0.0.1:${port}`));
  assert.deepEqual(counted(h), { concurrency: 0, held: 0 });
});

Deno.test("proxy: least-in-flight spreads concurrent requests and a wake-up burst over pods", async () => {
  await using h = startHarness();
  const hits = [0, 0];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const mk = (i: number) =>
    startApp(async () => {
      hits[i]!++;
      await gate;
      return new Response(`pod ${i}`);
    });
  await using a = mk(0);
  await using b = mk(1);
  h.setRoutes([appRoute()]);
  const clients = await Promise.all(Array.from({ length: 10 }, () => RawClient.connect(h.port)));
  for (const c of clients) await c.send(get("/"));
  await until(() => counted(h).held === 10, "10 held requests");
  h.setEndpoints(KEY, [a.port, b.port]);
  await until(() => hits[0]! + hits[1]! === 10, "all requests at the pods");
  assert.deepEqual(hits, [5, 5]);
  release();
  for (const c of clients) {
    assert.equal((await c.response()).status, 200);
    c.close();
  }
});

Deno.test("proxy: the per-pod cap holds requests until a pod has room", async () => {
  await using h = startHarness({ podConcurrencyLimit: 1 });
  let inflight = 0;
  let max = 0;
  await using app = startApp(async () => {
    inflight++;
    max = Math.max(max, inflight);
    await new Promise((r) => setTimeout(r, 50));
    inflight--;
    return new Response("ok");
  });
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  const results = await Promise.all(Array.from({ length: 4 }, () => rawRequest(h.port, get("/"))));
  assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200]);
  assert.equal(max, 1);
});

Deno.test("proxy: bodies stream both ways at once (50 MB echo, no deadlock)", async () => {
  await using h = startHarness();
  await using app = startApp((req) => new Response(req.body));
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  const size = 50 * 1024 * 1024;
  const chunk = new Uint8Array(256 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = i & 0xff;
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent >= size) return c.close();
      c.enqueue(chunk.slice());
      sent += chunk.length;
    },
  });
  const client = Deno.createHttpClient({ allowHost: true });
  try {
    const res = await fetch(`http://127.0.0.1:${h.port}/echo`, {
      method: "POST",
      body,
      headers: { host: "app.test" },
      client,
    });
    assert.equal(res.status, 200);
    let got = 0;
    let wrong = 0;
    for await (const part of res.body!) {
      // Byte n of the stream is n mod 256.
      for (let i = 0; i < part.length; i++) if (part[i] !== ((got + i) & 0xff)) wrong++;
      got += part.length;
    }
    assert.equal(got, size);
    assert.equal(wrong, 0, "every byte arrives unchanged and in order");
  } finally {
    client.close();
  }
  assert.deepEqual(counted(h), { concurrency: 0, held: 0 });
});

Deno.test("proxy: chunked request bodies and trailers pass through", async () => {
  await using h = startHarness();
  await using app = startApp(async (req) => new Response(`got ${await req.text()}`));
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  const r = await rawRequest(
    h.port,
    "POST /c HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
  );
  assert.equal(r.status, 200);
  assert.equal(r.body, "got hello world");
});

Deno.test("proxy: an HTTP/1.0 client gets a chunked response de-chunked, then close", async () => {
  await using h = startHarness();
  await using app = startApp(() =>
    new Response(
      new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode("part1 "));
          c.enqueue(new TextEncoder().encode("part2"));
          c.close();
        },
      }),
    )
  );
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  const r = await rawRequest(h.port, "GET / HTTP/1.0\r\nHost: app.test\r\n\r\n");
  assert.equal(r.status, 200);
  assert.ok(r.head.startsWith("HTTP/1.0 200"));
  assert.equal(r.headers.get("transfer-encoding"), undefined);
  assert.equal(r.body, "part1 part2");
});

Deno.test("proxy: pipelined requests are answered in order", async () => {
  await using h = startHarness();
  await using app = startApp((req) => new Response(new URL(req.url).pathname));
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  using c = await RawClient.connect(h.port);
  await c.send(get("/one") + get("/two") + get("/three"));
  assert.equal((await c.response()).body, "/one");
  assert.equal((await c.response()).body, "/two");
  assert.equal((await c.response()).body, "/three");
});

Deno.test("proxy: Expect: 100-continue is relayed", async () => {
  await using h = startHarness();
  await using app = startApp(async (req) => new Response(`got ${await req.text()}`));
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  using c = await RawClient.connect(h.port);
  await c.send(
    "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
  );
  const interim = await c.response();
  assert.equal(interim.status, 100);
  await c.send("data");
  const r = await c.response();
  assert.equal(r.status, 200);
  assert.equal(r.body, "got data");
});

Deno.test("proxy: WebSocket upgrade and echo", async () => {
  await using h = startHarness();
  await using app = startApp((req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onmessage = (e) => socket.send(`echo ${e.data}`);
    return response;
  });
  h.setRoutes([{ name: "app", spec: { pathPrefixes: ["/ws"] } }]);
  h.setEndpoints(KEY, [app.port]);
  const ws = new WebSocket(`ws://127.0.0.1:${h.port}/ws`);
  const got: string[] = [];
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => ws.send("hi");
    ws.onmessage = (e) => {
      got.push(e.data);
      if (got.length === 1) ws.send("again");
      else ws.close();
    };
    ws.onclose = () => resolve();
    ws.onerror = (e) => reject(new Error(String((e as ErrorEvent).message)));
  });
  assert.deepEqual(got, ["echo hi", "echo again"]);
  await until(() => counted(h).concurrency === 0, "the upgraded exchange to end");
  const codes = h.metrics.snapshot().counts.filter(([r]) => r === KEY).map(([, , c]) => c);
  assert.deepEqual(codes, [101]);
});

const BAD_HEADS: Array<[string, string, number | "close"]> = [
  ["garbage request line", "HELLO\r\n\r\n", 400],
  ["no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400],
  ["empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 400],
  ["Host that is not a host", "GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n", 400],
  ["two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
  [
    "Content-Length with Transfer-Encoding",
    "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    400,
  ],
  [
    "conflicting Content-Length values",
    "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
    400,
  ],
  ["space before colon", "GET / HTTP/1.1\r\nHost : app.test\r\n\r\n", 400],
  ["line folding", "GET / HTTP/1.1\r\nHost: app.test\r\nX: a\r\n b\r\n\r\n", 400],
  [
    "transfer coding not ending in chunked",
    "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip\r\n\r\n",
    400,
  ],
  // (The real preface starts HTTP/2: h2_hostile_test.ts.)
  ["HTTP/2.0 in an HTTP/1 request line", "GET / HTTP/2.0\r\nHost: app.test\r\n\r\n", 505],
  ["NUL in a header value", "GET / HTTP/1.1\r\nHost: app.test\r\nX: a\x00b\r\n\r\n", 400],
  ["CONNECT", "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n", 405],
];

for (const [name, text, want] of BAD_HEADS) {
  Deno.test(`proxy: bad input (${name}) → ${want}, and nothing stays counted`, async () => {
    await using h = startHarness();
    await using app = startApp(() => new Response("should not be reached"));
    h.setRoutes([appRoute()]);
    h.setEndpoints(KEY, [app.port]);
    using c = await RawClient.connect(h.port);
    await c.send(text);
    const r = await c.response();
    assert.equal(r.status, want);
    assert.ok(await c.closedWithin(2000), "the connection is closed after a bad request");
    assert.deepEqual(counted(h), { concurrency: 0, held: 0 });
  });
}

Deno.test("proxy: an oversized head → 431 and close", async () => {
  await using h = startHarness();
  h.setRoutes([appRoute()]);
  using c = await RawClient.connect(h.port);
  const big = "X-Big: " + "a".repeat(70 * 1024) + "\r\n";
  await c.send(`GET / HTTP/1.1\r\nHost: app.test\r\n`);
  await c.send(big).catch(() => {});
  const r = await c.response();
  assert.equal(r.status, 431);
});

Deno.test("proxy: a client too slow to send its head gets 408 and is closed", async () => {
  await using h = startHarness({ headTimeoutMs: 300 });
  h.setRoutes([appRoute()]);
  using c = await RawClient.connect(h.port);
  await c.send("GET / HTTP/1.1\r\nHost: app");
  const t0 = Date.now();
  const r = await c.response();
  assert.equal(r.status, 408);
  assert.ok(Date.now() - t0 < 3000);
  assert.ok(await c.closedWithin(2000));
});

Deno.test("proxy: a client that stops sending its body is cut off after the idle timeout", async () => {
  await using h = startHarness({ idleTimeoutMs: 400 });
  await using app = startApp(async (req) => {
    try {
      return new Response(await req.text());
    } catch {
      return new Response(null, { status: 400 });
    }
  });
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  using c = await RawClient.connect(h.port);
  await c.send("POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\nonly some");
  assert.ok(await c.closedWithin(5000), "closed after the idle timeout");
  await until(() => counted(h).concurrency === 0, "concurrency back to 0");
});

Deno.test("proxy: idle keep-alive connections close after the idle timeout", async () => {
  await using h = startHarness({ idleTimeoutMs: 300 });
  h.setRoutes([appRoute()]);
  using c = await RawClient.connect(h.port);
  await c.send(get("/", "none.test"));
  assert.equal((await c.response()).status, 404);
  assert.ok(await c.closedWithin(3000));
});

Deno.test("proxy: drain lets in-flight requests finish and closes idle connections", async () => {
  await using h = startHarness();
  await using app = startApp(async () => {
    await new Promise((r) => setTimeout(r, 300));
    return new Response("finished");
  });
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  using idle = await RawClient.connect(h.port);
  await idle.send(get("/", "none.test"));
  await idle.response();
  using busy = await RawClient.connect(h.port);
  await busy.send(get("/"));
  await until(() => counted(h).concurrency === 1, "the request in flight");
  const drained = h.proxy.drain(5_000);
  assert.ok(await idle.closedWithin(1000), "idle connection closed at once");
  const r = await busy.response();
  assert.equal(r.status, 200);
  assert.equal(r.body, "finished");
  assert.equal(r.headers.get("connection"), "close");
  await drained;
  assert.equal(h.proxy.connections, 0);
});

Deno.test("proxy: a connection accepted while draining is answered, then closed", async () => {
  await using h = startHarness();
  await using app = startApp(async (req) => {
    if (new URL(req.url).pathname === "/slow") await new Promise((r) => setTimeout(r, 300));
    return new Response("answered");
  });
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  using busy = await RawClient.connect(h.port);
  await busy.send(get("/slow"));
  await until(() => counted(h).concurrency === 1, "the request in flight");
  const drained = h.proxy.drain(5_000);
  // The harness still accepts, like an isolate's listener in the moment before it closes.
  using late = await RawClient.connect(h.port);
  await late.send(get("/"));
  const r = await late.response();
  assert.equal(r.status, 200);
  assert.equal(r.body, "answered");
  assert.equal(r.headers.get("connection"), "close");
  assert.equal((await busy.response()).status, 200);
  await drained;
  assert.equal(h.proxy.connections, 0);
});

Deno.test("proxy: HEAD, 204 and 304 responses have no body and keep the connection", async () => {
  await using h = startHarness();
  await using app = startApp((req) => {
    const p = new URL(req.url).pathname;
    if (p === "/204") return new Response(null, { status: 204 });
    if (p === "/304") return new Response(null, { status: 304 });
    return new Response("body that HEAD must not get");
  });
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  using c = await RawClient.connect(h.port);
  await c.send(`HEAD / HTTP/1.1\r\nHost: app.test\r\n\r\n`);
  const head = await c.response({ head: true });
  assert.equal(head.status, 200);
  await c.send(get("/204"));
  assert.equal((await c.response()).status, 204);
  await c.send(get("/304"));
  assert.equal((await c.response()).status, 304);
  await c.send(get("/x"));
  const r = await c.response();
  assert.equal(r.body, "body that HEAD must not get");
});

Deno.test("proxy: absolute-form targets route by their authority and go upstream in origin form", async () => {
  await using h = startHarness();
  await using app = startApp((req) => new Response(`${new URL(req.url).pathname}`));
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  const r = await rawRequest(h.port, "GET http://app.test/abs?q=1 HTTP/1.1\r\nHost: other\r\n\r\n");
  assert.equal(r.status, 200);
  assert.equal(r.body, "/abs");
});

Deno.test("proxy: the app closing mid-body ends the client connection, counters return to 0", async () => {
  await using h = startHarness();
  const upstream = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of upstream) {
      const buf = new Uint8Array(4096);
      await conn.read(buf);
      await conn.write(
        new TextEncoder().encode("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ntruncated"),
      );
      conn.close();
    }
  })().catch(() => {});
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [(upstream.addr as Deno.NetAddr).port]);
  using c = await RawClient.connect(h.port);
  await c.send(get("/"));
  await assert.rejects(() => c.response());
  await until(() => counted(h).concurrency === 0, "concurrency back to 0");
  upstream.close();
  await serving;
});

Deno.test("proxy: a stale pooled connection is replaced transparently", async () => {
  await using h = startHarness();
  let n = 0;
  const upstream = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of upstream) {
      (async () => {
        const buf = new Uint8Array(4096);
        await conn.read(buf);
        n++;
        await conn.write(
          new TextEncoder().encode(`HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n${n}`),
        );
        // Keep-alive promised, but the app drops the connection right away.
        conn.close();
      })();
    }
  })().catch(() => {});
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [(upstream.addr as Deno.NetAddr).port]);
  using c = await RawClient.connect(h.port);
  for (let i = 1; i <= 3; i++) {
    await c.send(get("/"));
    const r = await c.response();
    assert.equal(r.status, 200);
  }
  upstream.close();
  await serving;
});

Deno.test("proxy: recycle closes the connections open then after their next response, not newer ones", async () => {
  await using h = startHarness();
  await using app = startApp(() => new Response("ok"));
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  using busy = await RawClient.connect(h.port);
  using idle = await RawClient.connect(h.port);
  await busy.send(get("/"));
  assert.equal((await busy.response()).headers.get("connection"), undefined);
  await idle.send(get("/"));
  await idle.response();
  h.proxy.recycle();
  using fresh = await RawClient.connect(h.port);
  // An idle connection is not cut under a request that may be on its way:
  // it still answers (below) after a pause.
  await new Promise((r) => setTimeout(r, 200));
  for (const old of [busy, idle]) {
    await old.send(get("/"));
    const r = await old.response();
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("connection"), "close");
    assert.equal(await old.closedWithin(2000), true);
  }
  for (let i = 0; i < 3; i++) {
    await fresh.send(get("/"));
    const r = await fresh.response();
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("connection"), undefined, "a newer connection stays keep-alive");
  }
  assert.deepEqual(counted(h), { concurrency: 0, held: 0 });
});

Deno.test("proxy: a recycle during a keep-alive response waits for the next response to close", async () => {
  await using h = startHarness();
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  await using app = startApp(() =>
    new Response(
      new ReadableStream({
        async start(ctl) {
          ctl.enqueue(new TextEncoder().encode("first "));
          await gate;
          ctl.enqueue(new TextEncoder().encode("last"));
          ctl.close();
        },
      }),
    )
  );
  h.setRoutes([appRoute()]);
  h.setEndpoints(KEY, [app.port]);
  using c = await RawClient.connect(h.port);
  await c.send(get("/"));
  // The head (no Connection: close) is out; the recycle lands mid-body.
  await c.received("first ");
  h.proxy.recycle();
  open();
  const first = await c.response();
  assert.equal(first.body, "first last");
  assert.equal(first.headers.get("connection"), undefined);
  // The client was promised keep-alive: its next request is answered, then it closes.
  await c.send(get("/"));
  const second = await c.response();
  assert.equal(second.status, 200);
  assert.equal(second.headers.get("connection"), "close");
  assert.equal(await c.closedWithin(2000), true);
  assert.deepEqual(counted(h), { concurrency: 0, held: 0 });
});
