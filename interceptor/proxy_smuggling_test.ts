/**
 * The data plane's desync and stuck-exchange defects, each end to end over
 * loopback sockets: a client speaking raw bytes, our proxy, and an app that
 * is either Deno.serve (hyper, a strict parser that would act on a smuggled
 * request) or a scripted raw TCP server for what a well-behaved server
 * never sends. Counters must be back at 0 after every case.
 */
import assert from "node:assert/strict";
import { RawClient, rawRequest, startApp, startHarness, until } from "./proxy_testing.ts";

const KEY = "default/app";
const ROUTE = { name: "app", spec: { hosts: ["app.test"] } };
const enc = new TextEncoder();
const dec = new TextDecoder();

type H = ReturnType<typeof startHarness>;

async function countersBackToZero(h: H, podSlots: number[] = []): Promise<void> {
  const slot = h.routes.get(KEY)!.slot;
  await until(
    () =>
      h.counters.concurrency(slot) === 0 && h.counters.held(slot) === 0 &&
      podSlots.every((s) => h.counters.podLoad(s) === 0),
    "route and pod counters back at 0",
  );
}

/** Pod counter slots the harness gave the route's endpoints. */
function podSlots(h: H): number[] {
  const slots: number[] = [];
  for (let s = 1; s < 4096; s++) if (h.counters.podLoad(s) !== 0) slots.push(s);
  return slots;
}

/**
 * A raw TCP app: for each connection, `script` gets the bytes of each request
 * head (and what followed it in the same read) and answers with bytes, or
 * null to close the connection without answering.
 */
function rawApp(
  script: (req: string, conn: number, seq: number) => string | null,
): { port: number; heads: string[]; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const heads: string[] = [];
  const conns = new Set<Deno.Conn>();
  let connId = 0;
  (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      const id = ++connId;
      (async () => {
        let seq = 0;
        let text = "";
        const buf = new Uint8Array(65536);
        try {
          for (let reads = 0; reads < 10_000; reads++) {
            const n = await conn.read(buf);
            if (n === null) break;
            text += dec.decode(buf.subarray(0, n));
            const end = text.indexOf("\r\n\r\n");
            if (end < 0) continue;
            heads.push(text);
            const answer = script(text, id, seq++);
            text = "";
            if (answer === null) break;
            await conn.write(enc.encode(answer));
          }
        } catch {
          // The proxy closed the connection.
        } finally {
          conns.delete(conn);
          try {
            conn.close();
          } catch {
            // Closed already.
          }
        }
      })();
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    heads,
    close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Closed already.
        }
      }
    },
  };
}

Deno.test("smuggling: Connection naming Content-Length cannot turn a body into a second request", async () => {
  await using h = startHarness();
  const seen: Array<{ method: string; path: string; body: string; cookie: string | null }> = [];
  await using app = startApp(async (req) => {
    seen.push({
      method: req.method,
      path: new URL(req.url).pathname,
      body: await req.text(),
      cookie: req.headers.get("cookie"),
    });
    return new Response(`answer for ${new URL(req.url).pathname}`);
  });
  h.setRoutes([ROUTE]);
  h.setEndpoints(KEY, [app.port]);
  // A whole second request as the body: what the app would run if the framing were stripped.
  const body = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";
  assert.equal(body.length, 42);
  using attacker = await RawClient.connect(h.port);
  await attacker.send(
    "POST /attack HTTP/1.1\r\nHost: app.test\r\nConnection: Content-Length\r\n" +
      `Content-Length: 42\r\n\r\n${body}`,
  );
  const first = await attacker.response();
  assert.equal(first.status, 200);
  assert.equal(first.body, "answer for /attack");
  // A victim on its own connection, which may reuse the same pooled upstream connection.
  using victim = await RawClient.connect(h.port);
  await victim.send("GET /victim HTTP/1.1\r\nHost: app.test\r\nCookie: secret=1\r\n\r\n");
  const v = await victim.response();
  assert.equal(v.status, 200);
  assert.equal(v.body, "answer for /victim");
  assert.deepEqual(seen.map((s) => s.path), ["/attack", "/victim"]);
  assert.equal(seen[0]!.body, body, "the 42 bytes reached the app as the POST's body");
  assert.equal(seen[1]!.cookie, "secret=1");
  assert.ok(!seen[0]!.body.includes("secret"), "the victim's cookie is not in the attacker's body");
  await countersBackToZero(h);
});

Deno.test("smuggling: an app's Connection: content-length never leaves a kept-alive client without framing", async () => {
  await using h = startHarness();
  const app = rawApp((_req, _conn, seq) =>
    `HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhell${seq}`
  );
  try {
    h.setRoutes([ROUTE]);
    h.setEndpoints(KEY, [app.port]);
    using c = await RawClient.connect(h.port);
    await c.send("GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\n");
    const r1 = await c.response();
    assert.equal(r1.headers.get("content-length"), "5");
    assert.equal(r1.body, "hell0");
    await c.send("GET /2 HTTP/1.1\r\nHost: app.test\r\n\r\n");
    const r2 = await c.response();
    assert.equal(r2.status, 200);
    assert.match(r2.body, /^hell\d$/);
    await countersBackToZero(h);
  } finally {
    app.close();
  }
});

Deno.test("smuggling: a response head the parsers could read two ways is a 502, never spliced", async () => {
  await using h = startHarness();
  const heads = [
    "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\rb\r\n\r\nok",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\x00b\r\n\r\nok",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
  ];
  for (const answer of heads) {
    const app = rawApp(() => answer);
    try {
      h.setRoutes([ROUTE]);
      h.setEndpoints(KEY, [app.port]);
      const r = await rawRequest(h.port, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
      assert.equal(r.status, 502, JSON.stringify(answer));
      assert.match(r.body, /malformed response head/);
      assert.ok(!r.head.includes("\x00") && !r.head.includes("a\rb"));
      await countersBackToZero(h);
    } finally {
      app.close();
    }
  }
});

Deno.test("stuck exchange: an app that answers before reading the body, then a silent client, ends with Connection: close", async () => {
  await using h = startHarness();
  const app = rawApp(() => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly");
  try {
    h.setRoutes([ROUTE]);
    h.setEndpoints(KEY, [app.port]);
    using c = await RawClient.connect(h.port);
    await c.send("POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\n0123456789");
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(r.body, "early");
    assert.equal(r.headers.get("connection"), "close");
    const slots = podSlots(h);
    // The client says nothing more: the exchange must still end, and the connection close.
    assert.ok(await c.closedWithin(20_000), "the proxy closed the connection");
    await countersBackToZero(h, slots);
  } finally {
    app.close();
  }
});

Deno.test("retry: a POST whose pooled connection closes without a response is not sent again; a GET is", async () => {
  await using h = startHarness();
  // Each connection answers its first request, then closes on the second without a response.
  const app = rawApp((_req, _conn, seq) =>
    seq === 0 ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" : null
  );
  try {
    h.setRoutes([ROUTE]);
    h.setEndpoints(KEY, [app.port]);
    assert.equal(
      (await rawRequest(h.port, "GET /warm HTTP/1.1\r\nHost: app.test\r\n\r\n")).status,
      200,
    );
    const post = await rawRequest(
      h.port,
      "POST /charge HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert.equal(post.status, 502);
    assert.equal(app.heads.filter((x) => x.startsWith("POST /charge")).length, 1, "sent once");
    assert.equal(
      (await rawRequest(h.port, "GET /warm2 HTTP/1.1\r\nHost: app.test\r\n\r\n")).status,
      200,
    );
    const get = await rawRequest(h.port, "GET /again HTTP/1.1\r\nHost: app.test\r\n\r\n");
    assert.equal(get.status, 200, "an idempotent request is re-sent on a fresh connection");
    assert.equal(app.heads.filter((x) => x.startsWith("GET /again")).length, 2);
    await countersBackToZero(h);
  } finally {
    app.close();
  }
});

Deno.test("absolute-form: routed by and forwarded with the target's authority; Host required", async () => {
  await using h = startHarness();
  const seen: Array<{ host: string | null; url: string }> = [];
  await using app = startApp((req) => {
    seen.push({
      host: req.headers.get("host"),
      url: new URL(req.url).pathname + new URL(req.url).search,
    });
    return new Response("ok");
  });
  h.setRoutes([ROUTE]);
  h.setEndpoints(KEY, [app.port]);
  const a = await rawRequest(
    h.port,
    "GET http://app.test/x?y=1 HTTP/1.1\r\nHost: evil.test\r\n\r\n",
  );
  assert.equal(a.status, 200);
  const b = await rawRequest(h.port, "GET http://app.test?x=1 HTTP/1.1\r\nHost: app.test\r\n\r\n");
  assert.equal(b.status, 200);
  assert.deepEqual(seen, [{ host: "app.test", url: "/x?y=1" }, { host: "app.test", url: "/?x=1" }]);
  const noHost = await rawRequest(h.port, "GET http://app.test/ HTTP/1.1\r\n\r\n");
  assert.equal(noHost.status, 400);
  await countersBackToZero(h);
});

Deno.test("transfer codings: gzip, chunked is 501; a malformed chunked body is the client's 400, never forwarded", async () => {
  await using h = startHarness();
  const bodies: string[] = [];
  await using app = startApp(async (req) => {
    bodies.push(await req.text());
    return new Response("ok");
  });
  h.setRoutes([ROUTE]);
  h.setEndpoints(KEY, [app.port]);
  const gz = await rawRequest(
    h.port,
    "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
  );
  assert.equal(gz.status, 501);
  for (
    const body of [
      "5x\r\nhello\r\n0\r\n\r\n",
      "5\r\nhello\n0\r\n\r\n",
      "0\r\nContent-Length: 5\r\n\r\n",
    ]
  ) {
    const r = await rawRequest(
      h.port,
      `POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n${body}`,
    );
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(r.body, /malformed chunked request body/);
    assert.equal(r.headers.get("connection"), "close");
  }
  // The bad bytes arrive after a good chunk, while the app waits for the rest.
  using c = await RawClient.connect(h.port);
  await c.send(
    "POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
  );
  await new Promise((r) => setTimeout(r, 100));
  await c.send("zz\r\n");
  const late = await c.response();
  assert.equal(late.status, 400);
  assert.equal(bodies.length, 0, "no malformed body reached the app whole");
  assert.ok(
    h.logs.some((l) => l.includes('"level":"warn"') && l.includes("malformed request body")),
  );
  assert.ok(!h.logs.some((l) => l.includes('"level":"error"')), "not logged as an error");
  const codes = h.metrics.snapshot().counts.filter(([route]) => route === KEY).map(([, , code]) =>
    code
  );
  assert.ok(codes.includes(400) && !codes.includes(502), `codes ${codes}`);
  await countersBackToZero(h);
});

Deno.test("RFC points: one Content-Length, HTTP/1.2 is 1.1, * only for OPTIONS, CONNECT's 405 says Allow", async () => {
  await using h = startHarness();
  const versions: string[] = [];
  const app = rawApp((req) => {
    versions.push(req.slice(0, req.indexOf("\r\n")));
    return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  });
  try {
    h.setRoutes([ROUTE]);
    h.setEndpoints(KEY, [app.port]);
    for (const cl of ["Content-Length: 5, 5", "Content-Length: 5\r\nContent-Length: 5"]) {
      const r = await rawRequest(h.port, `POST / HTTP/1.1\r\nHost: app.test\r\n${cl}\r\n\r\nhello`);
      assert.equal(r.status, 400, cl);
    }
    const v12 = await rawRequest(h.port, "GET /v HTTP/1.2\r\nHost: app.test\r\n\r\n");
    assert.equal(v12.status, 200);
    assert.deepEqual(versions, ["GET /v HTTP/1.1"]);
    assert.equal(
      (await rawRequest(h.port, "GET * HTTP/1.1\r\nHost: app.test\r\n\r\n")).status,
      400,
    );
    const connect = await rawRequest(
      h.port,
      "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n",
    );
    assert.equal(connect.status, 405);
    assert.match(connect.headers.get("allow") ?? "", /GET/);
    await countersBackToZero(h);
  } finally {
    app.close();
  }
});

Deno.test("response bodies: malformed chunked framing from the app is a 502 before the response starts, a close after", async () => {
  await using h = startHarness();
  const early = rawApp(() =>
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
  );
  try {
    h.setRoutes([ROUTE]);
    h.setEndpoints(KEY, [early.port]);
    const r = await rawRequest(h.port, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
    assert.equal(r.status, 502);
    assert.match(r.body, /malformed chunked framing/);
    assert.ok(!h.logs.some((l) => l.includes('"level":"error"')), "not logged as our error");
    await countersBackToZero(h);
  } finally {
    early.close();
  }
  // Valid first chunk with the head, junk later: the client can only learn it from the close.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = await listener.accept();
    await conn.read(new Uint8Array(4096));
    await conn.write(
      enc.encode("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
    );
    await new Promise((r) => setTimeout(r, 100));
    await conn.write(enc.encode("5\r\nworld!!\r\n0\r\n\r\n"));
    await new Promise((r) => setTimeout(r, 100));
    conn.close();
  })();
  try {
    h.setEndpoints(KEY, [(listener.addr as Deno.NetAddr).port]);
    using c = await RawClient.connect(h.port);
    await c.send("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
    await assert.rejects(() => c.response(), /closed in chunk/);
    await countersBackToZero(h);
  } finally {
    await serving;
    listener.close();
  }
});

Deno.test("h2c upstream: an early response before the whole body closes the client connection, not reuses it", async () => {
  const http2 = await import("node:http2");
  const server = http2.createServer((_req, res) => {
    // Answers without reading the request body.
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("early");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await using h = startHarness();
  try {
    h.setRoutes([ROUTE]);
    h.setEndpoints(KEY, [port], { h2c: true });
    using c = await RawClient.connect(h.port);
    await c.send("POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\n0123456789");
    const r = await c.response();
    assert.equal(r.status, 200);
    assert.equal(r.body, "early");
    assert.equal(r.headers.get("connection"), "close");
    assert.ok(await c.closedWithin(20_000), "the proxy closed the connection");
    await countersBackToZero(h);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

Deno.test("stuck exchange: an app flooding 1xx to a client that never reads ends at the response-head timeout", async () => {
  await using h = startHarness({ responseHeaderTimeoutMs: 1_000, idleTimeoutMs: 2_000 });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const interim = enc.encode(`HTTP/1.1 102 Processing\r\nX-Pad: ${"p".repeat(1000)}\r\n\r\n`);
  const flooding = (async () => {
    const conn = await listener.accept();
    await conn.read(new Uint8Array(4096));
    try {
      for (let i = 0; i < 20_000; i++) await conn.write(interim);
    } catch {
      // The proxy closed the connection: the flood is over.
    } finally {
      conn.close();
    }
  })();
  try {
    h.setRoutes([ROUTE]);
    h.setEndpoints(KEY, [(listener.addr as Deno.NetAddr).port]);
    using c = await RawClient.connect(h.port);
    await c.send("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
    const slot = h.routes.get(KEY)!.slot;
    await until(() => h.counters.concurrency(slot) === 1, "the exchange under way");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(h.counters.concurrency(slot), 1, "still flooding");
    // The client never reads; the exchange must still end.
    await countersBackToZero(h);
  } finally {
    listener.close();
    await flooding;
  }
});

Deno.test("upgrade: a request body still arriving when the app switches protocols reaches it once, before the tunnel's bytes", async () => {
  await using h = startHarness();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let received = "";
  const app = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(65536);
    let text = "";
    for (let i = 0; i < 1000 && !text.includes("\r\n\r\n"); i++) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += dec.decode(buf.subarray(0, n));
    }
    received = text.slice(text.indexOf("\r\n\r\n") + 4);
    await conn.write(
      enc.encode("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"),
    );
    for (let i = 0; i < 1000 && !received.includes("tunnel-2"); i++) {
      const n = await conn.read(buf);
      if (n === null) break;
      received += dec.decode(buf.subarray(0, n));
    }
    conn.close();
  })();
  try {
    h.setRoutes([ROUTE]);
    h.setEndpoints(KEY, [(listener.addr as Deno.NetAddr).port]);
    using c = await RawClient.connect(h.port);
    await c.send(
      "POST /u HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: foo\r\nContent-Length: 30\r\n\r\n",
    );
    await c.received("101 Switching Protocols");
    for (const part of ["AAAAAAAAAA", "BBBBBBBBBB", "CCCCCCCCCC", "tunnel-1", "tunnel-2"]) {
      await c.send(part);
      await new Promise((r) => setTimeout(r, 50));
    }
    await app;
    assert.equal(received, "AAAAAAAAAABBBBBBBBBBCCCCCCCCCCtunnel-1tunnel-2");
  } finally {
    listener.close();
  }
});

Deno.test("upgrade: a tunnel with no bytes either way for the idle timeout closes, and its counters return to 0", async () => {
  await using h = startHarness({ idleTimeoutMs: 500 });
  const app = rawApp(() =>
    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
  );
  try {
    h.setRoutes([ROUTE]);
    h.setEndpoints(KEY, [app.port]);
    using c = await RawClient.connect(h.port);
    await c.send(
      "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    await c.received("101 Switching Protocols");
    assert.ok(await c.closedWithin(20_000), "the idle tunnel was closed");
    await countersBackToZero(h);
  } finally {
    app.close();
  }
});

Deno.test("responses: a 204 never carries Content-Length on either path; HTTP/1.2 from an app is HTTP/1.1", async () => {
  await using h = startHarness();
  for (const extra of ["", "Keep-Alive: timeout=5\r\n"]) {
    const app = rawApp(() => `HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n${extra}\r\n`);
    try {
      h.setRoutes([ROUTE]);
      h.setEndpoints(KEY, [app.port]);
      const r = await rawRequest(h.port, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
      assert.equal(r.status, 204);
      assert.equal(r.headers.get("content-length"), undefined, JSON.stringify(extra));
    } finally {
      app.close();
    }
  }
  const v12 = rawApp(() => "HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok");
  try {
    h.setEndpoints(KEY, [v12.port]);
    const r = await rawRequest(h.port, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n");
    assert.equal(r.status, 200);
    assert.equal(r.body, "ok");
    assert.match(r.head, /^HTTP\/1\.1 200 OK\r\n/);
  } finally {
    v12.close();
  }
  await countersBackToZero(h);
});
