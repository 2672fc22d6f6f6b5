/**
 * Attacks on the HTTP/2 data plane as a hostile client (and as a hostile
 * h2c app), over real loopback sockets. Each test asserts what RFC 9113 /
 * RFC 7541 or safety requires; a failing one is a finding (named in its
 * first comment).
 */
import assert from "node:assert/strict";
import {
  dataFrame,
  ErrorCode,
  Flag,
  frame,
  FRAME_HEADER,
  FrameType,
  headersFrames,
  PREFACE,
  read31,
  read32,
  rstFrame,
  SETTINGS_ACK,
  settingsFrame,
  windowUpdateFrame,
} from "./h2_frames.ts";
import { type RawFrame, RawH2, rstCodeOf } from "./h2_testing.ts";
import { HpackDecoder, HpackEncoder } from "./hpack.ts";
import { RawClient, startApp, startHarness, until } from "./proxy_testing.ts";

const KEY = "default/web";
const te = new TextEncoder();
const td = new TextDecoder();

function req(path = "/", method = "GET"): Array<[string, string]> {
  return [[":method", method], [":scheme", "http"], [":path", path], [":authority", "web.test"]];
}

/** A harness with one HTTP/1.1 app that counts requests; /slow waits for the gate. */
function setup(config: Parameters<typeof startHarness>[0] = {}) {
  const h = startHarness(config);
  const seen: string[] = [];
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => (release = r));
  const app = startApp(async (r) => {
    const u = new URL(r.url);
    seen.push(u.pathname);
    if (u.pathname === "/slow") await gate;
    if (u.pathname === "/echo") return new Response(await r.text());
    return new Response("ok");
  });
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test"] } }]);
  h.setEndpoints(KEY, [app.port]);
  return {
    h,
    seen,
    async [Symbol.asyncDispose]() {
      release();
      await h.close();
      await app.shutdown();
    },
  };
}

/** The first frame matching, reading at most `ms`. */
async function first(c: RawH2, pred: (f: RawFrame) => boolean, ms = 3_000) {
  return (await c.until(pred, ms)).hit;
}

// ---- a raw h2c app: a frame-level server whose answers a test scripts ----

interface RawApp extends AsyncDisposable {
  port: number;
  /** Every frame the proxy sent to the app. */
  frames: RawFrame[];
}

type Responder = (
  sid: number,
  fields: Array<[string, string]>,
  send: (b: Uint8Array) => void,
  enc: HpackEncoder,
) => void;

function startRawH2App(respond: Responder, settings: Array<[number, number]> = []): RawApp {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const frames: RawFrame[] = [];
  const conns = new Set<Deno.Conn>();
  const loop = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      void serveRaw(conn, frames, respond, settings).catch(() => {}).finally(() =>
        conns.delete(conn)
      );
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    frames,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // Closed.
        }
      }
      await loop;
    },
  };
}

async function serveRaw(
  conn: Deno.Conn,
  frames: RawFrame[],
  respond: Responder,
  settings: Array<[number, number]>,
) {
  const enc = new HpackEncoder();
  const dec = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 1 << 20 });
  const out: Uint8Array[] = [];
  let writing = Promise.resolve();
  const send = (b: Uint8Array) => {
    out.push(b);
    writing = writing.then(async () => {
      const x = out.shift()!;
      let off = 0;
      while (off < x.length) off += await conn.write(x.subarray(off));
    }).catch(() => {});
  };
  send(settingsFrame(settings));
  let buf = new Uint8Array(0);
  let prefaceLeft = PREFACE.length;
  const chunk = new Uint8Array(65536);
  for (let rounds = 0; rounds < 100_000; rounds++) {
    const n = await conn.read(chunk);
    if (n === null) return;
    const nb = new Uint8Array(buf.length + n);
    nb.set(buf);
    nb.set(chunk.subarray(0, n), buf.length);
    buf = nb;
    if (prefaceLeft > 0) {
      if (buf.length < prefaceLeft) continue;
      buf = buf.slice(prefaceLeft);
      prefaceLeft = 0;
    }
    while (buf.length >= FRAME_HEADER) {
      const len = (buf[0]! << 16) | (buf[1]! << 8) | buf[2]!;
      if (buf.length < FRAME_HEADER + len) break;
      const f: RawFrame = {
        type: buf[3]!,
        flags: buf[4]!,
        sid: read31(buf, 5),
        payload: buf.slice(FRAME_HEADER, FRAME_HEADER + len),
      };
      buf = buf.slice(FRAME_HEADER + len);
      frames.push(f);
      if (f.type === FrameType.Settings && (f.flags & Flag.Ack) === 0) send(SETTINGS_ACK);
      if (f.type === FrameType.Headers) {
        // Tests send small single-frame blocks; padding/priority are not used by the proxy.
        const { fields } = dec.decode(f.payload);
        respond(f.sid, fields, send, enc);
      }
    }
  }
}

function hdrs(enc: HpackEncoder, sid: number, fields: Array<[string, string]>, end: boolean) {
  return headersFrames(sid, enc.encode(fields), end, 16_384);
}

// ============================================================================
// 1. Smuggling and mixing
// ============================================================================

Deno.test("attack h2c app: trailers without END_STREAM then more DATA must be a stream error, not bytes after the message", async () => {
  // Finding: the client role accepts a second HEADERS block without END_STREAM (RFC 9113 8.1: trailers end the stream) and keeps relaying DATA after it.
  await using h = startHarness();
  await using app = startRawH2App((sid, fields, send, enc) => {
    const path = fields.find(([k]) => k === ":path")?.[1];
    if (path === "/evil") {
      send(hdrs(enc, sid, [[":status", "200"]], false));
      send(dataFrame(sid, te.encode("a"), false));
      send(hdrs(enc, sid, [["x-trailer", "1"]], false));
      send(
        dataFrame(sid, te.encode("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nEVIL!"), true),
      );
    } else {
      send(hdrs(enc, sid, [[":status", "200"], ["content-length", "4"]], false));
      send(dataFrame(sid, te.encode("good"), true));
    }
  });
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test"] } }]);
  h.setEndpoints(KEY, [app.port], { h2c: true });
  using c = await RawClient.connect(h.port);
  await c.send("GET /evil HTTP/1.1\r\nHost: web.test\r\n\r\n");
  // The response is cut off (the connection closes mid-body): that is the safe outcome.
  const r1 = await c.response().catch(() => null);
  await c.send("GET /good HTTP/1.1\r\nHost: web.test\r\n\r\n").catch(() => {});
  const r2 = c.closed ? null : await c.response().catch(() => null);
  assert.ok(
    !(r1?.body ?? "").includes("EVIL") && r2?.body !== "EVIL!",
    "no second message smuggled",
  );
  // What RFC 9113 8.1 requires of the proxy: the app's stream is reset with PROTOCOL_ERROR.
  await until(
    () =>
      app.frames.some((f) => f.type === FrameType.RstStream && rstCodeOf(f) === ErrorCode.Protocol),
    "RST_STREAM PROTOCOL_ERROR to the app",
    3_000,
  );
});

Deno.test("attack h2c app: a HEAD/204 answer carrying DATA does not reach an HTTP/1.1 keep-alive client as a second response", async () => {
  await using h = startHarness();
  await using app = startRawH2App((sid, fields, send, enc) => {
    const path = fields.find(([k]) => k === ":path")?.[1];
    const smuggled = te.encode("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nEVIL!");
    if (path === "/head") {
      send(
        hdrs(enc, sid, [[":status", "200"], ["content-length", String(smuggled.length)]], false),
      );
      send(dataFrame(sid, smuggled, true));
    } else if (path === "/nocontent") {
      send(hdrs(enc, sid, [[":status", "204"]], false));
      send(dataFrame(sid, smuggled, true));
    } else {
      send(hdrs(enc, sid, [[":status", "200"], ["content-length", "4"]], false));
      send(dataFrame(sid, te.encode("good"), true));
    }
  });
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test"] } }]);
  h.setEndpoints(KEY, [app.port], { h2c: true });
  using c = await RawClient.connect(h.port);
  await c.send("HEAD /head HTTP/1.1\r\nHost: web.test\r\n\r\n");
  const r1 = await c.response({ head: true });
  assert.equal(r1.status, 200);
  await c.send("GET /nocontent HTTP/1.1\r\nHost: web.test\r\n\r\n");
  const r2 = await c.response();
  assert.equal(r2.status, 204);
  await c.send("GET /good HTTP/1.1\r\nHost: web.test\r\n\r\n");
  const r3 = await c.response();
  assert.equal(r3.body, "good");
});

Deno.test("attack h2c app: CR/LF or NUL in a response field value is refused (502), never written as HTTP/1.1", async () => {
  await using h = startHarness();
  await using app = startRawH2App((sid, fields, send, enc) => {
    const path = fields.find(([k]) => k === ":path")?.[1];
    const v = path === "/lf" ? "a\r\nset-cookie: stolen=1" : path === "/nul" ? "a\0b" : "ok";
    send(hdrs(enc, sid, [[":status", "200"], ["x-v", v], ["content-length", "0"]], true));
  });
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test"] } }]);
  h.setEndpoints(KEY, [app.port], { h2c: true });
  for (const p of ["/lf", "/nul"]) {
    using c = await RawClient.connect(h.port);
    await c.send(`GET ${p} HTTP/1.1\r\nHost: web.test\r\n\r\n`);
    const r = await c.response();
    assert.equal(r.status, 502, p);
    assert.ok(!r.head.toLowerCase().includes("stolen"));
  }
});

Deno.test("attack h2c app: a 1xx with END_STREAM is malformed: the client gets a 502 promptly, not a hang", async () => {
  // Finding: an interim response that ends the stream leaves the exchange waiting for a final response that can never come.
  await using h = startHarness({ responseHeaderTimeoutMs: 8_000 });
  await using app = startRawH2App((sid, _f, send, enc) => {
    send(hdrs(enc, sid, [[":status", "103"], ["link", "</a>; rel=preload"]], true));
  });
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test"] } }]);
  h.setEndpoints(KEY, [app.port], { h2c: true });
  using c = await RawClient.connect(h.port);
  await c.send("GET / HTTP/1.1\r\nHost: web.test\r\n\r\n");
  const t0 = Date.now();
  const status = await Promise.race([
    (async () => {
      for (let i = 0; i < 3; i++) {
        const r = await c.response();
        if (r.status >= 200) return r.status;
      }
      return -1;
    })(),
    new Promise<number>((r) => setTimeout(() => r(0), 3_000)),
  ]);
  c.conn.close();
  assert.equal(status, 502, `final status within 3 s (got ${status} after ${Date.now() - t0} ms)`);
});

Deno.test("attack h2 client: content-length above the DATA, ended by trailers, is RST_STREAM PROTOCOL_ERROR", async () => {
  // Finding: trailers end a content-length request without checking the DATA total (RFC 9113 8.1.1).
  await using s = setup();
  const c = await RawH2.connect(s.h.port);
  try {
    await c.headers(1, [...req("/echo", "POST"), ["content-length", "10"]], false);
    await c.write(dataFrame(1, te.encode("12345"), false));
    await c.headers(1, [["x-t", "1"]], true);
    const hit = await first(c, (f) => f.sid === 1 && f.type === FrameType.RstStream, 3_000);
    assert.ok(hit !== null, "the stream is reset");
    assert.equal(rstCodeOf(hit), ErrorCode.Protocol);
  } finally {
    c.close();
  }
});

Deno.test("attack h2 client: a request smuggled in :path, header values, cookies or CONNECT never reaches the app", async () => {
  await using s = setup();
  const c = await RawH2.connect(s.h.port);
  try {
    const attempts: Array<Array<[string, string]>> = [
      [[":method", "GET"], [":scheme", "http"], [
        ":path",
        "/a HTTP/1.1\r\nhost: web.test\r\n\r\nGET /smuggled",
      ], [":authority", "web.test"]],
      [...req("/b"), ["x", "v\r\n\r\nGET /smuggled HTTP/1.1"]],
      [...req("/c"), ["cookie", "a=1\r\n\r\nGET /smuggled HTTP/1.1"]],
      [...req("/d"), ["x\r\nevil", "1"]],
      [[":method", "CONNECT"], [":authority", "web.test:80 HTTP/1.1\r\n\r\nGET /smuggled"]],
      [[":method", "GET /smuggled"], [":scheme", "http"], [":path", "/e"], [
        ":authority",
        "web.test",
      ]],
      [[":method", "GET"], [":scheme", "http"], [":path", "/f"], [
        ":authority",
        "web.test\r\n\r\nGET /smuggled HTTP/1.1",
      ]],
      [...req("/g", "POST"), ["content-length", "0"], ["content-length", "40"]],
      [...req("/h", "POST"), ["transfer-encoding", "chunked"]],
    ];
    let sid = 1;
    for (const a of attempts) {
      await c.headers(sid, a, true);
      sid += 2;
    }
    // A normal request last: its answer means the others were processed.
    await c.headers(sid, req("/last"), true);
    await first(c, (f) => f.sid === sid && f.type === FrameType.Headers, 5_000);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(!s.seen.includes("/smuggled"), `app saw ${s.seen.join(",")}`);
    assert.deepEqual(s.seen.filter((p) => p !== "/last"), []);
  } finally {
    c.close();
  }
});

Deno.test("attack h2 client: two streams' bodies stay on their own exchanges (interleaved DATA)", async () => {
  await using s = setup();
  const c = await RawH2.connect(s.h.port);
  try {
    await c.headers(1, req("/echo", "POST"), false);
    await c.headers(3, req("/echo", "POST"), false);
    for (let i = 0; i < 20; i++) {
      await c.write(dataFrame(1, te.encode("A".repeat(100)), false));
      await c.write(dataFrame(3, te.encode("B".repeat(100)), false));
    }
    await c.write(dataFrame(1, new Uint8Array(0), true));
    await c.write(dataFrame(3, new Uint8Array(0), true));
    const body = new Map<number, string>([[1, ""], [3, ""]]);
    const ended = new Set<number>();
    const stop = Date.now() + 5_000;
    while (ended.size < 2 && Date.now() < stop) {
      const f = await c.next(stop - Date.now());
      if (f === null) break;
      if (f.type === FrameType.Data) body.set(f.sid, body.get(f.sid)! + td.decode(f.payload));
      if (
        (f.flags & Flag.EndStream) !== 0 &&
        (f.type === FrameType.Data || f.type === FrameType.Headers)
      ) {
        ended.add(f.sid);
      }
    }
    assert.equal(body.get(1), "A".repeat(2000));
    assert.equal(body.get(3), "B".repeat(2000));
  } finally {
    c.close();
  }
});

// ============================================================================
// 2. Resource exhaustion
// ============================================================================

// Not run: the proxy now gives connection window back only as it passes bodies on (64 KiB stream
// windows, 1 MiB per connection), but here the app's sockets take the bodies, so what the test
// counts as unread is in the kernel's buffers; it needs a held route to measure what it names.
Deno.test({
  name:
    "attack h2 client: the connection window is given back only as bodies are consumed (memory per connection)",
  ignore: true,
}, async () => {
  // Finding: #ackConn returns connection window on receipt, so unread bodies can reach streams × stream window (100 × 256 KiB = 25 MiB) per connection, not the 1 MiB connection window.
  await using s = setup();
  const c = await RawH2.connect(s.h.port);
  try {
    // Our own SETTINGS: a large window so the server's answers never block on us.
    const streams = 40;
    for (let i = 0; i < streams; i++) {
      await c.headers(1 + 2 * i, req("/slow", "POST"), false);
    }
    // Fill each stream's 256 KiB window with bytes the held app never reads.
    const piece = new Uint8Array(16_384);
    let granted = 0;
    let sent = 0;
    const reader = (async () => {
      const stop = Date.now() + 6_000;
      while (Date.now() < stop) {
        const f = await c.next(stop - Date.now());
        if (f === null) return;
        if (f.type === FrameType.WindowUpdate && f.sid === 0) granted += read31(f.payload, 0);
        if (f.type === FrameType.Goaway) return;
      }
    })();
    outer: for (let i = 0; i < streams; i++) {
      for (let k = 0; k < 16; k++) {
        // Stay within the connection window the server has granted (1 MiB initially).
        if (sent + piece.length > 1024 * 1024 + granted) break outer;
        await c.write(dataFrame(1 + 2 * i, piece, false));
        sent += piece.length;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, 300));
    c.close();
    await reader;
    // Held requests, bodies unread: the server must not have granted more than its connection window.
    assert.ok(
      sent <= 2 * 1024 * 1024,
      `server accepted ${sent} bytes of unread request bodies on one connection`,
    );
  } finally {
    c.close();
  }
});

Deno.test("attack h2 client: a WINDOW_UPDATE flood on closed streams costs budget (GOAWAY ENHANCE_YOUR_CALM)", async () => {
  // Finding: WINDOW_UPDATE (like DATA and HEADERS on closed streams) is not charged to the budget for frames that do no work.
  await using s = setup();
  const c = await RawH2.connect(s.h.port);
  try {
    await c.headers(1, req("/"), true);
    await first(c, (f) => f.sid === 1 && (f.flags & Flag.EndStream) !== 0, 3_000);
    const one = windowUpdateFrame(1, 1);
    const batch = new Uint8Array(one.length * 1_000);
    for (let i = 0; i < 1_000; i++) batch.set(one, i * one.length);
    try {
      for (let i = 0; i < 20; i++) await c.write(batch);
    } catch {
      // Closed while we write: what we want.
    }
    assert.equal(await c.goaway(3_000), ErrorCode.EnhanceYourCalm);
  } finally {
    c.close();
  }
});

Deno.test("attack h2 client: PINGs alone do not keep a connection with no streams open past the idle timeout", async () => {
  // Finding: every frame (PING included) resets lastActivity, so a client holds an idle connection forever at 1 PING per timeout.
  await using s = setup({ idleTimeoutMs: 600 });
  const c = await RawH2.connect(s.h.port);
  try {
    let code: number | null = null;
    for (let i = 0; i < 12 && code === null; i++) {
      await c.write(frame(FrameType.Ping, 0, 0, new Uint8Array(8))).catch(() => {});
      const { hit } = await c.until((f) => f.type === FrameType.Goaway, 250);
      if (hit !== null) code = read32(hit.payload, 4);
    }
    assert.equal(
      code,
      ErrorCode.NoError,
      "GOAWAY at the idle timeout (3 s of PINGs, timeout 0.6 s)",
    );
  } finally {
    c.close();
  }
});

Deno.test("attack h2 client: many connections each at max streams with never-finished bodies are all cleaned up", async () => {
  await using s = setup({ idleTimeoutMs: 1_000 });
  const conns: RawH2[] = [];
  try {
    for (let k = 0; k < 10; k++) {
      const c = await RawH2.connect(s.h.port);
      conns.push(c);
      const batch: Uint8Array[] = [];
      for (let i = 0; i < 100; i++) {
        batch.push(headersFrames(1 + 2 * i, c.enc.encode(req("/echo", "POST")), false, 16_384));
      }
      for (const b of batch) await c.write(b);
    }
    for (const c of conns) c.close();
    await until(() => s.h.proxy.connections === 0, "connections closed", 8_000);
    const slot = s.h.routes.get(KEY)!.slot;
    await until(() => s.h.counters.concurrency(slot) === 0, "concurrency back to 0", 8_000);
  } finally {
    for (const c of conns) c.close();
  }
});

// ============================================================================
// 3. Protocol correctness (RFC 9113)
// ============================================================================

Deno.test("rfc h2: a new stream id below the highest one opened is a connection error PROTOCOL_ERROR (5.1.1)", async () => {
  // Finding: HEADERS on a lower, never-used stream id is ignored silently instead of GOAWAY PROTOCOL_ERROR.
  await using s = setup();
  const c = await RawH2.connect(s.h.port);
  try {
    await c.headers(5, req("/"), true);
    await first(c, (f) => f.sid === 5 && (f.flags & Flag.EndStream) !== 0, 3_000);
    await c.headers(3, req("/"), true);
    assert.equal(await c.goaway(2_000), ErrorCode.Protocol);
  } finally {
    c.close();
  }
});

Deno.test("rfc h2: HEADERS depending on its own stream is a stream error and the request never reaches the app (5.3.1)", async () => {
  // Finding: the self-dependency sends RST_STREAM but the request is dispatched anyway, and its response follows the RST.
  await using s = setup();
  const c = await RawH2.connect(s.h.port);
  try {
    const block = c.enc.encode(req("/selfdep"));
    const p = new Uint8Array(5 + block.length);
    new DataView(p.buffer).setUint32(0, 1); // depends on stream 1, itself
    p[4] = 15;
    p.set(block, 5);
    await c.frame(FrameType.Headers, Flag.EndHeaders | Flag.EndStream | Flag.Priority, 1, p);
    const { hit, seen } = await c.until(
      (f) => f.sid === 1 && f.type === FrameType.RstStream,
      2_000,
    );
    assert.ok(hit !== null);
    assert.equal(rstCodeOf(hit), ErrorCode.Protocol);
    const after = await c.until((f) => f.sid === 1 && f.type === FrameType.Headers, 500);
    assert.equal(after.hit, null, "no response HEADERS after the RST_STREAM");
    assert.ok(!seen.some((f) => f.sid === 1 && f.type === FrameType.Headers));
    assert.ok(!s.seen.includes("/selfdep"), "the app was not asked");
  } finally {
    c.close();
  }
});

Deno.test("rfc h2: a PRIORITY frame for an idle stream with a bad length never gets RST_STREAM on an idle stream (5.1)", async () => {
  // Finding: a stream error on an idle stream is answered with RST_STREAM, which RFC 9113 5.1 forbids for idle streams (nghttp2 treats it as a connection error).
  await using s = setup();
  const c = await RawH2.connect(s.h.port);
  try {
    await c.frame(FrameType.Priority, 0, 7, new Uint8Array(4));
    const { hit } = await c.until(
      (f) => f.type === FrameType.RstStream || f.type === FrameType.Goaway,
      1_000,
    );
    // Either a connection error or nothing is allowed; RST_STREAM on idle stream 7 is not.
    assert.ok(
      hit === null || hit.type === FrameType.Goaway,
      `got RST_STREAM on idle stream ${hit?.sid}`,
    );
  } finally {
    c.close();
  }
});

Deno.test("rfc h2: frames after our GOAWAY: new streams are ignored, DATA on open ones still counted", async () => {
  await using s = setup();
  const c = await RawH2.connect(s.h.port);
  try {
    await c.headers(1, req("/echo", "POST"), false);
    await c.write(dataFrame(1, te.encode("abc"), false));
    // Let the server take stream 1 first: a GOAWAY before it would rightly refuse it.
    await new Promise((r) => setTimeout(r, 200));
    s.h.proxy.recycle();
    await c.until((f) => f.type === FrameType.Goaway, 1_000);
    await c.headers(3, req("/after"), true);
    await c.write(dataFrame(1, te.encode("def"), true));
    const { seen } = await c.until((f) => f.sid === 1 && (f.flags & Flag.EndStream) !== 0, 3_000);
    assert.ok(!seen.some((f) => f.sid === 3 && f.type === FrameType.Headers));
    assert.ok(!s.seen.includes("/after"));
  } finally {
    c.close();
  }
});

Deno.test("rfc h2: DATA after the client's END_STREAM (half-closed remote) is STREAM_CLOSED (5.1)", async () => {
  await using s = setup();
  const c = await RawH2.connect(s.h.port);
  try {
    await c.headers(1, req("/slow"), true);
    await new Promise((r) => setTimeout(r, 200));
    await c.write(dataFrame(1, te.encode("late"), false));
    const { hit } = await c.until(
      (f) => (f.type === FrameType.RstStream && f.sid === 1) || f.type === FrameType.Goaway,
      1_000,
    );
    assert.ok(hit !== null, "RST_STREAM or GOAWAY");
    const code = hit.type === FrameType.Goaway ? read32(hit.payload, 4) : rstCodeOf(hit);
    assert.equal(code, ErrorCode.StreamClosed);
  } finally {
    c.close();
  }
});

Deno.test("rfc h2: RST_STREAM on an idle stream and even stream ids are connection errors", async () => {
  await using s = setup();
  for (const bad of [rstFrame(9, ErrorCode.Cancel), null]) {
    const c = await RawH2.connect(s.h.port);
    try {
      if (bad !== null) await c.write(bad);
      else await c.headers(2, req("/"), true);
      assert.equal(await c.goaway(2_000), ErrorCode.Protocol);
    } finally {
      c.close();
    }
  }
});

// ============================================================================
// More: h2c upstream multiplexing, a client that never reads
// ============================================================================

Deno.test("attack h2c app: responses on one multiplexed app connection reach their own clients", async () => {
  await using h = startHarness();
  await using app = startRawH2App((sid, fields, send, enc) => {
    const path = fields.find(([k]) => k === ":path")?.[1] ?? "";
    // Answer in reverse order of arrival: the later request first.
    const delay = path === "/first" ? 300 : 20;
    setTimeout(() => {
      send(hdrs(enc, sid, [[":status", "200"], ["content-length", String(path.length)]], false));
      send(dataFrame(sid, te.encode(path), true));
    }, delay);
  });
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test"] } }]);
  h.setEndpoints(KEY, [app.port], { h2c: true });
  using a = await RawClient.connect(h.port);
  using b = await RawClient.connect(h.port);
  await a.send("GET /first HTTP/1.1\r\nHost: web.test\r\n\r\n");
  await new Promise((r) => setTimeout(r, 50));
  await b.send("GET /second HTTP/1.1\r\nHost: web.test\r\n\r\n");
  const [ra, rb] = await Promise.all([a.response(), b.response()]);
  assert.equal(ra.body, "/first");
  assert.equal(rb.body, "/second");
  // Both went over one app connection (multiplexed).
  const heads = app.frames.filter((f) => f.type === FrameType.Headers).map((f) => f.sid);
  assert.deepEqual(heads.sort(), [1, 3]);
});

async function burstAgainstOneStreamApp(warm: boolean): Promise<void> {
  await using h = startHarness();
  // The limit is per connection (RFC 9113 5.1.2): count streams per connection.
  const active = new Map<unknown, number>();
  await using app = startRawH2App((sid, _f, send, enc) => {
    const n = active.get(send) ?? 0;
    if (n >= 1) {
      send(rstFrame(sid, ErrorCode.RefusedStream));
      return;
    }
    active.set(send, n + 1);
    setTimeout(() => {
      active.set(send, active.get(send)! - 1);
      send(hdrs(enc, sid, [[":status", "200"], ["content-length", "2"]], false));
      send(dataFrame(sid, te.encode("ok"), true));
    }, 100);
  }, [[0x3, 1]]);
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test"] } }]);
  h.setEndpoints(KEY, [app.port], { h2c: true });
  // Warm: the app connection exists and its SETTINGS (1 stream) are known before the burst.
  if (warm) {
    using w = await RawClient.connect(h.port);
    await w.send("GET / HTTP/1.1\r\nHost: web.test\r\n\r\n");
    assert.equal((await w.response()).status, 200);
  }
  const clients = await Promise.all([0, 1, 2, 3].map(() => RawClient.connect(h.port)));
  try {
    await Promise.all(clients.map((c) => c.send("GET / HTTP/1.1\r\nHost: web.test\r\n\r\n")));
    const statuses = await Promise.all(clients.map((c) => c.response().then((r) => r.status)));
    assert.deepEqual(statuses, [200, 200, 200, 200]);
  } finally {
    for (const c of clients) c.conn.close();
  }
}

Deno.test("attack h2c app: SETTINGS_MAX_CONCURRENT_STREAMS=1, a burst on a warm connection: every client is answered 200", async () => {
  await burstAgainstOneStreamApp(true);
});

Deno.test("attack h2c app: SETTINGS_MAX_CONCURRENT_STREAMS=1, a burst on a new connection: every client is answered 200", async () => {
  // Streams opened before the app's SETTINGS arrive could go past its limit.
  await burstAgainstOneStreamApp(false);
});

Deno.test("attack h2 client: a huge window and no reading while the app streams 64 MiB: memory stays bounded", async () => {
  const h = startHarness();
  const app = startApp(() => {
    let n = 0;
    const piece = new Uint8Array(64 * 1024);
    return new Response(
      new ReadableStream({
        pull(c) {
          if (n++ >= 1024) c.close();
          else c.enqueue(piece);
        },
      }),
    );
  });
  h.setRoutes([{ name: "web", spec: { hosts: ["web.test"] } }]);
  h.setEndpoints(KEY, [app.port]);
  const c = await RawH2.connect(h.port, { preface: false });
  try {
    await c.write(PREFACE);
    await c.write(settingsFrame([[0x4, 2 ** 31 - 1]]));
    await c.write(windowUpdateFrame(0, 2 ** 31 - 1 - 65_535));
    await c.write(SETTINGS_ACK);
    const before = Deno.memoryUsage().rss;
    for (let i = 0; i < 20; i++) await c.headers(1 + 2 * i, req("/big"), true);
    await new Promise((r) => setTimeout(r, 2_500));
    const grown = Deno.memoryUsage().rss - before;
    assert.ok(
      grown < 150 * 1024 * 1024,
      `rss grew ${grown >> 20} MiB with a client that does not read`,
    );
  } finally {
    c.close();
    await h.close();
    await app.shutdown();
  }
});

Deno.test("rfc h2: connection errors carry the code RFC 9113 / RFC 7541 name", async () => {
  await using s = setup();
  const cases: Array<[string, number, (c: RawH2) => Promise<void>]> = [
    ["HPACK integer overflow", ErrorCode.Compression, (c) =>
      c.frame(
        FrameType.Headers,
        Flag.EndHeaders | Flag.EndStream,
        1,
        new Uint8Array([0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
      )],
    [
      "HPACK index 0",
      ErrorCode.Compression,
      (c) =>
        c.frame(FrameType.Headers, Flag.EndHeaders | Flag.EndStream, 1, new Uint8Array([0x80])),
    ],
    [
      "HPACK index past the tables",
      ErrorCode.Compression,
      (c) =>
        c.frame(
          FrameType.Headers,
          Flag.EndHeaders | Flag.EndStream,
          1,
          new Uint8Array([0xff, 0x10]),
        ),
    ],
    [
      "table size update after a field",
      ErrorCode.Compression,
      (c) =>
        c.frame(
          FrameType.Headers,
          Flag.EndHeaders | Flag.EndStream,
          1,
          new Uint8Array([0x82, 0x20]),
        ),
    ],
    [
      "frame above 16 KiB",
      ErrorCode.FrameSize,
      (c) => c.frame(FrameType.Ping, 0, 0, new Uint8Array(20_000)),
    ],
    [
      "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
      ErrorCode.FlowControl,
      (c) => c.write(settingsFrame([[0x4, 2 ** 31]])),
    ],
    [
      "SETTINGS_MAX_FRAME_SIZE below 16384",
      ErrorCode.Protocol,
      (c) => c.write(settingsFrame([[0x5, 100]])),
    ],
    ["SETTINGS_ENABLE_PUSH 2", ErrorCode.Protocol, (c) => c.write(settingsFrame([[0x2, 2]]))],
    [
      "WINDOW_UPDATE of 0 on the connection",
      ErrorCode.Protocol,
      (c) => c.write(windowUpdateFrame(0, 0)),
    ],
    [
      "connection window overflow",
      ErrorCode.FlowControl,
      (c) => c.write(windowUpdateFrame(0, 2 ** 31 - 1)),
    ],
    [
      "DATA on an idle stream",
      ErrorCode.Protocol,
      (c) => c.write(dataFrame(11, te.encode("x"), false)),
    ],
    [
      "CONTINUATION without HEADERS",
      ErrorCode.Protocol,
      (c) => c.frame(FrameType.Continuation, Flag.EndHeaders, 1, new Uint8Array([0x82])),
    ],
    [
      "PUSH_PROMISE from a client",
      ErrorCode.Protocol,
      (c) => c.frame(FrameType.PushPromise, Flag.EndHeaders, 1, new Uint8Array([0, 0, 0, 2, 0x82])),
    ],
    [
      "SETTINGS ACK with a payload",
      ErrorCode.FrameSize,
      (c) => c.frame(FrameType.Settings, Flag.Ack, 0, new Uint8Array(6)),
    ],
  ];
  const wrong: string[] = [];
  for (const [what, code, attack] of cases) {
    const c = await RawH2.connect(s.h.port);
    try {
      await attack(c).catch(() => {});
      const got = await c.goaway(2_000);
      if (got !== code) wrong.push(`${what}: GOAWAY ${got}, expected ${code}`);
    } finally {
      c.close();
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("rfc h2: stream errors carry the right code and leave the connection serving", async () => {
  await using s = setup();
  const c = await RawH2.connect(s.h.port);
  try {
    // DATA past a stream's 256 KiB window: RST_STREAM FLOW_CONTROL_ERROR.
    await c.headers(1, req("/slow", "POST"), false);
    for (let i = 0; i < 17; i++) await c.write(dataFrame(1, new Uint8Array(16_384), false));
    const a = await first(c, (f) => f.sid === 1 && f.type === FrameType.RstStream);
    assert.equal(a && rstCodeOf(a), ErrorCode.FlowControl);
    // WINDOW_UPDATE of 0 on an open stream: RST_STREAM PROTOCOL_ERROR.
    await c.headers(3, req("/slow"), true);
    await c.write(windowUpdateFrame(3, 0));
    const b = await first(c, (f) => f.sid === 3 && f.type === FrameType.RstStream);
    assert.equal(b && rstCodeOf(b), ErrorCode.Protocol);
    // Trailers without END_STREAM: RST_STREAM PROTOCOL_ERROR.
    await c.headers(5, req("/slow", "POST"), false);
    await c.headers(5, [["x-t", "1"]], false);
    const d = await first(c, (f) => f.sid === 5 && f.type === FrameType.RstStream);
    assert.equal(d && rstCodeOf(d), ErrorCode.Protocol);
    // Uppercase field name: a malformed request, RST_STREAM PROTOCOL_ERROR.
    await c.headers(7, [...req("/"), ["X-Upper", "1"]], true);
    const e = await first(c, (f) => f.sid === 7 && f.type === FrameType.RstStream);
    assert.equal(e && rstCodeOf(e), ErrorCode.Protocol);
    await c.headers(9, req("/"), true);
    const ok = await first(c, (f) => f.sid === 9 && f.type === FrameType.Headers);
    assert.ok(ok !== null, "the connection still serves");
  } finally {
    c.close();
  }
});
