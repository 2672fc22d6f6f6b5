/**
 * HTTP/1.1 message heads and body framing for the data plane: a strict parser
 * for request heads (what clients send), a lenient one for response heads
 * (what apps send), the heads we forward, and a streaming scanner for chunked
 * bodies. Pure functions over "binary strings" (one char per byte), so bytes
 * outside ASCII pass through unchanged.
 *
 * Strict where lenience lets requests be smuggled past a proxy: no whitespace
 * before a header colon, no line folding, no control characters, one Host,
 * Content-Length and Transfer-Encoding never together, one Content-Length
 * value.
 */
import type { HeaderSource } from "./routing.ts";

export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = "HttpError";
  }
}

/** Largest accepted request or response head, in bytes. */
export const MAX_HEAD_BYTES = 64 * 1024;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Field values: visible chars, SP, HTAB and obs-text; no other controls.
// deno-lint-ignore no-control-regex -- matching control characters is the point
const BAD_VALUE_CHAR = /[\x00-\x08\x0a-\x1f\x7f]/;
// deno-lint-ignore no-control-regex -- as above
const BAD_TARGET_CHAR = /[\x00-\x20\x7f]/;
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::\d{0,5})?$/;

/**
 * Where the head starting at `start` ends: the offset just after the blank
 * line, or -1 when it is not complete yet. Lines end in LF, optionally
 * preceded by CR; leading blank lines (allowed before a request) are skipped
 * by the parser, not here.
 */
export function findHeadEnd(buf: Uint8Array, start: number, end: number): number {
  let i = start;
  // Skip the blank lines a client may send between requests.
  while (i < end && (buf[i] === 13 || buf[i] === 10)) i++;
  while (i < end) {
    const nl = buf.indexOf(10, i);
    if (nl < 0 || nl >= end) return -1;
    const next = nl + 1;
    if (next < end && buf[next] === 10) return next + 1;
    if (next + 1 < end && buf[next] === 13 && buf[next + 1] === 10) return next + 2;
    if (next >= end || (next + 1 >= end && buf[next] === 13)) return -1;
    i = next;
  }
  return -1;
}

const utf8 = new TextDecoder();

/** Bytes -> a string with one char per byte (latin-1), fast for ASCII. */
export function binaryString(buf: Uint8Array, start: number, end: number): string {
  const len = end - start;
  const s = utf8.decode(buf.subarray(start, end));
  // Same length and no replacement char means every byte was ASCII.
  if (s.length === len && s.indexOf("\ufffd") < 0) return s;
  let out = "";
  for (let i = start; i < end; i += 4096) {
    out += String.fromCharCode.apply(
      null,
      buf.subarray(i, Math.min(end, i + 4096)) as unknown as number[],
    );
  }
  return out;
}

const utf8enc = new TextEncoder();

/** A binary string -> bytes (one byte per char), with `extra` spare bytes at the end. */
export function binaryBytes(
  s: string,
  extra = 0,
  alloc: (n: number) => Uint8Array = (n) => new Uint8Array(n),
): Uint8Array {
  const out = alloc(s.length + extra);
  // ASCII encodes the same in UTF-8: one native call in the common case.
  const r = utf8enc.encodeInto(s, out);
  if (r.read === s.length && r.written === s.length) return out;
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** A binary string (latin-1) as the UTF-8 text it encodes, for matching and logs. */
export function utf8Of(binary: string): string {
  for (let i = 0; i < binary.length; i++) {
    if (binary.charCodeAt(i) > 0x7f) {
      const bytes = new Uint8Array(binary.length);
      for (let j = 0; j < binary.length; j++) bytes[j] = binary.charCodeAt(j);
      return utf8.decode(bytes);
    }
  }
  return binary;
}

/**
 * Header fields as one flat array of triples: original name, lower-case
 * name, value. One array instead of three: most heads have a few fields, and
 * each array's first push allocates room for 17.
 */
export class HeaderList implements HeaderSource {
  readonly fields: string[] = [];

  add(raw: string, value: string): void {
    this.fields.push(raw, raw.toLowerCase(), value);
  }

  /** Values of a lower-case name joined with ", "; null when absent. */
  get(name: string): string | null {
    let out: string | null = null;
    const f = this.fields;
    for (let i = 1; i < f.length; i += 3) {
      if (f[i] === name) out = out === null ? f[i + 1]! : `${out}, ${f[i + 1]}`;
    }
    return out;
  }

  count(name: string): number {
    let n = 0;
    const f = this.fields;
    for (let i = 1; i < f.length; i += 3) if (f[i] === name) n++;
    return n;
  }
}

/** Lower-case comma-separated tokens of a header value. */
export function tokensOf(value: string | null): string[] {
  if (value === null) return [];
  const out: string[] = [];
  for (const part of value.split(",")) {
    const t = part.trim().toLowerCase();
    if (t !== "") out.push(t);
  }
  return out;
}

export interface RequestHead {
  method: string;
  /** The request target as received. */
  target: string;
  /** Origin-form target (path and query) to send upstream. */
  path: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: number;
  headers: HeaderList;
  /** Host header value (or the authority of an absolute-form target). */
  host: string;
  /** Body length; -1 when chunked or when there is no body. */
  contentLength: number;
  chunked: boolean;
  /** Whether the client wants the connection kept open after this exchange. */
  keepAlive: boolean;
  /** Upgrade header value when Connection asks for an upgrade, else null. */
  upgrade: string | null;
  /** Lower-case tokens of the Connection header. */
  connection: string[];
  /**
   * The head can be forwarded as received plus X-Forwarded-* lines: HTTP/1.1,
   * origin-form, CRLF line ends, no hop-by-hop or X-Forwarded-* fields.
   */
  simple: boolean;
  /**
   * The head's bytes as received (set by the reader; used when `simple`). A
   * view into the connection's buffer until copied: valid until its next read.
   */
  raw: Uint8Array | null;
}

/** Splits a head into lines, dropping a trailing CR on each and leading blank lines. */
function linesOf(head: string): string[] {
  const lines = head.split("\n");
  const out: string[] = [];
  let started = false;
  for (let line of lines) {
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (!started) {
      if (line === "") continue;
      started = true;
    }
    if (line === "") break;
    out.push(line);
  }
  return out;
}

function parseFields(lines: string[], headers: HeaderList, strict: boolean): void {
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const c0 = line.charCodeAt(0);
    if (c0 === 32 || c0 === 9) {
      if (strict) throw new HttpError(400, "obsolete header line folding is not accepted");
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) {
      if (strict) throw new HttpError(400, `malformed header line (no name or colon)`);
      continue;
    }
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) {
      if (strict) {
        throw new HttpError(400, "malformed header name (whitespace or a forbidden character)");
      }
      continue;
    }
    let a = colon + 1;
    let b = line.length;
    while (a < b && (line.charCodeAt(a) === 32 || line.charCodeAt(a) === 9)) a++;
    while (b > a && (line.charCodeAt(b - 1) === 32 || line.charCodeAt(b - 1) === 9)) b--;
    const value = line.slice(a, b);
    if (BAD_VALUE_CHAR.test(value)) {
      if (strict) throw new HttpError(400, `header ${name} has a control character in its value`);
      continue;
    }
    headers.add(name, value);
  }
}

function parseContentLength(values: string | null, status: number): number {
  if (values === null) return -1;
  let n = -1;
  for (const part of values.split(",")) {
    const t = part.trim();
    if (!/^\d{1,15}$/.test(t)) throw new HttpError(status, `Content-Length "${t}" is not a number`);
    const v = Number(t);
    if (n >= 0 && v !== n) throw new HttpError(status, "conflicting Content-Length values");
    n = v;
  }
  return n;
}

const KNOWN_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]);

/**
 * Parses a request head (a binary string ending in the blank line). Throws
 * HttpError. One pass over the text: the fields that matter for framing and
 * forwarding are picked up as they go by, not looked up again afterwards.
 */
export function parseRequestHead(head: string): RequestHead {
  const len = head.length;
  let pos = 0;
  // Blank lines before a request line are allowed (RFC 9112 2.2).
  while (pos < len && (head.charCodeAt(pos) === 13 || head.charCodeAt(pos) === 10)) pos++;
  let crlfOnly = pos === 0;
  let nl = head.indexOf("\n", pos);
  if (nl < 0 || pos >= len) throw new HttpError(400, "empty request");
  let lineEnd = head.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
  if (lineEnd === nl) crlfOnly = false;
  const first = head.slice(pos, lineEnd);
  const sp1 = first.indexOf(" ");
  const sp2 = first.lastIndexOf(" ");
  if (sp1 <= 0 || sp2 === sp1) throw new HttpError(400, "malformed request line");
  const method = first.slice(0, sp1);
  const target = first.slice(sp1 + 1, sp2);
  const version = first.slice(sp2 + 1);
  if (!KNOWN_METHODS.has(method) && !TOKEN.test(method)) {
    throw new HttpError(400, "malformed request method");
  }
  if (target === "" || BAD_TARGET_CHAR.test(target)) {
    throw new HttpError(400, "malformed request target");
  }
  let minor: number;
  if (version === "HTTP/1.1") minor = 1;
  else if (version === "HTTP/1.0") minor = 0;
  else if (/^HTTP\/\d(\.\d)?$/.test(version)) {
    throw new HttpError(505, `${version} is not supported here; use HTTP/1.1`);
  } else throw new HttpError(400, "malformed HTTP version");

  const headers = new HeaderList();
  let hostCount = 0;
  let host: string | null = null;
  let te: string | null = null;
  let cl: string | null = null;
  let connectionValue: string | null = null;
  let upgradeValue: string | null = null;
  let plainFields = true;
  pos = nl + 1;
  while (pos < len) {
    nl = head.indexOf("\n", pos);
    if (nl < 0) break;
    lineEnd = head.charCodeAt(nl - 1) === 13 && nl - 1 >= pos ? nl - 1 : nl;
    if (lineEnd === nl) crlfOnly = false;
    if (lineEnd === pos) break;
    const c0 = head.charCodeAt(pos);
    if (c0 === 32 || c0 === 9) {
      throw new HttpError(400, "obsolete header line folding is not accepted");
    }
    const colon = head.indexOf(":", pos);
    if (colon <= pos || colon > lineEnd) {
      throw new HttpError(400, `malformed header line (no name or colon)`);
    }
    const name = head.slice(pos, colon);
    if (!TOKEN.test(name)) {
      throw new HttpError(400, "malformed header name (whitespace or a forbidden character)");
    }
    let a = colon + 1;
    let b = lineEnd;
    while (a < b && (head.charCodeAt(a) === 32 || head.charCodeAt(a) === 9)) a++;
    while (b > a && (head.charCodeAt(b - 1) === 32 || head.charCodeAt(b - 1) === 9)) b--;
    const value = head.slice(a, b);
    if (BAD_VALUE_CHAR.test(value)) {
      throw new HttpError(400, `header ${name} has a control character in its value`);
    }
    const lower = name.toLowerCase();
    headers.fields.push(name, lower, value);
    switch (lower.length) {
      case 4:
        if (lower === "host") {
          hostCount++;
          host = value;
        }
        break;
      case 14:
        if (lower === "content-length") cl = cl === null ? value : `${cl}, ${value}`;
        break;
      case 17:
        if (lower === "transfer-encoding") te = te === null ? value : `${te}, ${value}`;
        break;
      case 10:
        if (lower === "connection") {
          connectionValue = connectionValue === null ? value : `${connectionValue}, ${value}`;
          plainFields = false;
        } else if (lower === "keep-alive") plainFields = false;
        break;
      case 7:
        if (lower === "upgrade") {
          upgradeValue = upgradeValue === null ? value : `${upgradeValue}, ${value}`;
          plainFields = false;
        } else if (lower === "trailer") plainFields = false;
        break;
      default:
        if (HOP_BY_HOP.has(lower) || lower.startsWith("x-forwarded-")) plainFields = false;
    }
    pos = nl + 1;
  }
  if (hostCount > 1) throw new HttpError(400, "more than one Host header");

  // Absolute-form targets carry the authority; it overrides Host (RFC 9112 3.2.2).
  let path = target;
  if (target.charCodeAt(0) !== 47 && target !== "*") {
    const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)([^#]*)/.exec(target);
    if (!m) {
      if (method === "CONNECT") throw new HttpError(405, "CONNECT is not supported");
      throw new HttpError(400, "malformed request target");
    }
    host = m[1]!.replace(/^[^@]*@/, "");
    path = m[2] === "" ? "/" : m[2]!;
  }
  if (host === null) {
    if (minor === 1) throw new HttpError(400, "the Host header is missing");
    host = "";
  } else if (host === "") {
    throw new HttpError(400, "the Host header is empty");
  } else if (!HOST.test(host)) {
    throw new HttpError(400, "the Host header is not a host name or address");
  }

  let chunked = false;
  if (te !== null) {
    if (minor === 0) throw new HttpError(400, "Transfer-Encoding is not allowed in HTTP/1.0");
    const codings = tokensOf(te);
    if (codings[codings.length - 1] !== "chunked") {
      throw new HttpError(400, "Transfer-Encoding must end with chunked");
    }
    if (codings.indexOf("chunked") !== codings.length - 1) {
      throw new HttpError(400, "chunked may appear only once, last, in Transfer-Encoding");
    }
    chunked = true;
  }
  const contentLength = parseContentLength(cl, 400);
  if (chunked && contentLength >= 0) {
    throw new HttpError(400, "Content-Length and Transfer-Encoding must not both be set");
  }
  const connection = connectionValue === null ? NO_TOKENS : tokensOf(connectionValue);
  const keepAlive = minor === 1
    ? connection.indexOf("close") < 0
    : connection.indexOf("keep-alive") >= 0;
  const upgrade = upgradeValue !== null && connection.indexOf("upgrade") >= 0 && minor === 1
    ? upgradeValue
    : null;
  return {
    simple: plainFields && crlfOnly && minor === 1 && path === target && !chunked,
    raw: null,
    method,
    target,
    path,
    minor,
    headers,
    host,
    contentLength,
    chunked,
    keepAlive,
    upgrade,
    connection,
  };
}

const NO_TOKENS: string[] = [];

export interface ResponseHead {
  status: number;
  reason: string;
  minor: number;
  headers: HeaderList;
  /** -1 when unknown (chunked, or delimited by the connection closing). */
  contentLength: number;
  chunked: boolean;
  /** The upstream will close the connection after this response. */
  close: boolean;
  connection: string[];
}

/** Parses a response head leniently (apps are trusted more than clients). Throws HttpError(502). */
export function parseResponseHead(head: string): ResponseHead {
  const lines = linesOf(head);
  const first = lines[0];
  const m = first === undefined ? null : /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(first);
  if (!m) throw new HttpError(502, "the app sent a malformed response status line");
  const minor = Number(m[1]);
  const headers = new HeaderList();
  parseFields(lines, headers, false);
  const te = headers.get("transfer-encoding");
  const chunked = te !== null && tokensOf(te).at(-1) === "chunked";
  const cl = chunked ? -1 : parseContentLength(headers.get("content-length"), 502);
  const connection = tokensOf(headers.get("connection"));
  const close = minor === 1
    ? connection.indexOf("close") >= 0
    : connection.indexOf("keep-alive") < 0;
  return {
    status: Number(m[2]),
    reason: m[3] ?? "",
    minor,
    headers,
    contentLength: cl,
    chunked,
    close: close || (te !== null && !chunked),
    connection,
  };
}

/** Whether a response to this request with this status has no body at all. */
export function responseHasNoBody(method: string, status: number): boolean {
  return method === "HEAD" || (status >= 100 && status < 200) || status === 204 ||
    status === 304;
}

// Hop-by-hop fields (RFC 9110 7.6.1) plus the ones proxies conventionally drop.
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

export interface ForwardOptions {
  /** The client's address, appended to X-Forwarded-For. */
  clientIp: string;
  /** "http" or "https", for X-Forwarded-Proto when the client did not send one. */
  proto: string;
}

/**
 * The head sent upstream: HTTP/1.1, origin-form target, Host preserved,
 * hop-by-hop fields removed (chunked framing and upgrades are re-declared),
 * X-Forwarded-For appended, X-Forwarded-Host/Proto set unless present.
 */
export function upstreamRequestHead(req: RequestHead, opts: ForwardOptions): string {
  const h = req.headers;
  let out = `${req.method} ${req.path} HTTP/1.1\r\n`;
  let xff: string | null = null;
  let sawXfh = false;
  let sawXfp = false;
  let sawHost = false;
  const named = req.connection;
  const f = h.fields;
  for (let i = 0; i < f.length; i += 3) {
    const name = f[i + 1]!;
    if (HOP_BY_HOP.has(name)) continue;
    if (named.length > 0 && named.indexOf(name) >= 0) continue;
    if (name === "x-forwarded-for") {
      xff = xff === null ? f[i + 2]! : `${xff}, ${f[i + 2]}`;
      continue;
    }
    if (name === "host") sawHost = true;
    else if (name === "x-forwarded-host") sawXfh = true;
    else if (name === "x-forwarded-proto") sawXfp = true;
    out += `${f[i]}: ${f[i + 2]}\r\n`;
  }
  if (!sawHost && req.host !== "") out += `Host: ${req.host}\r\n`;
  if (req.chunked) out += "Transfer-Encoding: chunked\r\n";
  if (req.upgrade !== null) out += `Connection: Upgrade\r\nUpgrade: ${req.upgrade}\r\n`;
  out += `X-Forwarded-For: ${xff === null ? opts.clientIp : `${xff}, ${opts.clientIp}`}\r\n`;
  if (!sawXfh && req.host !== "") out += `X-Forwarded-Host: ${req.host}\r\n`;
  if (!sawXfp) out += `X-Forwarded-Proto: ${opts.proto}\r\n`;
  return out + "\r\n";
}

/**
 * The forwarded header fields as pairs, for clients that take a header list
 * (the h2c path): the same rules as upstreamRequestHead, without framing.
 */
export function forwardedHeaderPairs(
  req: RequestHead,
  opts: ForwardOptions,
): Array<[string, string]> {
  const h = req.headers;
  const out: Array<[string, string]> = [];
  let xff: string | null = null;
  let sawXfh = false;
  let sawXfp = false;
  const named = req.connection;
  const f = h.fields;
  for (let i = 0; i < f.length; i += 3) {
    const name = f[i + 1]!;
    if (HOP_BY_HOP.has(name) || name === "content-length") continue;
    if (named.length > 0 && named.indexOf(name) >= 0) continue;
    if (name === "x-forwarded-for") {
      xff = xff === null ? f[i + 2]! : `${xff}, ${f[i + 2]}`;
      continue;
    }
    if (name === "x-forwarded-host") sawXfh = true;
    else if (name === "x-forwarded-proto") sawXfp = true;
    out.push([name, f[i + 2]!]);
  }
  out.push(["x-forwarded-for", xff === null ? opts.clientIp : `${xff}, ${opts.clientIp}`]);
  if (!sawXfh && req.host !== "") out.push(["x-forwarded-host", req.host]);
  if (!sawXfp) out.push(["x-forwarded-proto", opts.proto]);
  return out;
}

/** Whether a header name is hop-by-hop (never forwarded as is). */
export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name);
}

/**
 * The head sent upstream for a `simple` request, as bytes: the head as
 * received with the X-Forwarded-* lines inserted before the blank line, and
 * room for `extra` body bytes after it. Equivalent to upstreamRequestHead
 * for such requests, without re-serialising every field.
 */
export function spliceRequestHead(
  req: RequestHead,
  opts: ForwardOptions,
  extra: number,
  alloc: (n: number) => Uint8Array = (n) => new Uint8Array(n),
  lines: (host: string) => Uint8Array = (host) => forwardedLines(opts, host),
): { bytes: Uint8Array; headLength: number } | null {
  const raw = req.raw;
  if (!req.simple || raw === null) return null;
  const add = lines(req.host);
  const keep = raw.length - 2;
  const headLength = keep + add.length;
  const bytes = alloc(headLength + extra);
  bytes.set(raw.subarray(0, keep));
  bytes.set(add, keep);
  return { bytes, headLength };
}

/**
 * The X-Forwarded-* lines and the blank line that end a spliced request
 * head. Every part is ASCII: an IP, a Host that passed the HOST pattern, a
 * scheme. Callers cache the bytes per connection (the Host rarely changes).
 */
export function forwardedLines(opts: ForwardOptions, host: string): Uint8Array {
  return utf8enc.encode(
    `X-Forwarded-For: ${opts.clientIp}\r\nX-Forwarded-Host: ${host}\r\n` +
      `X-Forwarded-Proto: ${opts.proto}\r\n\r\n`,
  );
}

/**
 * What the data plane needs to know about a response head, found without
 * building a header list; `spliceable` says the head can go to an HTTP/1.1
 * client as received plus our own lines (no hop-by-hop fields to drop).
 */
export interface ResponseInfo {
  status: number;
  minor: number;
  contentLength: number;
  chunked: boolean;
  close: boolean;
  spliceable: boolean;
}

const RESPONSE_LINE = /^HTTP\/1\.([01]) (\d{3})(?: [^\r\n]*)?\r?$/;

/** Scans a response head (binary string); null when it needs the full parser. */
export function scanResponseHead(head: string): ResponseInfo | null {
  let nl = head.indexOf("\n");
  if (nl < 0) return null;
  const m = RESPONSE_LINE.exec(head.slice(0, nl));
  if (!m) return null;
  const minor = Number(m[1]);
  let contentLength = -1;
  let chunked = false;
  let close = minor === 0;
  let spliceable = minor === 1 && head.endsWith("\r\n\r\n");
  let pos = nl + 1;
  while (pos < head.length) {
    nl = head.indexOf("\n", pos);
    if (nl < 0) return null;
    const lineEnd = head.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
    if (lineEnd === pos) break;
    const colon = head.indexOf(":", pos);
    if (colon < 0 || colon > lineEnd) return null;
    const len = colon - pos;
    // Only names of these lengths can matter; others are copied untouched.
    if (
      len === 14 || len === 17 || len === 10 || len === 16 || len === 2 || len === 7 ||
      len === 22 || len === 18 || len === 19
    ) {
      const name = head.slice(pos, colon).toLowerCase();
      const value = head.slice(colon + 1, lineEnd).trim();
      if (name === "content-length") {
        if (!/^\d{1,15}$/.test(value)) return null;
        const n = Number(value);
        if (contentLength >= 0 && n !== contentLength) return null;
        contentLength = n;
      } else if (name === "transfer-encoding") {
        const codings = tokensOf(value);
        if (codings[codings.length - 1] !== "chunked") return null;
        chunked = true;
      } else if (name === "connection") {
        const t = tokensOf(value);
        if (t.indexOf("close") >= 0) close = true;
        if (minor === 0 && t.indexOf("keep-alive") >= 0) close = false;
        spliceable = false;
      } else if (HOP_BY_HOP.has(name) || name === "x-keda-http-cold-start") {
        spliceable = false;
      }
    }
    pos = nl + 1;
  }
  if (chunked) {
    // Both framings declared: drop Content-Length, which needs the full rewrite.
    if (contentLength >= 0) spliceable = false;
    contentLength = -1;
  }
  return { status: Number(m[2]), minor, contentLength, chunked, close, spliceable };
}

const LOWER = new Uint8Array(256).map((_, i) => (i >= 65 && i <= 90 ? i + 32 : i));

/** Whether buf[at, at + name.length) equals a lower-case ASCII name, ignoring case. */
function bytesEqualLower(buf: Uint8Array, at: number, name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    if (LOWER[buf[at + i]!] !== name.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * scanResponseHead over the bytes of a head buf[start, end) (end just past
 * the blank line), without decoding it: the common case of a response that
 * is only spliced needs no string at all. Null when the full parser must look.
 */
export function scanResponseBytes(
  buf: Uint8Array,
  start: number,
  end: number,
): ResponseInfo | null {
  // "HTTP/1.x SSS"
  if (
    end - start < 16 || buf[start] !== 72 || buf[start + 4] !== 47 || buf[start + 5] !== 49 ||
    buf[start + 6] !== 46 || buf[start + 8] !== 32
  ) {
    return null;
  }
  const m = buf[start + 7]!;
  if (m !== 48 && m !== 49) return null;
  const minor = m - 48;
  const d1 = buf[start + 9]! - 48, d2 = buf[start + 10]! - 48, d3 = buf[start + 11]! - 48;
  if (d1 < 1 || d1 > 9 || d2 < 0 || d2 > 9 || d3 < 0 || d3 > 9) return null;
  const after = buf[start + 12]!;
  if (after !== 32 && after !== 13 && after !== 10) return null;
  const status = d1 * 100 + d2 * 10 + d3;
  let contentLength = -1;
  // Chunked or Connection fields send the head to the string scanner (below).
  const chunked = false;
  const close = minor === 0;
  let spliceable = minor === 1 && buf[end - 4] === 13 && buf[end - 3] === 10;
  let nl = buf.indexOf(10, start);
  if (nl < 0 || nl >= end) return null;
  let pos = nl + 1;
  while (pos < end) {
    nl = buf.indexOf(10, pos);
    if (nl < 0 || nl >= end) return null;
    const lineEnd = buf[nl - 1] === 13 ? nl - 1 : nl;
    if (lineEnd === pos) break;
    if (lineEnd === nl) spliceable = false;
    let colon = pos;
    while (colon < lineEnd && buf[colon] !== 58) colon++;
    if (colon === lineEnd || colon === pos) return null;
    const len = colon - pos;
    if (len === 14 && bytesEqualLower(buf, pos, "content-length")) {
      let v = colon + 1;
      while (v < lineEnd && (buf[v] === 32 || buf[v] === 9)) v++;
      let e = lineEnd;
      while (e > v && (buf[e - 1] === 32 || buf[e - 1] === 9)) e--;
      if (e === v || e - v > 15) return null;
      let n = 0;
      for (let i = v; i < e; i++) {
        const d = buf[i]! - 48;
        if (d < 0 || d > 9) return null;
        n = n * 10 + d;
      }
      if (contentLength >= 0 && n !== contentLength) return null;
      contentLength = n;
    } else if (
      (len === 17 && bytesEqualLower(buf, pos, "transfer-encoding")) ||
      (len === 10 && bytesEqualLower(buf, pos, "connection"))
    ) {
      // Rare enough for responses to let the string scanner decide.
      return null;
    } else if (
      (len === 10 && bytesEqualLower(buf, pos, "keep-alive")) ||
      (len === 7 &&
        (bytesEqualLower(buf, pos, "upgrade") || bytesEqualLower(buf, pos, "trailer"))) ||
      (len === 2 && bytesEqualLower(buf, pos, "te")) ||
      (len === 16 && bytesEqualLower(buf, pos, "proxy-connection")) ||
      (len === 18 && bytesEqualLower(buf, pos, "proxy-authenticate")) ||
      (len === 19 && bytesEqualLower(buf, pos, "proxy-authorization")) ||
      (len === 22 && bytesEqualLower(buf, pos, "x-keda-http-cold-start"))
    ) {
      spliceable = false;
    }
    pos = nl + 1;
  }
  return { status, minor, contentLength, chunked, close, spliceable };
}

/** Our lines for a spliced response head (cold start, connection), with the blank line. */
export function responseExtraLines(coldStart: boolean | null, close: boolean): Uint8Array {
  return EXTRA_LINES[(coldStart === null ? 0 : coldStart ? 1 : 2) * 2 + (close ? 1 : 0)]!;
}

const EXTRA_LINES: Uint8Array[] = [];
for (const cold of [null, true, false]) {
  for (const close of [false, true]) {
    let s = "";
    if (cold !== null) s += `X-KEDA-HTTP-Cold-Start: ${cold}\r\n`;
    if (close) s += "Connection: close\r\n";
    EXTRA_LINES.push(new TextEncoder().encode(s + "\r\n"));
  }
}

export interface ClientResponseOptions {
  /** Value of X-KEDA-HTTP-Cold-Start, or null to leave it out. */
  coldStart: boolean | null;
  /** Close the client connection after this response. */
  close: boolean;
  /** The client speaks HTTP/1.0 (keep-alive must then be explicit). */
  http10: boolean;
  /** Strip chunked framing (the body is sent de-chunked, delimited by close). */
  dechunk: boolean;
  /** A 101 response: keep Connection/Upgrade. */
  upgraded: boolean;
}

const COLD_TRUE = "X-KEDA-HTTP-Cold-Start: true\r\n";
const COLD_FALSE = "X-KEDA-HTTP-Cold-Start: false\r\n";

/** The head sent to the client for an app's response. */
export function clientResponseHead(res: ResponseHead, opts: ClientResponseOptions): string {
  const h = res.headers;
  let out = opts.http10
    ? `HTTP/1.0 ${res.status} ${res.reason}\r\n`
    : `HTTP/1.1 ${res.status} ${res.reason}\r\n`;
  const named = res.connection;
  const f = h.fields;
  for (let i = 0; i < f.length; i += 3) {
    const name = f[i + 1]!;
    if (opts.upgraded) {
      if (name !== "connection" && name !== "upgrade" && HOP_BY_HOP.has(name)) continue;
    } else if (HOP_BY_HOP.has(name)) {
      // Chunked framing and its Trailer declaration pass through unchanged.
      if (name === "transfer-encoding" && res.chunked && !opts.dechunk) {
        out += "Transfer-Encoding: chunked\r\n";
      } else if (name === "trailer" && res.chunked && !opts.dechunk) {
        out += `${f[i]}: ${f[i + 2]}\r\n`;
      }
      continue;
    } else if (named.length > 0 && named.indexOf(name) >= 0) continue;
    if (name === "content-length" && res.chunked) continue;
    if (name === "x-keda-http-cold-start") continue;
    out += `${f[i]}: ${f[i + 2]}\r\n`;
  }
  if (opts.coldStart !== null) out += opts.coldStart ? COLD_TRUE : COLD_FALSE;
  if (!opts.upgraded) {
    if (opts.close) out += "Connection: close\r\n";
    else if (opts.http10) out += "Connection: keep-alive\r\n";
  }
  return out + "\r\n";
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  421: "Misdirected Request",
  431: "Request Header Fields Too Large",
  499: "Client Closed Request",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

export function reasonOf(status: number): string {
  return REASONS[status] ?? "Error";
}

/** A complete response of the proxy's own (errors, 404), as bytes. */
export function plainResponse(
  status: number,
  body: string,
  opts: {
    close: boolean;
    http10?: boolean;
    headers?: Array<[string, string]>;
    head?: boolean;
  },
): Uint8Array {
  const bytes = utf8enc.encode(body);
  let out = `HTTP/1.${opts.http10 ? 0 : 1} ${status} ${reasonOf(status)}\r\n` +
    `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${bytes.length}\r\n`;
  for (const [k, v] of opts.headers ?? []) out += `${k}: ${v}\r\n`;
  if (opts.close) out += "Connection: close\r\n";
  else if (opts.http10) out += "Connection: keep-alive\r\n";
  out += "\r\n";
  const head = binaryBytes(out, opts.head ? 0 : bytes.length);
  if (!opts.head) head.set(bytes, out.length);
  return head;
}

// ---------------------------------------------------------------------------
// Chunked bodies

const enum CS {
  Size,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  Trailer,
  TrailerEndLf,
  Done,
}

const MAX_CHUNK_LINE = 4096;
const MAX_TRAILERS = 16 * 1024;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/**
 * Follows chunked framing across reads to find where the message ends; it
 * can also hand out the data ranges (to de-chunk). Throws HttpError(400) on
 * malformed framing.
 */
export class ChunkedScanner {
  #state = CS.Size;
  #size = 0;
  #digits = 0;
  #lineLen = 0;
  #trailerLen = 0;

  get done(): boolean {
    return this.#state === CS.Done;
  }

  /**
   * Scans buf[start, end). Returns the offset just past the message's end,
   * or -1 when more bytes are needed. `onData` receives the payload ranges.
   */
  scan(
    buf: Uint8Array,
    start: number,
    end: number,
    onData?: (from: number, to: number) => void,
  ): number {
    let i = start;
    while (i < end) {
      switch (this.#state) {
        case CS.Size: {
          const c = buf[i]!;
          const v = hexValue(c);
          if (v >= 0) {
            if (++this.#digits > 13) throw new HttpError(400, "chunk size too large");
            this.#size = this.#size * 16 + v;
            i++;
          } else if (this.#digits === 0) {
            throw new HttpError(400, "malformed chunk size");
          } else if (c === 59 || c === 32 || c === 9) {
            this.#state = CS.Ext;
            this.#lineLen = 0;
          } else if (c === 13) {
            this.#state = CS.SizeLf;
            i++;
          } else if (c === 10) {
            i++;
            this.#endSizeLine();
          } else throw new HttpError(400, "malformed chunk size");
          break;
        }
        case CS.Ext: {
          const nl = buf.indexOf(10, i);
          const stop = nl < 0 || nl >= end ? end : nl;
          this.#lineLen += stop - i;
          if (this.#lineLen > MAX_CHUNK_LINE) throw new HttpError(400, "chunk extension too long");
          if (stop === end) {
            i = end;
          } else {
            i = stop + 1;
            this.#endSizeLine();
          }
          break;
        }
        case CS.SizeLf:
          if (buf[i] !== 10) throw new HttpError(400, "malformed chunk size line");
          i++;
          this.#endSizeLine();
          break;
        case CS.Data: {
          const n = Math.min(this.#size, end - i);
          if (onData && n > 0) onData(i, i + n);
          i += n;
          this.#size -= n;
          if (this.#size === 0) this.#state = CS.DataCr;
          break;
        }
        case CS.DataCr:
          if (buf[i] === 13) {
            this.#state = CS.DataLf;
            i++;
          } else if (buf[i] === 10) {
            this.#state = CS.Size;
            i++;
          } else throw new HttpError(400, "chunk data longer than its size");
          break;
        case CS.DataLf:
          if (buf[i] !== 10) throw new HttpError(400, "chunk data longer than its size");
          this.#state = CS.Size;
          i++;
          break;
        case CS.TrailerStart:
          if (buf[i] === 13) {
            this.#state = CS.TrailerEndLf;
            i++;
          } else if (buf[i] === 10) {
            this.#state = CS.Done;
            return i + 1;
          } else this.#state = CS.Trailer;
          break;
        case CS.Trailer: {
          const nl = buf.indexOf(10, i);
          const stop = nl < 0 || nl >= end ? end : nl;
          this.#trailerLen += stop - i + 1;
          if (this.#trailerLen > MAX_TRAILERS) throw new HttpError(400, "trailers too large");
          if (stop === end) i = end;
          else {
            i = stop + 1;
            this.#state = CS.TrailerStart;
          }
          break;
        }
        case CS.TrailerEndLf:
          if (buf[i] !== 10) throw new HttpError(400, "malformed end of chunked body");
          this.#state = CS.Done;
          return i + 1;
        case CS.Done:
          return i;
      }
    }
    return this.#state === CS.Done ? i : -1;
  }

  #endSizeLine(): void {
    if (this.#size === 0) this.#state = CS.TrailerStart;
    else this.#state = CS.Data;
    this.#digits = 0;
  }
}

/** Frames bytes as one chunk (for bodies we re-encode, e.g. from h2c). */
export function chunkOf(data: Uint8Array): Uint8Array {
  const head = `${data.length.toString(16)}\r\n`;
  const out = new Uint8Array(head.length + data.length + 2);
  utf8enc.encodeInto(head, out);
  out.set(data, head.length);
  out[out.length - 2] = 13;
  out[out.length - 1] = 10;
  return out;
}

export const LAST_CHUNK: Uint8Array = utf8enc.encode("0\r\n\r\n");
