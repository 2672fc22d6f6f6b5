/**
 * Differential test of hpack.ts against nghttp2's HPACK (Node's http2): (a) Node encodes
 * generated request header lists, our HpackDecoder decodes them; (b) our HpackEncoder encodes,
 * nghttp2 decodes and Node reports what it saw. Both directions cross several
 * SETTINGS_HEADER_TABLE_SIZE values, (b) also changes it mid-connection. Frames are read and
 * written here by hand, just enough for the exchange, so nothing but HPACK is under test.
 *
 * The cases come from a fast-check seed (HPACK_ORACLE_SEED to replay one).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { HpackDecoder, HpackEncoder } from "./hpack.ts";

type Fields = Array<[string, string]>;

const SCRIPT = new URL("./testdata/hpack_oracle.mjs", import.meta.url).pathname;
const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const SEED = Number(Deno.env.get("HPACK_ORACLE_SEED") ?? Date.now() % 2 ** 31);

const T_HEADERS = 1, T_SETTINGS = 4, T_GOAWAY = 7, T_CONTINUATION = 9;
const F_END_STREAM = 1, F_ACK = 1, F_END_HEADERS = 4, F_PADDED = 8, F_PRIORITY = 0x20;

interface Frame {
  type: number;
  flags: number;
  sid: number;
  payload: Uint8Array;
}

function frame(type: number, flags: number, sid: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(9 + payload.length);
  f[0] = payload.length >> 16;
  f[1] = payload.length >> 8;
  f[2] = payload.length;
  f[3] = type;
  f[4] = flags;
  new DataView(f.buffer).setUint32(5, sid);
  f.set(payload, 9);
  return f;
}

/** HEADERS (+ CONTINUATION past 16 KiB, the default SETTINGS_MAX_FRAME_SIZE) with END_STREAM. */
function headersFrames(sid: number, block: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const MAX = 16_384;
  for (let at = 0; at === 0 || at < block.length; at += MAX) {
    const part = block.subarray(at, at + MAX);
    const last = at + MAX >= block.length;
    out.push(
      at === 0
        ? frame(T_HEADERS, F_END_STREAM | (last ? F_END_HEADERS : 0), sid, part)
        : frame(T_CONTINUATION, last ? F_END_HEADERS : 0, sid, part),
    );
  }
  return out;
}

function settings(pairs: Array<[number, number]>): Uint8Array {
  const p = new Uint8Array(6 * pairs.length);
  const v = new DataView(p.buffer);
  pairs.forEach(([id, val], i) => {
    v.setUint16(6 * i, id);
    v.setUint32(6 * i + 2, val);
  });
  return frame(T_SETTINGS, 0, 0, p);
}

class FrameReader {
  #buf = new Uint8Array(0);
  constructor(private readonly conn: Deno.Conn) {}

  async #fill(n: number): Promise<void> {
    while (this.#buf.length < n) {
      const chunk = new Uint8Array(65_536);
      const got = await this.conn.read(chunk);
      if (got === null) throw new Error(`peer closed the connection (wanted ${n} bytes)`);
      const next = new Uint8Array(this.#buf.length + got);
      next.set(this.#buf);
      next.set(chunk.subarray(0, got), this.#buf.length);
      this.#buf = next;
    }
  }

  async bytes(n: number): Promise<Uint8Array> {
    await this.#fill(n);
    const b = this.#buf.slice(0, n);
    this.#buf = this.#buf.subarray(n);
    return b;
  }

  async next(): Promise<Frame> {
    const h = await this.bytes(9);
    const len = (h[0]! << 16) | (h[1]! << 8) | h[2]!;
    const sid = new DataView(h.buffer).getUint32(5) & 0x7fffffff;
    const f = { type: h[3]!, flags: h[4]!, sid, payload: await this.bytes(len) };
    if (f.type === T_GOAWAY) {
      throw new Error(`peer sent GOAWAY: ${new TextDecoder().decode(f.payload.subarray(8))}`);
    }
    return f;
  }

  /** The next complete header block, with its stream id; SETTINGS frames go to `onSettings`. */
  async block(onSettings: (f: Frame) => void): Promise<{ sid: number; block: Uint8Array }> {
    let f = await this.next();
    while (f.type !== T_HEADERS) {
      if (f.type === T_SETTINGS) onSettings(f);
      f = await this.next();
    }
    let p = f.payload;
    if (f.flags & F_PADDED) p = p.subarray(1, p.length - p[0]!);
    if (f.flags & F_PRIORITY) p = p.subarray(5);
    const parts = [p];
    let flags = f.flags;
    while (!(flags & F_END_HEADERS)) {
      const c = await this.next();
      assert.equal(c.type, T_CONTINUATION);
      parts.push(c.payload);
      flags = c.flags;
    }
    const block = new Uint8Array(parts.reduce((n, x) => n + x.length, 0));
    let at = 0;
    for (const x of parts) {
      block.set(x, at);
      at += x.length;
    }
    return { sid: f.sid, block };
  }
}

function settingsOf(f: Frame): Map<number, number> {
  const m = new Map<number, number>();
  const v = new DataView(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength);
  for (let i = 0; i + 6 <= f.payload.length; i += 6) m.set(v.getUint16(i), v.getUint32(i + 2));
  return m;
}

// Generators. Values: visible ASCII, space/tab inside, latin1 0x80-0xff; never whitespace at the
// ends (nghttp2 rejects that, RFC 9113 8.2.1).
const valueChar = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0x21, max: 0x7e }) },
  { weight: 1, arbitrary: fc.constantFrom(0x20, 0x09) },
  { weight: 2, arbitrary: fc.integer({ min: 0x80, max: 0xff }) },
).map((c) => String.fromCharCode(c));
const randomValue = fc.string({ unit: valueChar, maxLength: 60 }).map((s) =>
  s.replace(/^[ \t]+|[ \t]+$/g, "")
);
// A small pool makes fields repeat across requests, so the dynamic table is used.
const value = fc.oneof(randomValue, fc.constantFrom("v1", "v2", "text/html", "gzip, br", ""));
const xName = fc.oneof(
  fc.stringMatching(/^[a-z0-9][a-z0-9!#$%&'*+.^_`|~-]{0,24}$/).map((s) => `x-${s}`),
  fc.constantFrom("x-a", "x-b", "x-c", "x-request-id"),
);
/** Names Node and nghttp2 take once each (several are single-value in Node). */
const commonName = fc.constantFrom(
  "accept",
  "accept-encoding",
  "user-agent",
  "content-type",
  "authorization",
  "cache-control",
  "cookie",
  "if-none-match",
  "referer",
);
const request: fc.Arbitrary<Fields> = fc.record({
  method: fc.constantFrom("GET", "POST", "PUT", "DELETE"),
  path: fc.oneof(
    fc.constantFrom("/", "/index.html", "/api"),
    fc.stringMatching(/^\/[a-z0-9/]{0,30}$/),
  ),
  authority: fc.constantFrom("example.com", "a.example.com:8080"),
  x: fc.uniqueArray(fc.tuple(xName, fc.array(value, { minLength: 1, maxLength: 3 })), {
    maxLength: 10,
    selector: (t) => t[0],
  }),
  common: fc.uniqueArray(fc.tuple(commonName, value), { maxLength: 5, selector: (t) => t[0] }),
}).map((r) => {
  const f: Fields = [
    [":method", r.method],
    [":scheme", "http"],
    [":path", r.path],
    [":authority", r.authority],
  ];
  // Grouped by name, as Node emits an object's array values.
  for (const [n, vs] of r.x) for (const v of vs) f.push([n, v]);
  for (const [n, v] of r.common) f.push([n, v]);
  return f;
});
const tableSize = fc.oneof(
  fc.constantFrom(0, 4096, 256, 64, 8192),
  fc.integer({ min: 0, max: 5000 }),
);

Deno.test("hpack oracle (a): our decoder reads what nghttp2's encoder writes", async () => {
  const conns = fc.sample(
    fc.tuple(tableSize, fc.array(request, { minLength: 1, maxLength: 20 })),
    { numRuns: 8, seed: SEED },
  );
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const node = new Deno.Command("node", {
    args: ["--no-deprecation", SCRIPT, "client"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = node.stdin.getWriter();
  await w.write(new TextEncoder().encode(
    JSON.stringify({ port: listener.addr.port, connections: conns.map((c) => c[1]) }) + "\n",
  ));
  await w.close();
  const output = node.output();
  let checked = 0;
  try {
    for (const [i, [size, requests]] of conns.entries()) {
      const conn = await listener.accept();
      const r = new FrameReader(conn);
      assert.deepEqual(await r.bytes(PREFACE.length), PREFACE);
      await conn.write(settings([[1, size]]));
      const d = new HpackDecoder({ maxTableSize: size, maxHeaderListSize: 1 << 20 });
      for (const [j, fields] of requests.entries()) {
        const { sid, block } = await r.block((f) => {
          if (!(f.flags & F_ACK)) conn.write(frame(T_SETTINGS, F_ACK, 0, new Uint8Array(0)));
        });
        const got = d.decode(block);
        assert.deepEqual(
          got.fields,
          fields,
          `seed ${SEED}, connection ${i} (table ${size}), request ${j}`,
        );
        assert.ok(d.tableSize <= size);
        checked++;
        await conn.write(
          frame(T_HEADERS, F_END_STREAM | F_END_HEADERS, sid, new Uint8Array([0x88])),
        );
      }
      // Drain until Node closes the session.
      try {
        while (true) await r.next();
      } catch { /* closed */ }
      conn.close();
    }
  } catch (e) {
    // Node would wait for the answers forever.
    node.kill("SIGKILL");
    throw e;
  } finally {
    listener.close();
    const out = await output;
    const text = new TextDecoder().decode(out.stdout);
    assert.ok(
      text.includes('"done":true') || out.signal === "SIGKILL",
      `node client: ${text} ${new TextDecoder().decode(out.stderr)}`.slice(0, 2000),
    );
  }
  assert.equal(checked, conns.reduce((n, c) => n + c[1].length, 0));
});

Deno.test("hpack oracle (b): nghttp2's decoder reads what our encoder writes", async () => {
  const cases = fc.sample(
    fc.tuple(
      fc.constantFrom(4096, 256, 0, 64, 8192),
      fc.array(fc.tuple(request, fc.option(tableSize, { freq: 6 })), {
        minLength: 1,
        maxLength: 25,
      }),
    ),
    { numRuns: 6, seed: SEED + 1 },
  );
  const sizes = cases.map((c) => c[0]);
  const node = new Deno.Command("node", {
    args: ["--no-deprecation", SCRIPT, "server", JSON.stringify(sizes)],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  // Node's reports by "port:sid".
  const reports = new Map<string, PromiseWithResolvers<string[]>>();
  const report = (k: string) => {
    let p = reports.get(k);
    if (p === undefined) reports.set(k, p = Promise.withResolvers());
    return p;
  };
  const ports = Promise.withResolvers<number[]>();
  const reading = (async () => {
    let buffered = "";
    const dec = new TextDecoder();
    for await (const chunk of node.stdout) {
      buffered += dec.decode(chunk, { stream: true });
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const msg = JSON.parse(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
        if (msg.ports) ports.resolve(msg.ports);
        else if (msg.error) throw new Error(`node server: ${msg.error}`);
        else report(`${msg.port}:${msg.sid}`).resolve(msg.raw);
      }
    }
  })();
  reading.catch((e) => {
    ports.reject(e);
    for (const p of reports.values()) p.reject(e);
  });
  let checked = 0;
  try {
    const portList = await ports.promise;
    for (const [i, [, requests]] of cases.entries()) {
      const port = portList[i]!;
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const r = new FrameReader(conn);
      const enc = new HpackEncoder();
      const respDec = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 1 << 20 });
      const onSettings = (f: Frame) => {
        if (f.flags & F_ACK) return;
        const s = settingsOf(f).get(1);
        if (s !== undefined) enc.setMaxTableSize(s);
        conn.write(frame(T_SETTINGS, F_ACK, 0, new Uint8Array(0)));
      };
      await conn.write(PREFACE);
      await conn.write(settings([]));
      // Node's SETTINGS (with its table size) comes first.
      const first = await r.next();
      assert.equal(first.type, T_SETTINGS);
      onSettings(first);
      for (const [j, [req, change]] of requests.entries()) {
        const sid = 2 * j + 1;
        const fields: Fields = change === null
          ? req
          : [...req, ["x-oracle-table-size", String(change)]];
        for (const f of headersFrames(sid, enc.encode(fields))) await conn.write(f);
        const resp = await r.block(onSettings);
        assert.equal(resp.sid, sid, `seed ${SEED}: response on stream ${resp.sid}, wanted ${sid}`);
        assert.deepEqual(respDec.decode(resp.block).fields[0], [":status", "200"]);
        const raw = await report(`${port}:${sid}`).promise;
        const seen: Fields = [];
        for (let k = 0; k < raw.length; k += 2) seen.push([raw[k]!, raw[k + 1]!]);
        assert.deepEqual(
          seen,
          fields,
          `seed ${SEED + 1}, server ${i} (table ${sizes[i]}), request ${j}`,
        );
        checked++;
      }
      conn.close();
    }
  } finally {
    await node.stdin.close();
    await node.status;
    await reading.catch(() => {});
  }
  assert.equal(checked, cases.reduce((n, c) => n + c[1].length, 0));
});
