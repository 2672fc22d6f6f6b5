/**
 * The suite's HTTP client and load loops against real servers on loopback:
 * Host routing, chunked bodies, keep-alive reuse, and the failure phases the
 * resilience case relies on (refused = not accepted, stale keep-alive =
 * retried, sent-then-dropped = lost).
 */
import assert from "node:assert/strict";
import {
  HttpClient,
  httpGet,
  HttpRequestError,
  parseHead,
  requestWithRetry,
} from "./http_client.ts";
import { closedLoop, describeTally, failedAccepted, fixedRate, percentile } from "./load.ts";

function serve(handler: (req: Request) => Response | Promise<Response>) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  return {
    target: { hostname: "127.0.0.1", port: server.addr.port },
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  };
}

/** A raw TCP server: `onConn` gets each connection. */
function rawServer(onConn: (conn: Deno.TcpConn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.TcpConn>();
  const loop = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      onConn(conn).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch {
          // Closed by the handler.
        }
      });
    }
  })().catch(() => {});
  return {
    target: { hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port },
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Gone.
        }
      }
      await loop;
    },
  };
}

async function readRequestHead(conn: Deno.TcpConn): Promise<string> {
  const buf = new Uint8Array(8192);
  let text = "";
  while (!text.includes("\r\n\r\n")) {
    const n = await conn.read(buf);
    if (n === null) throw new Error("closed");
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  return text;
}

const OK_RESPONSE = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

Deno.test("parseHead: status and lower-cased, joined headers; rejects garbage", () => {
  const h = parseHead("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nVia: a\r\nvia: b");
  assert.equal(h.status, 503);
  assert.equal(h.headers.get("retry-after"), "2");
  assert.equal(h.headers.get("via"), "a, b");
  assert.throws(() => parseHead("SSH-2.0-OpenSSH"), /not an HTTP\/1\.x status line/);
});

Deno.test("http client: sends the Host header, reads chunked and sized bodies, reuses the connection", async () => {
  await using s = serve((req) => {
    const url = new URL(req.url);
    if (url.pathname === "/chunked") {
      const body = new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode("part1-"));
          c.enqueue(new TextEncoder().encode("part2"));
          c.close();
        },
      });
      return new Response(body);
    }
    return new Response(`host=${req.headers.get("host")} x=${req.headers.get("x-canary")}`, {
      headers: { "x-keda-http-cold-start": "false" },
    });
  });
  using client = new HttpClient(s.target);
  const a = await client.request({
    host: "Alpha.E2E.test",
    path: "/",
    headers: { "x-canary": "1" },
  });
  assert.equal(a.status, 200);
  assert.equal(a.body, "host=Alpha.E2E.test x=1");
  assert.equal(a.headers.get("x-keda-http-cold-start"), "false");
  assert.equal(a.reused, false);
  const b = await client.request({ host: "beta", path: "/chunked" });
  assert.equal(b.body, "part1-part2");
  assert.equal(b.reused, true, "the second request reuses the keep-alive connection");
  assert.ok(b.headAt >= b.sentAt);
});

Deno.test("http client: a refused connection is 'connect' and not accepted", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const e = await httpGet({ hostname: "127.0.0.1", port }, { host: "x", path: "/" }).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(e instanceof HttpRequestError, String(e));
  assert.equal(e.phase, "connect");
  assert.equal(e.accepted, false);
});

Deno.test("http client: a request read and dropped on a fresh connection is lost (accepted)", async () => {
  await using s = rawServer(async (conn) => {
    await readRequestHead(conn);
    conn.close();
  });
  const e = await httpGet(s.target, { host: "x", path: "/" }).then(() => undefined, (e) => e);
  assert.ok(e instanceof HttpRequestError, String(e));
  assert.equal(e.phase, "response");
  assert.equal(e.accepted, true);
  assert.match(e.message, /GET http:\/\/x\/ via 127\.0\.0\.1:\d+: connection closed by the server/);
});

Deno.test("http client: a keep-alive connection the server closed is retried once on a fresh one", async () => {
  // Answers one request per connection, then closes it without saying so.
  await using s = rawServer(async (conn) => {
    await readRequestHead(conn);
    await conn.write(new TextEncoder().encode(OK_RESPONSE));
    await new Promise((r) => setTimeout(r, 20));
  });
  using client = new HttpClient(s.target);
  assert.equal((await client.request({ host: "x", path: "/" })).status, 200);
  await new Promise((r) => setTimeout(r, 100));
  const r = await requestWithRetry(client, { host: "x", path: "/" });
  assert.equal(r.status, 200);
  assert.equal(r.retried, true);
});

Deno.test("http client: a timeout names the request and counts as lost", async () => {
  await using s = rawServer(async (conn) => {
    await readRequestHead(conn);
    await new Promise((r) => setTimeout(r, 2_000));
  });
  const e = await httpGet(s.target, { host: "slow.test", path: "/wait", timeoutMs: 200 }).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(e instanceof HttpRequestError);
  assert.equal(e.accepted, true);
  assert.match(e.message, /slow\.test\/wait.*no answer within 200 ms/);
});

Deno.test("closedLoop: holds exactly N requests in flight and tallies answers", async () => {
  let inFlight = 0;
  let max = 0;
  await using s = serve(async (req) => {
    inFlight++;
    max = Math.max(max, inFlight);
    await new Promise((r) => setTimeout(r, 30));
    inFlight--;
    const url = new URL(req.url);
    return new Response("x", { status: url.pathname === "/fail" ? 502 : 200 });
  });
  const stop = new AbortController();
  const run = closedLoop({
    targets: [s.target],
    request: { host: "app", path: "/" },
    concurrency: 4,
    signal: stop.signal,
  });
  while (max < 4) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 200));
  stop.abort();
  const t = await run;
  assert.equal(max, 4, "never more than the configured concurrency");
  assert.ok(t.ok >= 4, describeTally(t));
  assert.equal(t.sent, t.ok, describeTally(t));
  assert.equal(failedAccepted(t), 0);

  const stop2 = new AbortController();
  const run2 = closedLoop({
    targets: [s.target],
    request: { host: "app", path: "/fail" },
    concurrency: 1,
    signal: stop2.signal,
  });
  await new Promise((r) => setTimeout(r, 150));
  stop2.abort();
  const t2 = await run2;
  assert.ok(t2.statuses["502"]! >= 1);
  assert.equal(failedAccepted(t2), t2.statuses["502"]);
  assert.match(describeTally(t2), /non-2xx 502×\d+/);
});

Deno.test("fixedRate: never sends faster than the rate", async () => {
  await using s = serve(() => new Response("ok"));
  const stop = new AbortController();
  const t0 = performance.now();
  const run = fixedRate({
    targets: [s.target],
    request: { host: "app", path: "/" },
    rps: 40,
    signal: stop.signal,
  });
  await new Promise((r) => setTimeout(r, 500));
  stop.abort();
  const t = await run;
  const elapsed = performance.now() - t0;
  assert.ok(t.sent > 0);
  assert.ok(t.sent <= Math.ceil((elapsed * 40) / 1000) + 1, `${t.sent} in ${elapsed} ms`);
  assert.equal(t.ok, t.sent);
});

Deno.test("percentile: nearest rank", () => {
  assert.equal(percentile([5, 1, 3, 2, 4], 50), 3);
  assert.equal(percentile([5, 1, 3, 2, 4], 99), 5);
  assert.equal(percentile([7], 1), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(hundred, 99), 99);
  assert.equal(percentile(hundred, 50), 50);
});
