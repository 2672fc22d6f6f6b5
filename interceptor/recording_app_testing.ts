/**
 * A recording upstream app for proxy tests: a raw TCP server with its own
 * small, strict HTTP/1.1 request reader (Content-Length or chunked, nothing
 * else; CRLF only; no obs-fold, no control characters), so what it records
 * is what a proxy really put on the wire. It records each request it parsed
 * and answers with a JSON of {conn, seq, method, target, bodyLength}, keeping
 * the connection alive; a framing error is recorded and closes the
 * connection. Replies can be scripted for response-side cases.
 *
 * Bytes are handled as binary strings (one char per byte), so anything a
 * proxy forwards is recorded exactly.
 */

export interface RecordedRequest {
  /** Which accepted connection (from 1). */
  conn: number;
  /** Position on that connection (from 0). */
  seq: number;
  method: string;
  target: string;
  /** "1.1" or "1.0". */
  version: string;
  /** Fields as received: name as sent, value without surrounding whitespace. */
  headers: Array<[string, string]>;
  /** The body, de-chunked (binary string). Empty when the reply went out before the body. */
  body: string;
  trailers: Array<[string, string]>;
  framing: "none" | "length" | "chunked";
  /** The reply was sent after the head, before the body was read (the body was drained). */
  early: boolean;
  /** The whole message arrived (false: the connection ended inside its body). */
  complete: boolean;
}

export interface AppEvent {
  conn: number;
  kind: "framing-error" | "eof-in-message";
  reason: string;
  /** Up to 200 bytes at the point of the error. */
  near: string;
}

export interface AppReply {
  /** The whole response as a binary string; "" sends nothing. */
  raw: string;
  /** Close the connection after sending. */
  close?: boolean;
}

/**
 * Called once after each request head ("head": a reply then goes out before
 * the body is read) and, when that gave none, once after the whole request
 * ("end"). Undefined: the default JSON answer (at "end").
 */
export type ReplyScript = (req: RecordedRequest, when: "head" | "end") => AppReply | undefined;

export interface RecordingApp extends AsyncDisposable {
  port: number;
  /** Every request whose head was parsed, in arrival order. */
  requests: RecordedRequest[];
  events: AppEvent[];
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

const MAX_HEAD = 64 * 1024;
const MAX_BODY = 1024 * 1024;
// A bound on reads per connection, so no loop can spin without end.
const MAX_READS = 100_000;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// deno-lint-ignore no-control-regex -- rejecting control characters is the point
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
// deno-lint-ignore no-control-regex -- as above
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^\x00-\x20\x7f]+) HTTP\/1\.([01])$/;
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,16})((?:;[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:=[^;\r\n]*)?)*)$/;

class FramingError extends Error {}
class Eof extends Error {}

/** Buffered reads over one connection, as binary strings. */
class Reader {
  #buf = "";
  #reads = 0;
  readonly #chunk = new Uint8Array(65536);
  constructor(readonly conn: Deno.Conn) {}

  get buffered(): string {
    return this.#buf;
  }

  /** Reads more; false at EOF (or a broken connection). */
  async more(): Promise<boolean> {
    if (++this.#reads > MAX_READS) throw new FramingError("too many reads on one connection");
    let n: number | null;
    try {
      n = await this.conn.read(this.#chunk);
    } catch {
      n = null;
    }
    if (n === null) return false;
    let s = "";
    for (let i = 0; i < n; i += 4096) {
      s += String.fromCharCode(...this.#chunk.subarray(i, Math.min(n, i + 4096)));
    }
    this.#buf += s;
    return true;
  }

  /** A line ending in CRLF, without it; a bare CR or LF is a framing error. */
  async line(max: number, what: string): Promise<string> {
    while (true) {
      const lf = this.#buf.indexOf("\n");
      const cr = this.#buf.indexOf("\r");
      if (cr >= 0 && (lf < 0 || cr < lf - 1)) {
        if (cr + 1 < this.#buf.length) throw new FramingError(`bare CR in ${what}`);
      }
      if (lf >= 0) {
        if (lf === 0 || this.#buf[lf - 1] !== "\r") throw new FramingError(`bare LF in ${what}`);
        const l = this.#buf.slice(0, lf - 1);
        this.#buf = this.#buf.slice(lf + 1);
        return l;
      }
      if (this.#buf.length > max) throw new FramingError(`${what} longer than ${max} bytes`);
      if (!(await this.more())) throw new Eof(`connection ended in ${what}`);
    }
  }

  /** Exactly n bytes. */
  async bytes(n: number, what: string): Promise<string> {
    while (this.#buf.length < n) {
      if (!(await this.more())) throw new Eof(`connection ended in ${what}`);
    }
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }
}

function fieldOf(line: string, what: string): [string, string] {
  const colon = line.indexOf(":");
  if (colon <= 0) throw new FramingError(`${what} line without a colon`);
  const name = line.slice(0, colon);
  if (!TOKEN.test(name)) throw new FramingError(`${what} name ${JSON.stringify(name)}`);
  const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
  if (BAD_VALUE.test(value)) throw new FramingError(`control character in ${what} ${name}`);
  return [name, value];
}

const enc = new TextEncoder();

function bytesOf(binary: string): Uint8Array {
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i) & 0xff;
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

function defaultReply(req: RecordedRequest): string {
  const body = JSON.stringify({
    conn: req.conn,
    seq: req.seq,
    method: req.method,
    target: req.target,
    bodyLength: req.body.length,
  });
  return `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${
    enc.encode(body).length
  }\r\n\r\n${body}`;
}

/** Starts the app on a loopback port. */
export function startRecordingApp(opts: { reply?: ReplyScript } = {}): RecordingApp {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: RecordedRequest[] = [];
  const events: AppEvent[] = [];
  const conns = new Set<Deno.Conn>();
  const serving = new Set<Promise<void>>();
  let accepted = 0;

  async function serve(conn: Deno.Conn, id: number): Promise<void> {
    const r = new Reader(conn);
    let current: RecordedRequest | undefined;
    try {
      for (let seq = 0; seq < MAX_READS; seq++) {
        current = undefined;
        // A clean end between requests is not an error.
        if (r.buffered === "" && !(await r.more())) return;
        const line = await r.line(MAX_HEAD, "request line");
        const m = REQUEST_LINE.exec(line);
        if (!m) throw new FramingError(`request line ${JSON.stringify(line.slice(0, 100))}`);
        const headers: Array<[string, string]> = [];
        let headBytes = line.length;
        for (let i = 0; i < 1000; i++) {
          const l = await r.line(MAX_HEAD, "header");
          if (l === "") break;
          headBytes += l.length;
          if (headBytes > MAX_HEAD) throw new FramingError("head too large");
          headers.push(fieldOf(l, "header"));
        }
        const values = (n: string) =>
          headers.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
        const te = values("transfer-encoding");
        const cl = values("content-length");
        let framing: RecordedRequest["framing"] = "none";
        let length = 0;
        if (te.length > 0) {
          if (te.length !== 1 || te[0]!.toLowerCase() !== "chunked") {
            throw new FramingError(`Transfer-Encoding ${JSON.stringify(te)}`);
          }
          if (cl.length > 0) throw new FramingError("Content-Length with Transfer-Encoding");
          framing = "chunked";
        } else if (cl.length > 0) {
          if (cl.length !== 1 || !/^\d{1,15}$/.test(cl[0]!)) {
            throw new FramingError(`Content-Length ${JSON.stringify(cl)}`);
          }
          length = Number(cl[0]);
          if (length > MAX_BODY) throw new FramingError("body too large");
          framing = "length";
        }
        const req: RecordedRequest = {
          conn: id,
          seq,
          method: m[1]!,
          target: m[2]!,
          version: `1.${m[3]}`,
          headers,
          body: "",
          trailers: [],
          framing,
          early: false,
          complete: false,
        };
        current = req;
        requests.push(req);
        let reply = opts.reply?.(req, "head");
        if (reply) {
          req.early = true;
          await writeAll(conn, bytesOf(reply.raw));
          if (reply.close) return;
        }
        // An early reply leaves the body unrecorded: it is only drained.
        const body = await readBody(r, framing, length, req.trailers);
        if (!req.early) req.body = body;
        req.complete = true;
        if (!reply) {
          reply = opts.reply?.(req, "end") ?? { raw: defaultReply(req) };
          await writeAll(conn, bytesOf(reply.raw));
          if (reply.close) return;
        }
        const connection = values("connection").join(",").toLowerCase();
        if (
          connection.includes("close") ||
          (req.version === "1.0" && !connection.includes("keep-alive"))
        ) {
          return;
        }
      }
    } catch (e) {
      if (e instanceof FramingError || e instanceof Eof) {
        events.push({
          conn: id,
          kind: e instanceof Eof ? "eof-in-message" : "framing-error",
          reason: e.message,
          near: r.buffered.slice(0, 200),
        });
      } else if (current) {
        // A write to a connection the proxy closed: nothing to record but that.
        events.push({ conn: id, kind: "eof-in-message", reason: String(e), near: "" });
      }
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    }
  }

  const accepting = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      const p = serve(conn, ++accepted);
      serving.add(p);
      p.finally(() => serving.delete(p));
    }
  })().catch(() => {});

  const close = async () => {
    try {
      listener.close();
    } catch {
      // Closed already.
    }
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // Closed already.
      }
    }
    await accepting;
    await Promise.allSettled([...serving]);
  };
  return {
    port: (listener.addr as Deno.NetAddr).port,
    requests,
    events,
    connections: () => accepted,
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function readBody(
  r: Reader,
  framing: RecordedRequest["framing"],
  length: number,
  trailers: Array<[string, string]>,
): Promise<string> {
  if (framing === "none") return "";
  if (framing === "length") return await r.bytes(length, "the body");
  let body = "";
  for (let i = 0; i < MAX_READS; i++) {
    const sizeLine = await r.line(1024, "a chunk size line");
    const m = CHUNK_SIZE.exec(sizeLine);
    if (!m) throw new FramingError(`chunk size line ${JSON.stringify(sizeLine.slice(0, 100))}`);
    const size = parseInt(m[1]!, 16);
    if (body.length + size > MAX_BODY) throw new FramingError("body too large");
    if (size === 0) {
      for (let j = 0; j < 1000; j++) {
        const l = await r.line(MAX_HEAD, "a trailer");
        if (l === "") return body;
        const f = fieldOf(l, "trailer");
        const n = f[0].toLowerCase();
        if (n === "content-length" || n === "transfer-encoding" || n === "host") {
          throw new FramingError(`framing field ${f[0]} in the trailers`);
        }
        trailers.push(f);
      }
      throw new FramingError("too many trailer lines");
    }
    body += await r.bytes(size, "a chunk");
    if ((await r.bytes(2, "the CRLF after a chunk")) !== "\r\n") {
      throw new FramingError("chunk data not followed by CRLF");
    }
  }
  throw new FramingError("too many chunks");
}
