import assert from "node:assert/strict";
import {
  BufferFull,
  type ByteConn,
  ConnReader,
  readsDirectly,
  writeAll,
  writerFor,
  writesDirectly,
} from "./conn_io.ts";

/** A connected pair of real TCP sockets on loopback, closed when disposed. */
async function tcpPair(): Promise<{ a: Deno.TcpConn; b: Deno.TcpConn } & Disposable> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [a, b] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: (l.addr as Deno.NetAddr).port }),
    l.accept() as Promise<Deno.TcpConn>,
  ]);
  l.close();
  return {
    a,
    b,
    [Symbol.dispose]() {
      for (const c of [a, b]) {
        try {
          c.close();
        } catch { /* closed by the test */ }
      }
    },
  };
}

Deno.test("conn_io: on this Deno a TCP connection is read through the read op directly", async () => {
  // Fails when a Deno upgrade removes the internals the fast path uses: the
  // fallback still works, but every read allocates again (see conn_io.ts).
  using p = await tcpPair();
  assert.equal(readsDirectly(new ConnReader(p.b)), true);
});

Deno.test("conn_io: on this Deno a TCP connection is written through the write op directly", async () => {
  using p = await tcpPair();
  assert.equal(writesDirectly(p.a), true);
});

Deno.test("conn_io: a direct writer delivers every byte and rejects once the connection is closed", async () => {
  using p = await tcpPair();
  const w = { write: writerFor(p.a) };
  const data = new Uint8Array(256 * 1024).map((_, i) => i % 251);
  const r = new ConnReader(p.b, 1024, 512 * 1024);
  const sent = writeAll(w, data);
  while (r.buffered < data.length) assert.ok(await r.fill() > 0, "bytes keep arriving");
  await sent;
  assert.deepEqual(r.buf.subarray(r.start, r.end), data);
  p.a.close();
  await assert.rejects(w.write(new Uint8Array(1)), "a write after close fails, not hangs");
});

Deno.test("conn_io: fill appends bytes, shares one read in flight, and reports EOF as 0", async () => {
  using p = await tcpPair();
  const r = new ConnReader(p.b, 8, 32);
  const first = r.fill();
  assert.equal(r.fill(), first, "a second fill while reading returns the same read");
  assert.equal(r.reading, true);
  await writeAll(p.a, new TextEncoder().encode("hello"));
  assert.equal(await first, 5);
  assert.equal(new TextDecoder().decode(r.buf.subarray(r.start, r.end)), "hello");
  r.start = 2; // Consume "he"; the rest stays.
  let watched = -1;
  r.watch = (n) => (watched = n);
  const next = r.fill();
  await writeAll(p.a, new TextEncoder().encode(" world"));
  const n = await next;
  assert.equal(watched, n, "the watch sees the read's result before awaiters resume");
  while (r.buffered < 9) await r.fill();
  assert.equal(new TextDecoder().decode(r.buf.subarray(r.start, r.end)), "llo world");
  p.a.close();
  assert.equal(await r.fill(), 0);
  assert.equal(r.eof, true);
  assert.equal(await r.fill(), 0, "fill after EOF stays 0");
});

Deno.test("conn_io: the buffer grows to its limit and then fill rejects with BufferFull", async () => {
  using p = await tcpPair();
  const r = new ConnReader(p.b, 8, 16);
  await writeAll(p.a, new Uint8Array(40));
  while (r.end < 16) await r.fill();
  assert.equal(r.buf.length, 16);
  await assert.rejects(r.fill(), BufferFull);
});

Deno.test("conn_io: a connection without a Deno resource id is read through conn.read", async () => {
  const chunks = [new TextEncoder().encode("abc")];
  const conn: ByteConn = {
    read(buf) {
      const c = chunks.shift();
      if (c === undefined) return Promise.resolve(null);
      buf.set(c);
      return Promise.resolve(c.length);
    },
    write: (b) => Promise.resolve(b.length),
    close() {},
    closeWrite: () => Promise.resolve(),
  };
  const r = new ConnReader(conn);
  assert.equal(readsDirectly(r), false);
  assert.equal(await r.fill(), 3);
  assert.equal(r.buffered, 3);
  assert.equal(await r.fill(), 0);
  assert.equal(r.eof, true);
});

Deno.test("conn_io: a connection without a Deno resource id is written through conn.write", async () => {
  const written: number[] = [];
  const conn: ByteConn = {
    read: () => Promise.resolve(null),
    write: (b) => (written.push(b.length), Promise.resolve(Math.min(b.length, 2))),
    close() {},
    closeWrite: () => Promise.resolve(),
  };
  assert.equal(writesDirectly(conn), false);
  await writeAll({ write: writerFor(conn) }, new Uint8Array(5));
  assert.deepEqual(written, [5, 3, 1], "partial writes continue with the rest");
});
