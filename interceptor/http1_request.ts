/**
 * HTTP/1.1 request heads: the strict parser for what clients send, and the
 * heads we forward to apps. Strict where lenience lets requests be smuggled
 * past a proxy (RFC 9112 2.2, 3, 5, 6): CRLF line ends, no whitespace before
 * a colon, no line folding, no control characters, one Host, one
 * Content-Length of digits only, Transfer-Encoding exactly `chunked` and
 * never with Content-Length.
 *
 * Framing sent upstream is generated from what the parser decided, never
 * copied from the client's fields; a head is forwarded as received
 * (`simple`) only when it holds no field of the special-field table that
 * forwarding would change.
 */
import { binaryBytes } from "./http1_bytes.ts";
import {
  CONNECTION,
  CONTENT_LENGTH,
  contentLengthOf,
  fieldKind,
  HeaderList,
  HOST,
  HttpError,
  isToken,
  NONE,
  readFields,
  TCHAR,
  tokensOf,
  TRAILER,
  TRANSFER_ENCODING,
  UPGRADE,
  X_FORWARDED_FOR,
  X_FORWARDED_HOST,
  X_FORWARDED_PROTO,
} from "./http1_fields.ts";

export interface RequestHead {
  method: string;
  /** The request target as received. */
  target: string;
  /** Origin-form target (path and query) to send upstream. */
  path: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1 (and any later HTTP/1.x, RFC 9110 2.5). */
  minor: number;
  headers: HeaderList;
  /** Host to route by and forward: the Host field, or an absolute-form target's authority. */
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
   * The head can be forwarded as received plus X-Forwarded-* lines: HTTP/1.1
   * exactly, origin-form, no field that forwarding would drop or change.
   */
  simple: boolean;
  /**
   * The head's bytes as received (set by the reader; used when `simple`). A
   * view into the connection's buffer until copied: valid until its next read.
   */
  raw: Uint8Array | null;
}

// Bytes past ASCII too: a URI is ASCII (RFC 3986), and llhttp and hyper refuse them.
// deno-lint-ignore no-control-regex -- matching control characters is the point
const BAD_TARGET_CHAR = /[\x00-\x20\x7f-\xff]/;
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::\d{0,5})?$/;
const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^#]*)$/;

/** Methods a 405 for CONNECT lists as allowed. */
const ALLOW = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE";

const NO_TOKENS: string[] = [];

/**
 * Parses a request head (a binary string ending in the blank line). Throws
 * HttpError with the status to answer.
 */
export function parseRequestHead(head: string): RequestHead {
  const len = head.length;
  let pos = 0;
  // Blank lines before a request line are allowed (RFC 9112 2.2).
  while (pos < len && (head.charCodeAt(pos) === 13 || head.charCodeAt(pos) === 10)) pos++;
  const nl = head.indexOf("\n", pos);
  if (nl < 0 || pos >= len) throw new HttpError(400, "empty request");
  if (head.charCodeAt(nl - 1) !== 13 || nl - 1 < pos) {
    throw new HttpError(400, "the request line must end in CRLF");
  }
  const first = head.slice(pos, nl - 1);
  const sp1 = first.indexOf(" ");
  const sp2 = first.lastIndexOf(" ");
  if (sp1 <= 0 || sp2 === sp1) throw new HttpError(400, "malformed request line");
  const method = first.slice(0, sp1);
  const target = first.slice(sp1 + 1, sp2);
  const version = first.slice(sp2 + 1);
  for (let i = 0; i < sp1; i++) {
    const c = first.charCodeAt(i);
    if (c > 255 || TCHAR[c] === 0) throw new HttpError(400, "malformed request method");
  }
  if (target === "" || BAD_TARGET_CHAR.test(target)) {
    throw new HttpError(400, "malformed request target");
  }
  let minor: number;
  let exactVersion = true;
  if (version === "HTTP/1.1") minor = 1;
  else if (version === "HTTP/1.0") minor = 0;
  else if (/^HTTP\/1\.[2-9]$/.test(version)) {
    // A later 1.x minor version is answered as HTTP/1.1 (RFC 9110 2.5).
    minor = 1;
    exactVersion = false;
  } else if (/^HTTP\/\d\.\d$/.test(version)) {
    throw new HttpError(
      505,
      `${version} is not supported in an HTTP/1 request line; use HTTP/1.1, or HTTP/2 from the connection preface on (prior knowledge, or ALPN h2 over TLS)`,
    );
  } else throw new HttpError(400, "malformed HTTP version");
  if (method === "CONNECT") {
    throw new HttpError(405, "CONNECT is not supported by this proxy", [["Allow", ALLOW]]);
  }

  const headers = new HeaderList();
  readFields(head, nl + 1, 400, false, headers);

  let host: string | null = null;
  let te: string | null = null;
  let cl = -1;
  let connectionValue: string | null = null;
  let upgradeValue: string | null = null;
  let plainFields = true;
  const f = headers.fields;
  for (let i = 1; i < f.length; i += 3) {
    const kind = fieldKind(f[i]!);
    if (kind === NONE) continue;
    const value = f[i + 1]!;
    switch (kind) {
      case HOST:
        if (host !== null) throw new HttpError(400, "more than one Host header");
        host = value;
        break;
      case CONTENT_LENGTH:
        if (cl >= 0) throw new HttpError(400, "more than one Content-Length header");
        cl = contentLengthOf(value);
        if (cl < 0) {
          throw new HttpError(400, `Content-Length "${value}" is not a single whole number`);
        }
        // Only the canonical form is forwarded as received.
        if (value.length > 1 && value.charCodeAt(0) === 48) plainFields = false;
        break;
      case TRANSFER_ENCODING:
        te = te === null ? value : `${te}, ${value}`;
        plainFields = false;
        break;
      case CONNECTION:
        connectionValue = connectionValue === null ? value : `${connectionValue}, ${value}`;
        plainFields = false;
        break;
      case UPGRADE:
        upgradeValue = upgradeValue === null ? value : `${upgradeValue}, ${value}`;
        plainFields = false;
        break;
      default:
        plainFields = false;
    }
  }

  // Absolute-form targets carry the authority; it replaces Host (RFC 9112 3.2.2).
  let path = target;
  const c0 = target.charCodeAt(0);
  if (target === "*") {
    if (method !== "OPTIONS") throw new HttpError(400, "the target * is only for OPTIONS");
  } else if (c0 !== 47) {
    const m = ABSOLUTE.exec(target);
    if (!m) throw new HttpError(400, "malformed request target");
    const scheme = m[1]!.toLowerCase();
    if (scheme !== "http" && scheme !== "https") {
      throw new HttpError(400, `the target's scheme ${scheme} is not http or https`);
    }
    const authority = m[2]!;
    if (authority.includes("@")) {
      throw new HttpError(400, "a request target must not carry user information");
    }
    if (authority === "" || !HOST_VALUE.test(authority)) {
      throw new HttpError(400, "the request target's authority is not a host name or address");
    }
    const rest = m[3]!;
    path = rest === "" ? "/" : rest.charCodeAt(0) === 63 ? `/${rest}` : rest;
    if (host === null && minor === 1) throw new HttpError(400, "the Host header is missing");
    if (host !== null && host !== "" && !HOST_VALUE.test(host)) {
      throw new HttpError(400, "the Host header is not a host name or address");
    }
    host = authority;
  }
  if (host === null) {
    if (minor === 1) throw new HttpError(400, "the Host header is missing");
    host = "";
  } else if (host === "") {
    throw new HttpError(400, "the Host header is empty");
  } else if (!HOST_VALUE.test(host)) {
    throw new HttpError(400, "the Host header is not a host name or address");
  }

  let chunked = false;
  if (te !== null) {
    if (minor === 0) throw new HttpError(400, "Transfer-Encoding is not allowed in HTTP/1.0");
    const codings = te.split(",").map((t) => t.trim().toLowerCase());
    if (codings[codings.length - 1] !== "chunked") {
      throw new HttpError(400, "Transfer-Encoding must end with chunked");
    }
    for (let i = 0; i < codings.length - 1; i++) {
      if (codings[i] === "chunked") {
        throw new HttpError(400, "chunked may appear only once, last, in Transfer-Encoding");
      }
      if (!isToken(codings[i]!.split(";")[0]!.trim())) {
        throw new HttpError(400, "malformed Transfer-Encoding");
      }
    }
    if (codings.length > 1) {
      throw new HttpError(
        501,
        `Transfer-Encoding ${te} is not supported; send the body with chunked alone`,
      );
    }
    chunked = true;
    if (cl >= 0) {
      throw new HttpError(400, "Content-Length and Transfer-Encoding must not both be set");
    }
  }
  const connection = connectionValue === null ? NO_TOKENS : tokensOf(connectionValue);
  const keepAlive = minor === 1
    ? connection.indexOf("close") < 0
    : connection.indexOf("keep-alive") >= 0;
  const upgrade = upgradeValue !== null && connection.indexOf("upgrade") >= 0 && minor === 1
    ? upgradeValue
    : null;
  // HTAB is OWS to us but not to every parser behind us (llhttp refuses "5<HTAB>" as a
  // Content-Length): a head with one is rebuilt, never spliced.
  if (plainFields && head.indexOf("\t") >= 0) plainFields = false;
  return {
    simple: plainFields && exactVersion && minor === 1 && path === target && pos === 0,
    raw: null,
    method,
    target,
    path,
    minor,
    headers,
    host,
    contentLength: cl,
    chunked,
    keepAlive,
    upgrade,
    connection,
  };
}

/** RFC 9110 9.2.2, plus the Idempotency-Key convention Go's transport honours. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** Whether a request may be sent again after a connection broke under it. */
export function isIdempotent(req: RequestHead): boolean {
  return IDEMPOTENT.has(req.method) || req.headers.get("idempotency-key") !== null ||
    req.headers.get("x-idempotency-key") !== null;
}

export interface ForwardOptions {
  /** The client's address, appended to X-Forwarded-For. */
  clientIp: string;
  /** "http" or "https", for X-Forwarded-Proto when the client did not send one. */
  proto: string;
}

/**
 * The end-to-end fields of a request as forwarded, in order, lower-case
 * names or raw (as `raw` says): Host as decided by the parser, the client's
 * X-Forwarded-For with its address appended, X-Forwarded-Host/Proto unless
 * the client set them. Framing, Connection, Upgrade and hop-by-hop fields
 * and the fields Connection names are left for the caller to generate.
 */
export function forwardedFields(
  req: RequestHead,
  opts: ForwardOptions,
  raw: boolean,
  out: string[],
  ownTraceContext = false,
): void {
  let xff: string | null = null;
  let sawXfh = false;
  let sawXfp = false;
  let sawHost = false;
  const named = req.connection;
  const f = req.headers.fields;
  for (let i = 0; i < f.length; i += 3) {
    const name = f[i + 1]!;
    switch (fieldKind(name)) {
      case NONE:
        if (named.length > 0 && named.indexOf(name) >= 0) continue;
        // Our span's context replaces the client's (its baggage passes as sent).
        if (ownTraceContext && (name === "traceparent" || name === "tracestate")) continue;
        out.push(raw ? f[i]! : name, f[i + 2]!);
        break;
      case HOST:
        sawHost = true;
        out.push(raw ? "Host" : "host", req.host);
        break;
      case X_FORWARDED_FOR:
        xff = xff === null ? f[i + 2]! : `${xff}, ${f[i + 2]}`;
        break;
      case X_FORWARDED_HOST:
        sawXfh = true;
        out.push(raw ? f[i]! : name, f[i + 2]!);
        break;
      case X_FORWARDED_PROTO:
        sawXfp = true;
        out.push(raw ? f[i]! : name, f[i + 2]!);
        break;
      case TRAILER:
        // Trailers pass through with a chunked body, so their declaration does too.
        if (req.chunked) out.push(raw ? f[i]! : name, f[i + 2]!);
        break;
      default:
        // Framing, Connection, Upgrade, hop-by-hop, our own: generated or dropped.
        break;
    }
  }
  if (!sawHost && req.host !== "") out.push(raw ? "Host" : "host", req.host);
  out.push(
    raw ? "X-Forwarded-For" : "x-forwarded-for",
    xff === null ? opts.clientIp : `${xff}, ${opts.clientIp}`,
  );
  if (!sawXfh && req.host !== "") out.push(raw ? "X-Forwarded-Host" : "x-forwarded-host", req.host);
  if (!sawXfp) out.push(raw ? "X-Forwarded-Proto" : "x-forwarded-proto", opts.proto);
}

/**
 * The head sent upstream: HTTP/1.1, origin-form target, the forwarded
 * fields, and framing and upgrade fields generated from the parse.
 */
export function upstreamRequestHead(
  req: RequestHead,
  opts: ForwardOptions,
  traceContext?: Array<[string, string]>,
): string {
  let out = `${req.method} ${req.path} HTTP/1.1\r\n`;
  const fields: string[] = [];
  forwardedFields(req, opts, true, fields, traceContext !== undefined);
  if (traceContext) { for (const [k, v] of traceContext) fields.push(k, v); }
  for (let i = 0; i < fields.length; i += 2) out += `${fields[i]}: ${fields[i + 1]}\r\n`;
  if (req.chunked) out += "Transfer-Encoding: chunked\r\n";
  else if (req.contentLength >= 0) out += `Content-Length: ${req.contentLength}\r\n`;
  if (req.upgrade !== null) out += `Connection: Upgrade\r\nUpgrade: ${req.upgrade}\r\n`;
  return out + "\r\n";
}

/**
 * The head sent upstream for a `simple` request, as bytes: the head as
 * received with the X-Forwarded-* lines inserted before the blank line, and
 * room for `extra` body bytes after it. Equivalent to upstreamRequestHead
 * for such requests (same fields and framing), without re-serialising every
 * field.
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
 * head. Every part is ASCII: an IP, a Host that passed the host pattern, a
 * scheme. Callers cache the bytes per connection (the Host rarely changes).
 */
export function forwardedLines(opts: ForwardOptions, host: string): Uint8Array {
  return binaryBytes(
    `X-Forwarded-For: ${opts.clientIp}\r\nX-Forwarded-Host: ${host}\r\n` +
      `X-Forwarded-Proto: ${opts.proto}\r\n\r\n`,
  );
}
