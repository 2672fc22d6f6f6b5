/**
 * Hostile HTTP/2 clients against the data plane, frame by frame over real
 * sockets: each attack ends in GOAWAY or RST_STREAM with the code RFC 9113
 * (and the CVEs' fixes) call for, counters return to 0, memory stays
 * bounded, and the proxy goes on serving other clients.
 */
import assert from "node:assert/strict";
import { ErrorCode, Flag, FrameType, PREFACE, Setting, settingsFrame } from "./h2_frames.ts";
import { nodeRequests, RawH2, rstCodeOf } from "./h2_testing.ts";
import { type Harness, RawClient, startApp, startHarness, until } from "./proxy_testing.ts";

const KEY = "default/web";
const GET: Array<[string, string]> = [
  [":method", "GET"],
  [":scheme", "http"],
  [":path", "/"],
  [":authority", "web.test"],
];

function setup(config: Parameters<typeof startHarness>[0] = {}) {
  const h = startHarness(config);
  let gate: () => void = () => {};
  let gated = false;
  const app = startApp(async (req) => {
    if (new URL(req.url).pathname === "/slow" && gated) {
      await new Promise<void>((r) => (gate = r));
    }
    return new Response("x".repeat(100));
  });
  h.setRoutes([
    { name: "web", spec: { hosts: ["web.test"] } },
    { name: "cold", spec: { hosts: ["cold.test"] } },
  ]);
  h.setEndpoints(KEY, [app.port]);
  return {
    h,
    app,
    gate: (on: boolean) => {
      gated = on;
      if (!on) gate();
    },
    async [Symbol.asyncDispose]() {
      gate();
      await h.close();
      await app.shutdown();
    },
  };
}

/** Another client is still served, over HTTP/2 and HTTP/1.1; every counter is back to 0. */
async function stillServing(h: Harness): Promise<void> {
  const [r] = await nodeRequests(`http://127.0.0.1:${h.port}`, [
    { headers: { ":path": "/", ":authority": "web.test" } },
  ]);
  assert.equal(r!.status, 200);
  {
    using c = await RawClient.connect(h.port);
    await c.send("GET / HTTP/1.1\r\nHost: web.test\r\n\r\n");
    assert.equal((await c.response()).status, 200);
  }
  for (const key of [KEY, "default/cold"]) {
    const slot = h.routes.get(key)!.slot;
    await until(() => h.counters.concurrency(slot) === 0, `${key} concurrency back to 0`);
    assert.equal(h.counters.held(slot), 0);
  }
  await until(() => h.proxy.connections === 0, `connections closed (${h.proxy.connections} open)`);
}

/** HPACK integer with an N-bit prefix (RFC 7541 5.1). */
function hpackInt(first: number, bits: number, v: number): number[] {
  const max = (1 << bits) - 1;
  if (v < max) return [first | v];
  const out = [first | max];
  v -= max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

function literalIndexed(name: string, value: string): number[] {
  const e = new TextEncoder();
  return [
    0x40,
    ...hpackInt(0, 7, name.length),
    ...e.encode(name),
    ...hpackInt(0, 7, value.length),
    ...e.encode(value),
  ];
}

Deno.test("hostile h2: rapid reset (HEADERS then RST_STREAM in a loop) ends in GOAWAY ENHANCE_YOUR_CALM", async () => {
  await using s = setup();
  s.gate(true);
  const c = await RawH2.connect(s.h.port);
  const before = Deno.memoryUsage().rss;
  const batch: Uint8Array[] = [];
  for (let i = 0, sid = 1; i < 5_000; i++, sid += 2) {
    const { headersFrames, rstFrame } = await import("./h2_frames.ts");
    batch.push(
      headersFrames(
        sid,
        c.enc.encode([...GET.slice(0, 2), [":path", "/slow"], GET[3]!]),
        true,
        16_384,
      ),
    );
    batch.push(rstFrame(sid, ErrorCode.Cancel));
  }
  try {
    for (const b of batch) await c.write(b);
  } catch {
    // The server may close while we are still writing.
  }
  assert.equal(await c.goaway(), ErrorCode.EnhanceYourCalm);
  c.close();
  s.gate(false);
  assert.ok(Deno.memoryUsage().rss - before < 200 * 1024 * 1024, "memory stays bounded");
  await stillServing(s.h);
});

Deno.test("hostile h2: CONTINUATION flood and an oversized header block end in GOAWAY", async () => {
  await using s = setup();
  {
    const c = await RawH2.connect(s.h.port);
    await c.frame(FrameType.Headers, 0, 1, new Uint8Array([0x82]));
    try {
      for (let i = 0; i < 10_000; i++) await c.frame(FrameType.Continuation, 0, 1);
    } catch {
      // Closed under us.
    }
    assert.equal(await c.goaway(), ErrorCode.EnhanceYourCalm);
    c.close();
  }
  {
    const c = await RawH2.connect(s.h.port);
    await c.frame(FrameType.Headers, 0, 1, new Uint8Array(16_384).fill(0x82));
    try {
      for (let i = 0; i < 10; i++) {
        await c.frame(FrameType.Continuation, 0, 1, new Uint8Array(16_384).fill(0x82));
      }
    } catch {
      // Closed under us.
    }
    assert.equal(await c.goaway(), ErrorCode.EnhanceYourCalm);
    c.close();
  }
  {
    // A CONTINUATION with no HEADERS before it.
    const c = await RawH2.connect(s.h.port);
    await c.frame(FrameType.Continuation, Flag.EndHeaders, 1, new Uint8Array([0x82]));
    assert.equal(await c.goaway(), ErrorCode.Protocol);
    c.close();
  }
  await stillServing(s.h);
});

Deno.test("hostile h2: HPACK bomb is a 431 on its stream; a table size above ours is COMPRESSION_ERROR", async () => {
  await using s = setup();
  {
    const c = await RawH2.connect(s.h.port);
    // A 4000-byte entry into the dynamic table, then referenced 100 times: 400 KB from 4 KB.
    const block = [
      0x82,
      0x86,
      0x84,
      ...literalIndexed(":authority", "web.test"),
      ...literalIndexed("x-bomb", "b".repeat(4000)),
    ];
    for (let i = 0; i < 100; i++) block.push(0x80 | 62);
    await c.frame(FrameType.Headers, Flag.EndHeaders | Flag.EndStream, 1, new Uint8Array(block));
    const { hit } = await c.until((f) => f.type === FrameType.Headers && f.sid === 1);
    assert.ok(hit, "a response on the stream");
    const fields = c.dec.decode(hit.payload).fields;
    assert.deepEqual(fields[0], [":status", "431"]);
    // The connection goes on: the table is still in step (":authority" is entry 63 now).
    await c.headers(3, GET);
    const { hit: ok } = await c.until((f) => f.type === FrameType.Headers && f.sid === 3);
    assert.ok(ok);
    assert.deepEqual(c.dec.decode(ok.payload).fields[0], [":status", "200"]);
    c.close();
  }
  {
    const c = await RawH2.connect(s.h.port);
    const update = hpackInt(0x20, 5, 1 << 20);
    await c.frame(
      FrameType.Headers,
      Flag.EndHeaders | Flag.EndStream,
      1,
      new Uint8Array([...update, 0x82]),
    );
    assert.equal(await c.goaway(), ErrorCode.Compression);
    c.close();
  }
  await stillServing(s.h);
});

Deno.test("hostile h2: SETTINGS and PING floods end in GOAWAY ENHANCE_YOUR_CALM", async () => {
  await using s = setup();
  for (const kind of ["settings", "ping"]) {
    const c = await RawH2.connect(s.h.port);
    const one = kind === "settings"
      ? settingsFrame([[Setting.MaxHeaderListSize, 1 << 16]])
      : new Uint8Array([0, 0, 8, FrameType.Ping, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const many = new Uint8Array(one.length * 10_000);
    for (let i = 0; i < 10_000; i++) many.set(one, i * one.length);
    try {
      await c.write(many);
    } catch {
      // Closed under us.
    }
    assert.equal(await c.goaway(), ErrorCode.EnhanceYourCalm, kind);
    c.close();
  }
  await stillServing(s.h);
});

Deno.test("hostile h2: a zero window held forever: the stream is reset at the idle timeout", async () => {
  await using s = setup({ idleTimeoutMs: 800 });
  const c = await RawH2.connect(s.h.port, { preface: false });
  await c.write(PREFACE);
  await c.write(settingsFrame([[Setting.InitialWindowSize, 0]]));
  await c.headers(1, GET);
  const { hit } = await c.until((f) => f.type === FrameType.RstStream && f.sid === 1, 10_000);
  assert.ok(hit, "the stream is reset");
  assert.equal(rstCodeOf(hit), ErrorCode.Internal);
  c.close();
  await stillServing(s.h);
});

Deno.test("hostile h2: a stream past SETTINGS_MAX_CONCURRENT_STREAMS is REFUSED_STREAM; the others complete", async () => {
  await using s = setup();
  const c = await RawH2.connect(s.h.port);
  const cold: Array<[string, string]> = [...GET.slice(0, 3), [":authority", "cold.test"]];
  for (let i = 0; i < 101; i++) await c.headers(1 + 2 * i, cold);
  const { hit } = await c.until((f) => f.type === FrameType.RstStream);
  assert.ok(hit);
  assert.equal(hit.sid, 201);
  assert.equal(rstCodeOf(hit), ErrorCode.RefusedStream);
  const slot = s.h.routes.get("default/cold")!.slot;
  await until(() => s.h.counters.held(slot) === 100, "100 held");
  s.h.setEndpoints("default/cold", [s.app.addr.port]);
  const ends = new Set<number>();
  while (ends.size < 100) {
    const f = await c.next(10_000);
    assert.ok(f, `responses for all 100 streams (got ${ends.size})`);
    if (f.type === FrameType.Data && (f.flags & Flag.EndStream) !== 0) ends.add(f.sid);
  }
  c.close();
  await stillServing(s.h);
});

Deno.test("hostile h2: malformed requests are RST_STREAM PROTOCOL_ERROR, and the connection serves on", async () => {
  await using s = setup();
  const bad: Array<[string, Array<[string, string]>]> = [
    ["no :method", GET.slice(1)],
    ["empty :path", [GET[0]!, GET[1]!, [":path", ""], GET[3]!]],
    ["unknown pseudo-header", [...GET, [":foo", "x"]]],
    ["pseudo after regular", [GET[0]!, GET[1]!, ["x-a", "1"], GET[2]!, GET[3]!]],
    ["two :path", [...GET, [":path", "/b"]]],
    [":status in a request", [...GET, [":status", "200"]]],
    ["upper-case name", [...GET, ["X-Up", "1"]]],
    ["connection header", [...GET, ["connection", "keep-alive"]]],
    ["transfer-encoding", [...GET, ["transfer-encoding", "chunked"]]],
    ["te other than trailers", [...GET, ["te", "gzip"]]],
    ["value with edge space", [...GET, ["x-a", " v"]]],
    ["value with LF", [...GET, ["x-a", "a\nb"]]],
  ];
  const c = await RawH2.connect(s.h.port);
  let sid = 1;
  for (const [what, fields] of bad) {
    await c.headers(sid, fields);
    const { hit } = await c.until((f) =>
      f.sid === sid && (f.type === FrameType.RstStream || f.type === FrameType.Headers)
    );
    assert.ok(hit, what);
    assert.equal(hit.type, FrameType.RstStream, `${what}: reset, not answered`);
    assert.equal(rstCodeOf(hit), ErrorCode.Protocol, what);
    sid += 2;
  }
  // content-length that the DATA disagrees with.
  // HEADERS and DATA in one write, so the mismatch is seen before any answer.
  const { frame, headersFrames } = await import("./h2_frames.ts");
  const hs = headersFrames(
    sid,
    c.enc.encode([[":method", "POST"], GET[1]!, GET[2]!, GET[3]!, ["content-length", "10"]]),
    false,
    16_384,
  );
  const data = frame(FrameType.Data, Flag.EndStream, sid, new Uint8Array(3));
  const both = new Uint8Array(hs.length + data.length);
  both.set(hs);
  both.set(data, hs.length);
  await c.write(both);
  const { hit } = await c.until((f) => f.sid === sid && f.type === FrameType.RstStream);
  assert.ok(hit, "content-length mismatch reset");
  assert.equal(rstCodeOf(hit), ErrorCode.Protocol);
  sid += 2;
  await c.headers(sid, GET);
  const { hit: ok } = await c.until((f) => f.sid === sid && f.type === FrameType.Headers);
  assert.ok(ok);
  assert.deepEqual(c.dec.decode(ok.payload).fields[0], [":status", "200"]);
  c.close();
  await stillServing(s.h);
});

Deno.test("hostile h2: broken prefaces: GOAWAY PROTOCOL_ERROR, or HTTP/1.1's 400 when it is not HTTP/2 at all", async () => {
  await using s = setup();
  {
    const c = await RawH2.connect(s.h.port, { preface: false });
    await c.write(new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"));
    assert.equal(await c.goaway(), ErrorCode.Protocol);
    c.close();
  }
  {
    // The preface, then not SETTINGS first.
    const c = await RawH2.connect(s.h.port, { preface: false });
    await c.write(PREFACE);
    await c.frame(FrameType.Ping, 0, 0, new Uint8Array(8));
    assert.equal(await c.goaway(), ErrorCode.Protocol);
    c.close();
  }
  {
    // A frame above SETTINGS_MAX_FRAME_SIZE.
    const c = await RawH2.connect(s.h.port);
    await c.frame(0xfa, 0, 0, new Uint8Array(20_000));
    assert.equal(await c.goaway(), ErrorCode.FrameSize);
    c.close();
  }
  {
    using raw = await RawClient.connect(s.h.port);
    await raw.send("PRX * HTTP/2.0\r\n\r\n");
    assert.equal((await raw.response()).status, 505);
  }
  await stillServing(s.h);
});
