/**
 * HTTP/2 streams as HTTP/1.1 byte streams, so that every rule of the data
 * plane (routing, counting, holding, timeouts, fallback, placeholder, static
 * routes, metrics, framing) applies to a stream exactly as to an HTTP/1.1
 * request, from the one implementation in proxy.ts and upstream_leg.ts:
 *
 * - a stream a client opened is a ByteConn whose reads are the request as
 *   HTTP/1.1 (head generated from the validated header list, body framed
 *   from DATA: Content-Length when the client gave one, else chunked, with
 *   trailers) and whose writes, the proxy's HTTP/1.1 response, go back as
 *   HEADERS, DATA and trailers;
 * - a stream we open to an h2c app is a ByteConn the other way round.
 *
 * Framing on either side is generated from what a parser decided (the
 * HTTP/2 frame layer, or our HTTP/1.1 parsers), never copied. Reads give
 * flow-control window back only as the proxy consumes the bytes, so a slow
 * app slows the client down (and the reverse) without buffering.
 */
import type { ByteConn } from "./conn_io.ts";
import { type Fields, type H2Stream, StreamReset } from "./h2_conn.ts";
import { ErrorCode } from "./h2_frames.ts";
import { binaryBytes, binaryString, findHeadEnd } from "./http1_bytes.ts";
import { ChunkedScanner } from "./http1_chunked.ts";
import {
  contentLengthOf,
  HeaderList,
  HttpError,
  isToken,
  readFields,
  TCHAR,
} from "./http1_fields.ts";
import { parseRequestHead, type RequestHead } from "./http1_request.ts";
import {
  parseResponseHead,
  reasonOf,
  responseHasNoBody,
  type ResponseHead,
} from "./http1_response.ts";

/** A malformed HTTP/2 message (RFC 9113 8.1.1): the stream is reset with PROTOCOL_ERROR. */
export class MalformedMessage extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MalformedMessage";
  }
}

/** Connection-specific fields, never valid in HTTP/2 (RFC 9113 8.2.2). */
const CONNECTION_SPECIFIC = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
]);

// deno-lint-ignore no-control-regex -- matching control characters is the point
const BAD_TARGET = /[\x00-\x20\x7f-\xff]/;

const REQUEST_PSEUDO = new Set([":method", ":scheme", ":authority", ":path"]);

/** RFC 9113 8.2.1: a lower-case token name; a value without NUL, CR, LF or edge whitespace. */
function checkField(name: string, value: string): void {
  if (name.length === 0) throw new MalformedMessage("empty field name");
  for (let i = name.charCodeAt(0) === 58 ? 1 : 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c > 255 || TCHAR[c] === 0 || (c >= 65 && c <= 90)) {
      throw new MalformedMessage(`field name "${name.slice(0, 40)}" is not a lower-case token`);
    }
  }
  const n = value.length;
  if (n > 0) {
    const a = value.charCodeAt(0);
    const z = value.charCodeAt(n - 1);
    if (a === 32 || a === 9 || z === 32 || z === 9) {
      throw new MalformedMessage(`field ${name} has whitespace at the edge of its value`);
    }
  }
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || c === 10 || c === 13) {
      throw new MalformedMessage(`field ${name} has NUL, CR or LF in its value`);
    }
  }
}

export interface H2Request {
  /** The request as an HTTP/1.1 head (binary string), Connection: close. */
  head: string;
  method: string;
  /** Content-Length the client declared; -1 if none. */
  contentLength: number;
  /** The body goes as chunked (no Content-Length, and not ended with the headers). */
  chunked: boolean;
}

/**
 * A client's request header list, checked as RFC 9113 8.1-8.3 say, as an
 * HTTP/1.1 head for the proxy's own parser (which then applies every rule
 * an HTTP/1.1 request meets). Throws MalformedMessage.
 */
export function requestOf(fields: Fields, endStream: boolean): H2Request {
  let method: string | null = null;
  let scheme: string | null = null;
  let authority: string | null = null;
  let path: string | null = null;
  let regular = false;
  let host: string | null = null;
  let cl = -1;
  let lines = "";
  let cookie: string | null = null;
  for (const [name, value] of fields) {
    checkField(name, value);
    if (name.charCodeAt(0) === 58) {
      if (regular) throw new MalformedMessage(`pseudo-header ${name} after a regular field`);
      if (!REQUEST_PSEUDO.has(name)) {
        throw new MalformedMessage(`pseudo-header ${name} is not a request one`);
      }
      switch (name) {
        case ":method":
          if (method !== null) throw new MalformedMessage("more than one :method");
          method = value;
          break;
        case ":scheme":
          if (scheme !== null) throw new MalformedMessage("more than one :scheme");
          scheme = value;
          break;
        case ":authority":
          if (authority !== null) throw new MalformedMessage("more than one :authority");
          authority = value;
          break;
        default:
          if (path !== null) throw new MalformedMessage("more than one :path");
          path = value;
      }
      continue;
    }
    regular = true;
    if (CONNECTION_SPECIFIC.has(name)) {
      throw new MalformedMessage(`connection-specific field ${name} is not allowed in HTTP/2`);
    }
    if (name === "te") {
      if (value !== "trailers") throw new MalformedMessage('te may only be "trailers" in HTTP/2');
      continue; // Hop-by-hop: not forwarded.
    }
    if (name === "host") {
      if (host !== null) throw new MalformedMessage("more than one host field");
      host = value;
      continue;
    }
    if (name === "cookie") {
      // RFC 9113 8.2.3: crumbs are joined for HTTP/1.1.
      cookie = cookie === null ? value : `${cookie}; ${value}`;
      continue;
    }
    if (name === "content-length") {
      if (cl >= 0) throw new MalformedMessage("more than one content-length");
      cl = contentLengthOf(value);
      if (cl < 0) {
        throw new MalformedMessage(`content-length "${value.slice(0, 40)}" is not a number`);
      }
    }
    lines += `${name}: ${value}\r\n`;
  }
  if (method === null) throw new MalformedMessage("the :method pseudo-header is missing");
  if (!isToken(method)) throw new MalformedMessage(":method is not a token");
  // The request line must stay one request line: no controls, spaces or bytes past ASCII.
  if (path !== null && BAD_TARGET.test(path)) {
    throw new MalformedMessage(":path holds a space, a control character or a non-ASCII byte");
  }
  if (method === "CONNECT") {
    if (scheme !== null || path !== null || authority === null) {
      throw new MalformedMessage("CONNECT takes :authority alone");
    }
    // The HTTP/1.1 parser answers CONNECT with 405.
    return {
      head:
        `CONNECT ${authority} HTTP/1.1\r\nhost: ${authority}\r\n${lines}connection: close\r\n\r\n`,
      method,
      contentLength: cl,
      chunked: false,
    };
  }
  if (scheme === null) throw new MalformedMessage("the :scheme pseudo-header is missing");
  if (path === null || path === "") {
    throw new MalformedMessage("the :path pseudo-header is missing or empty");
  }
  if (path.charCodeAt(0) !== 47 && !(path === "*" && method === "OPTIONS")) {
    throw new MalformedMessage(":path must start with / (or be * for OPTIONS)");
  }
  // :authority wins over a host field (as Go's server does); only one reaches the app.
  const h = authority ?? host;
  // RFC 9113 8.3.1: http and https have an authority; one of the two must carry it.
  if (h === null || h === "") throw new MalformedMessage("neither :authority nor host is given");
  if (endStream && cl > 0) throw new MalformedMessage("content-length above 0 with no body");
  const chunked = !endStream && cl < 0;
  let head = `${method} ${path} HTTP/1.1\r\n`;
  head += `host: ${h}\r\n`;
  head += lines;
  if (cookie !== null) head += `cookie: ${cookie}\r\n`;
  if (chunked) head += "transfer-encoding: chunked\r\n";
  head += "connection: close\r\n\r\n";
  return { head, method, contentLength: cl, chunked };
}

/** RFC 9113 8.3.2 and 8.2: a response or trailer header list from an app. */
function checkResponseFields(fields: Fields, trailers: boolean): number {
  let status = -1;
  let regular = false;
  for (const [name, value] of fields) {
    checkField(name, value);
    if (name.charCodeAt(0) === 58) {
      if (trailers || regular || name !== ":status" || status >= 0) {
        throw new MalformedMessage(`unexpected pseudo-header ${name} in a response`);
      }
      if (!/^[1-9]\d\d$/.test(value)) {
        throw new MalformedMessage(`:status "${value}" is not 3 digits`);
      }
      status = Number(value);
      continue;
    }
    regular = true;
    if (CONNECTION_SPECIFIC.has(name)) {
      throw new MalformedMessage(`connection-specific field ${name} in an HTTP/2 response`);
    }
  }
  if (!trailers && status < 0) throw new MalformedMessage("the response has no :status");
  return status;
}

const EMPTY = new Uint8Array(0);
const CRLF = new Uint8Array([13, 10]);
const LAST = binaryBytes("0\r\n\r\n");

/** What a message's bytes turn into on the HTTP/2 side. */
interface FrameSink {
  headers(fields: Fields, endStream: boolean): void;
  data(bytes: Uint8Array, endStream: boolean): Promise<void>;
}

type BodyMode = "none" | "length" | "chunked" | "close";

/**
 * Reads one HTTP/1.1 message (after any interim responses) from bytes
 * written to us and hands it to a sink as header lists and data: the
 * proxy's response on a client stream, the proxy's request on an app one.
 */
class Http1ToFrames {
  #head: Uint8Array = EMPTY;
  #mode: BodyMode | null = null;
  #left = 0;
  #scanner: ChunkedScanner | null = null;
  /** Bytes after the last data byte of a chunked body: the last chunk and trailers. */
  #tail = "";
  done = false;

  constructor(
    readonly sink: FrameSink,
    /** Turns a complete head into header fields, its body mode and length, or interim (null). */
    readonly onHead: (text: string) => { fields: Fields; mode: BodyMode; length: number } | null,
  ) {}

  async write(p: Uint8Array): Promise<void> {
    let off = 0;
    while (off < p.length && !this.done) {
      if (this.#mode === null) {
        const buf = this.#head.length === 0 ? p.subarray(off) : concat(this.#head, p.subarray(off));
        const end = findHeadEnd(buf, 0, buf.length);
        if (end < 0) {
          if (buf.length > 64 * 1024) throw new Error("message head above 64 KiB");
          this.#head = buf.slice();
          return;
        }
        const consumed = end - this.#head.length;
        this.#head = EMPTY;
        off += consumed;
        const h = this.onHead(binaryString(buf, 0, end));
        if (h === null) continue; // Interim response: sent; the final head follows.
        this.#mode = h.mode;
        this.#left = h.length;
        const ends = h.mode === "none" || (h.mode === "length" && h.length === 0);
        this.sink.headers(h.fields, ends);
        if (ends) {
          this.done = true;
          return;
        }
        if (h.mode === "chunked") this.#scanner = new ChunkedScanner();
        continue;
      }
      const rest = p.subarray(off);
      off = p.length;
      if (this.#mode === "length") {
        const n = Math.min(this.#left, rest.length);
        this.#left -= n;
        const last = this.#left === 0;
        // Done only once sent: a close meanwhile must reset the stream, not leave it open.
        await this.sink.data(rest.subarray(0, n), last);
        if (last) this.done = true;
      } else if (this.#mode === "close") {
        await this.sink.data(rest, false);
      } else {
        const parts: Uint8Array[] = [];
        let lastData = -1;
        const e = this.#scanner!.scan(rest, 0, rest.length, (a, b) => {
          parts.push(rest.subarray(a, b));
          lastData = b;
        });
        const stop = e >= 0 ? e : rest.length;
        const tail = binaryString(rest, lastData >= 0 ? lastData : 0, stop);
        this.#tail = lastData >= 0 ? tail : this.#tail + tail;
        for (const part of parts) await this.sink.data(part, false);
        if (e >= 0) {
          const trailers = trailersOf(this.#tail);
          if (trailers.length > 0) this.sink.headers(trailers, true);
          else await this.sink.data(EMPTY, true);
          this.done = true;
        }
      }
    }
  }

  /** The writer is done: a body delimited by the end of the connection ends here. */
  async finish(): Promise<boolean> {
    if (this.done) return true;
    if (this.#mode === "close") {
      await this.sink.data(EMPTY, true);
      this.done = true;
      return true;
    }
    return false;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** The trailer fields in what follows a chunked body's last data: "\r\n0\r\n<fields>\r\n". */
function trailersOf(tail: string): Fields {
  const m = /(?:^|\n)0+(?:[ \t;][^\r\n]*)?\r\n([\s\S]*)$/.exec(tail);
  if (!m || m[1] === "\r\n") return [];
  const list = new HeaderList();
  readFields(m[1]!, 0, 502, false, list);
  const out: Fields = [];
  const f = list.fields;
  for (let i = 0; i < f.length; i += 3) out.push([f[i + 1]!, f[i + 2]!]);
  return out;
}

/** Fields of an HTTP/1.1 head as HTTP/2 ones: lower-case, without connection-specific fields. */
function fieldsOf(headers: HeaderList, connection: string[], out: Fields, skipHost: boolean): void {
  const f = headers.fields;
  for (let i = 0; i < f.length; i += 3) {
    const name = f[i + 1]!;
    if (CONNECTION_SPECIFIC.has(name) || name === "te" || name === "trailer") continue;
    if (skipHost && name === "host") continue;
    if (connection.length > 0 && connection.indexOf(name) >= 0) continue;
    out.push([name, f[i + 2]!]);
  }
}

/** Body pieces queued for a reader, each with the flow-control credit it returns once read. */
class ByteQueue {
  readonly #items: Array<{ bytes: Uint8Array; credit: number }> = [];
  #wake: (() => void) | null = null;
  /** No more bytes will come: reads return EOF once the queue is empty. */
  ended = false;
  error: Error | null = null;

  push(bytes: Uint8Array, credit: number): void {
    if (bytes.length === 0 && credit === 0) return;
    this.#items.push({ bytes, credit });
    this.#notify();
  }

  end(error: Error | null = null): void {
    this.ended = true;
    if (error !== null && this.error === null) this.error = error;
    this.#notify();
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  /** Copies into p; resolves with bytes copied, null at EOF; `credit` gets the window to return. */
  async read(p: Uint8Array, credit: (n: number) => void): Promise<number | null> {
    while (this.#items.length === 0) {
      if (this.error !== null) throw this.error;
      if (this.ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    let n = 0;
    let give = 0;
    while (n < p.length && this.#items.length > 0) {
      const it = this.#items[0]!;
      const k = Math.min(it.bytes.length, p.length - n);
      p.set(it.bytes.subarray(0, k), n);
      n += k;
      if (k === it.bytes.length) {
        this.#items.shift();
        give += it.credit;
      } else {
        it.bytes = it.bytes.subarray(k);
      }
    }
    if (give > 0) credit(give);
    return n;
  }
}

function chunk(data: Uint8Array): Uint8Array {
  const size = binaryBytes(`${data.length.toString(16)}\r\n`);
  const out = new Uint8Array(size.length + data.length + 2);
  out.set(size);
  out.set(data, size.length);
  out.set(CRLF, size.length + data.length);
  return out;
}

function trailerBytes(fields: Fields): Uint8Array {
  let s = "0\r\n";
  for (const [k, v] of fields) s += `${k}: ${v}\r\n`;
  return binaryBytes(s + "\r\n");
}

/**
 * A stream a client opened, as the proxy's connection for one exchange:
 * reads give the request as HTTP/1.1, writes take the response.
 */
export class ServerStreamConn implements ByteConn {
  readonly #s: H2Stream;
  readonly #in = new ByteQueue();
  readonly #out: Http1ToFrames;
  readonly #req: H2Request;
  #received = 0;
  #closed = false;
  readonly #credit = (n: number) => this.#s.consumed(n);

  constructor(stream: H2Stream, req: H2Request) {
    this.#s = stream;
    this.#req = req;
    this.#in.push(binaryBytes(req.head), 0);
    const s = stream;
    this.#out = new Http1ToFrames({
      headers: (fields, end) => s.sendHeaders(fields, end),
      data: (bytes, end) => s.sendData(bytes, end),
    }, (text) => this.#responseHead(text));
    stream.handler = {
      onHeaders: (fields) => {
        // Trailers end the request: a declared length must have been met (RFC 9113 8.1.1).
        const cl = this.#req.contentLength;
        if (cl >= 0 && this.#received !== cl) return this.#malformed();
        // Trailers: they end the stream (h2_conn checked END_STREAM).
        if (this.#req.chunked) {
          const t: Fields = [];
          for (const [k, v] of fields) {
            try {
              checkField(k, v);
            } catch {
              this.#malformed();
              return;
            }
            if (k.charCodeAt(0) === 58) return this.#malformed();
            t.push([k, v]);
          }
          this.#in.push(trailerBytes(t), 0);
        }
        this.#endOfRequest();
      },
      onData: (data, end) => {
        this.#received += data.length;
        const cl = this.#req.contentLength;
        if (cl >= 0 && (this.#received > cl || (end && this.#received !== cl))) {
          // RFC 9113 8.1.1: DATA that disagrees with content-length is malformed.
          this.#malformed();
          return;
        }
        if (data.length > 0) this.#in.push(this.#req.chunked ? chunk(data) : data, data.length);
        if (end) {
          if (this.#req.chunked) this.#in.push(LAST, 0);
          this.#endOfRequest();
        }
      },
      onReset: () => {
        // The client cancelled: the proxy sees a hang-up.
        this.#in.end();
      },
    };
    if (stream.remoteEnded) this.#endOfRequest();
  }

  #malformed(): void {
    this.#s.reset(ErrorCode.Protocol);
    this.#in.end();
  }

  #endOfRequest(): void {
    // Reads do not end here: an EOF would be a hang-up to the proxy. They end with the response.
    if (this.#out.done) this.#in.end();
  }

  #responseHead(text: string): { fields: Fields; mode: BodyMode; length: number } | null {
    const res: ResponseHead = parseResponseHead(text);
    const fields: Fields = [[":status", String(res.status)]];
    fieldsOf(res.headers, res.connection, fields, false);
    if (res.status < 200) {
      if (res.status === 101) throw new Error("a protocol switch cannot go over HTTP/2");
      this.#s.sendHeaders(fields, false);
      return null;
    }
    let mode: BodyMode;
    if (responseHasNoBody(this.#req.method, res.status)) mode = "none";
    else if (res.chunked) mode = "chunked";
    else if (res.contentLength >= 0) mode = "length";
    else mode = "close";
    return { fields, mode, length: res.contentLength };
  }

  read(p: Uint8Array): Promise<number | null> {
    return this.#in.read(p, this.#credit);
  }

  async write(p: Uint8Array): Promise<number> {
    if (this.#closed) throw new Error("stream closed");
    try {
      await this.#out.write(p);
    } catch (e) {
      if (!(e instanceof StreamReset)) this.#s.reset(ErrorCode.Internal);
      throw e;
    }
    if (this.#out.done) this.#responded();
    return p.length;
  }

  #responded(): void {
    // The client may still be sending a body nobody will read (RFC 9113 8.1).
    if (!this.#s.remoteEnded) this.#s.reset(ErrorCode.NoError);
    this.#in.end();
  }

  async closeWrite(): Promise<void> {
    if (await this.#out.finish()) this.#responded();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#out.done) {
      void this.#out.finish().then((ok) => {
        if (!ok) this.#s.reset(ErrorCode.Internal);
        this.#s.release();
      }, () => {
        this.#s.reset(ErrorCode.Internal);
        this.#s.release();
      });
    } else {
      this.#s.release();
    }
    this.#in.end();
  }
}

/**
 * A stream we open to an h2c app, as the upstream connection of one
 * exchange: writes take the proxy's HTTP/1.1 request, reads give the app's
 * response as HTTP/1.1 (Connection: close, so it is never pooled).
 */
export class ClientStreamConn implements ByteConn {
  #s: H2Stream | null = null;
  readonly #in = new ByteQueue();
  readonly #out: Http1ToFrames;
  #method = "GET";
  #contentLength = -1;
  #received = 0;
  #chunked = false;
  #final = false;
  #closed = false;
  readonly #credit = (n: number) => this.#s?.consumed(n);

  constructor(
    /** Opens the stream when the request head is complete. */
    readonly open: (handlerOwner: ClientStreamConn) => H2Stream,
    readonly scheme: "http" | "https",
  ) {
    this.#out = new Http1ToFrames({
      headers: (fields, end) => this.#stream(fields, end),
      data: (bytes, end) => this.#s!.sendData(bytes, end),
    }, (text) => this.#requestHead(text));
  }

  #stream(fields: Fields, end: boolean): void {
    if (this.#s === null) {
      const s = this.open(this);
      this.#s = s;
      s.handler = {
        onHeaders: (f, e) => this.#onHeaders(f, e),
        onData: (d, e) => this.#onData(d, e),
        onReset: (err) => this.#in.end(err),
      };
    }
    this.#s.sendHeaders(fields, end);
  }

  #requestHead(text: string): { fields: Fields; mode: BodyMode; length: number } {
    const req: RequestHead = parseRequestHead(text);
    this.#method = req.method;
    const fields: Fields = [
      [":method", req.method],
      [":scheme", this.scheme],
      [":authority", req.host],
      [":path", req.path],
    ];
    fieldsOf(req.headers, req.connection, fields, true);
    // We relay trailers whatever the client said; gRPC servers look for this.
    fields.push(["te", "trailers"]);
    const mode: BodyMode = req.chunked ? "chunked" : req.contentLength > 0 ? "length" : "none";
    return { fields, mode, length: req.contentLength };
  }

  #onHeaders(fields: Fields, end: boolean): void {
    try {
      if (this.#final) {
        // Trailers end the stream (RFC 9113 8.1); anything after them would be a second message.
        if (!end) throw new MalformedMessage("the app sent trailers without END_STREAM");
        checkResponseFields(fields, true);
        this.#in.push(this.#chunked ? trailerBytes(fields) : EMPTY, 0);
        this.#in.end();
        return;
      }
      const status = checkResponseFields(fields, false);
      const list: Fields = [];
      let cl = -1;
      for (const [k, v] of fields) {
        if (k.charCodeAt(0) === 58) continue;
        if (k === "content-length") {
          if (cl >= 0) throw new MalformedMessage("more than one content-length");
          cl = contentLengthOf(v);
          if (cl < 0) {
            throw new MalformedMessage(`content-length "${v.slice(0, 40)}" is not a number`);
          }
        }
        list.push([k, v]);
      }
      const noBody = responseHasNoBody(this.#method, status);
      // A body that may still come goes chunked, even when the app gave a length: HTTP/2 allows
      // trailers after such a body (gRPC servers send them), and only a chunked body carries
      // them on. The length is still checked against the DATA.
      const chunked = status >= 200 && !noBody && !end;
      let head = `HTTP/1.1 ${status} ${reasonOf(status)}\r\n`;
      for (const [k, v] of list) {
        if (chunked && k === "content-length") continue;
        head += `${k}: ${v}\r\n`;
      }
      if (status < 200) {
        if (status === 101) throw new MalformedMessage("101 is not allowed in HTTP/2");
        if (end) throw new MalformedMessage("the app ended its stream with an interim response");
        this.#in.push(binaryBytes(head + "\r\n"), 0);
        return;
      }
      this.#final = true;
      this.#contentLength = cl;
      if (!noBody && end && cl < 0) head += "content-length: 0\r\n";
      if (chunked) {
        head += "transfer-encoding: chunked\r\n";
        this.#chunked = true;
      }
      this.#in.push(binaryBytes(head + "connection: close\r\n\r\n"), 0);
      if (end) this.#in.end();
    } catch (e) {
      this.#s?.reset(ErrorCode.Protocol);
      this.#in.end(e instanceof Error ? e : new Error(String(e)));
    }
  }

  #onData(data: Uint8Array, end: boolean): void {
    if (!this.#final) {
      this.#s?.reset(ErrorCode.Protocol);
      this.#in.end(new MalformedMessage("the app sent DATA before its response headers"));
      return;
    }
    this.#received += data.length;
    const cl = this.#contentLength;
    if (cl >= 0 && (this.#received > cl || (end && this.#received !== cl))) {
      this.#s?.reset(ErrorCode.Protocol);
      this.#in.end(new MalformedMessage("the app's DATA disagrees with its content-length"));
      return;
    }
    if (data.length > 0) this.#in.push(this.#chunked ? chunk(data) : data, data.length);
    if (end) {
      if (this.#chunked) this.#in.push(LAST, 0);
      this.#in.end();
    }
  }

  read(p: Uint8Array): Promise<number | null> {
    return this.#in.read(p, this.#credit);
  }

  async write(p: Uint8Array): Promise<number> {
    if (this.#closed) throw new Error("stream closed");
    if (this.#s?.resetCode !== undefined && this.#s.resetCode >= 0) {
      throw new StreamReset(this.#s.resetCode, true);
    }
    try {
      await this.#out.write(p);
    } catch (e) {
      if (e instanceof HttpError) {
        throw new Error(`request not relayable over HTTP/2: ${e.message}`);
      }
      throw e;
    }
    return p.length;
  }

  closeWrite(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const s = this.#s;
    // Not finished both ways: the app is told we are no longer interested.
    if (s !== null && !s.closed) s.reset(ErrorCode.Cancel);
    this.#in.end();
  }
}
