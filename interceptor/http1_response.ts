/**
 * HTTP/1.1 response heads: the parser for what apps send (as strict as the
 * request parser: a malformed head is a 502, never passed on), the byte
 * scanner of the common case, and the heads we send to clients. The
 * scanner answers only for heads that are plainly valid and otherwise
 * defers to the parser, so the two cannot disagree; framing sent to the
 * client is generated from the parse, never copied or dropped by name.
 */
import { binaryBytes } from "./http1_bytes.ts";
import {
  BAD_VALUE_BYTE,
  CONNECTION,
  CONTENT_LENGTH,
  contentLengthOf,
  fieldKind,
  fieldKindAt,
  hasBadValueByte,
  HeaderList,
  HttpError,
  passesToClient,
  readFields,
  TCHAR,
  tokensOf,
  TRAILER,
  TRANSFER_ENCODING,
  UPGRADE,
} from "./http1_fields.ts";

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

const STATUS_LINE = /^HTTP\/1\.(\d) ([1-9]\d\d)(?: (.*))?$/;

/** Parses a response head (binary string ending in the blank line). Throws HttpError(502). */
export function parseResponseHead(head: string): ResponseHead {
  const nl = head.indexOf("\n");
  if (nl < 0) throw new HttpError(502, "the app sent a malformed response status line");
  const lineEnd = nl > 0 && head.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
  const m = STATUS_LINE.exec(head.slice(0, lineEnd));
  if (!m || (m[3] !== undefined && hasBadValueByte(m[3]))) {
    throw new HttpError(502, "the app sent a malformed response status line");
  }
  // A later 1.x minor version is HTTP/1.1 (RFC 9110 2.5).
  const minor = Math.min(Number(m[1]), 1);
  const headers = new HeaderList();
  // A bare LF is tolerated from apps (RFC 9112 2.2): such a head is always rebuilt.
  readFields(head, nl + 1, 502, true, headers);
  let cl = -1;
  let te: string | null = null;
  let connectionValue: string | null = null;
  const f = headers.fields;
  for (let i = 1; i < f.length; i += 3) {
    const kind = fieldKind(f[i]!);
    if (kind === CONTENT_LENGTH) {
      if (cl >= 0) throw new HttpError(502, "the app sent more than one Content-Length");
      cl = contentLengthOf(f[i + 1]!);
      if (cl < 0) {
        throw new HttpError(502, `the app sent Content-Length "${f[i + 1]}", not a whole number`);
      }
    } else if (kind === TRANSFER_ENCODING) {
      te = te === null ? f[i + 1]! : `${te}, ${f[i + 1]}`;
    } else if (kind === CONNECTION) {
      connectionValue = connectionValue === null ? f[i + 1]! : `${connectionValue}, ${f[i + 1]}`;
    }
  }
  let chunked = false;
  if (te !== null) {
    const codings = te.split(",").map((t) => t.trim().toLowerCase());
    if (codings.length !== 1 || codings[0] !== "chunked") {
      throw new HttpError(
        502,
        `the app sent Transfer-Encoding "${te}"; only chunked alone is relayed`,
      );
    }
    if (cl >= 0) {
      // RFC 9112 6.3: both framings at once is handled as an error.
      throw new HttpError(502, "the app sent both Content-Length and Transfer-Encoding");
    }
    chunked = true;
  }
  const connection = tokensOf(connectionValue);
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
    close,
    connection,
  };
}

/** Whether a response to this request with this status has no body at all. */
export function responseHasNoBody(method: string, status: number): boolean {
  return method === "HEAD" || (status >= 100 && status < 200) || status === 204 ||
    status === 304;
}

/**
 * What the data plane needs to know about a response head, found without
 * building a header list; `spliceable` says the head can go to an HTTP/1.1
 * client as received plus our own lines (nothing to drop or generate).
 */
export interface ResponseInfo {
  status: number;
  minor: number;
  contentLength: number;
  chunked: boolean;
  close: boolean;
  spliceable: boolean;
}

/**
 * Scans the bytes of a response head buf[start, end) (end just past the
 * blank line) without decoding it. Answers only for a head that is plainly
 * valid (CRLF lines, token names, values without controls, at most one
 * Content-Length of digits) and has no Transfer-Encoding or Connection
 * field; null sends it to parseResponseHead, which decides.
 */
export function scanResponseBytes(
  buf: Uint8Array,
  start: number,
  end: number,
): ResponseInfo | null {
  // "HTTP/1.x SSS"
  if (
    end - start < 16 || buf[start] !== 72 || buf[start + 1] !== 84 || buf[start + 2] !== 84 ||
    buf[start + 3] !== 80 || buf[start + 4] !== 47 || buf[start + 5] !== 49 ||
    buf[start + 6] !== 46 || buf[start + 8] !== 32
  ) {
    return null;
  }
  const m = buf[start + 7]!;
  if (m !== 48 && m !== 49) return null;
  const minor = m - 48;
  const d1 = buf[start + 9]! - 48, d2 = buf[start + 10]! - 48, d3 = buf[start + 11]! - 48;
  if (d1 < 1 || d1 > 9 || d2 < 0 || d2 > 9 || d3 < 0 || d3 > 9) return null;
  const status = d1 * 100 + d2 * 10 + d3;
  let nl = buf.indexOf(10, start);
  if (nl < 0 || nl >= end || buf[nl - 1] !== 13) return null;
  const after = start + 12;
  if (after < nl - 1) {
    if (buf[after] !== 32) return null;
    for (let i = after + 1; i < nl - 1; i++) if (BAD_VALUE_BYTE[buf[i]!] === 1) return null;
  }
  let contentLength = -1;
  let spliceable = minor === 1;
  let pos = nl + 1;
  while (true) {
    nl = buf.indexOf(10, pos);
    if (nl < 0 || nl >= end || nl === pos || buf[nl - 1] !== 13) return null;
    const lineEnd = nl - 1;
    if (lineEnd === pos) break;
    let colon = pos;
    while (colon < lineEnd && TCHAR[buf[colon]!] === 1) colon++;
    if (colon === pos || colon === lineEnd || buf[colon] !== 58) return null;
    for (let i = colon + 1; i < lineEnd; i++) if (BAD_VALUE_BYTE[buf[i]!] === 1) return null;
    const kind = fieldKindAt(buf, pos, colon - pos);
    if (kind === CONTENT_LENGTH) {
      if (contentLength >= 0) return null;
      let v = colon + 1;
      while (v < lineEnd && (buf[v] === 32 || buf[v] === 9)) v++;
      let e = lineEnd;
      while (e > v && (buf[e - 1] === 32 || buf[e - 1] === 9)) e--;
      if (e === v || e - v > 15) return null;
      if (e - v > 1 && buf[v] === 48) spliceable = false;
      let n = 0;
      for (let i = v; i < e; i++) {
        const d = buf[i]! - 48;
        if (d < 0 || d > 9) return null;
        n = n * 10 + d;
      }
      contentLength = n;
    } else if (kind === TRANSFER_ENCODING || kind === CONNECTION) {
      // Rare in responses, and they decide framing and reuse: the parser decides.
      return null;
    } else if (!passesToClient(kind)) {
      // Upgrade, Trailer, hop-by-hop, ours: the head must be rebuilt without them.
      spliceable = false;
    }
    pos = nl + 1;
  }
  if (pos + 2 !== end) return null;
  // A 1xx or 204 carries no Content-Length (RFC 9110 8.6): rebuilt without it.
  if (contentLength >= 0 && (status < 200 || status === 204)) spliceable = false;
  return { status, minor, contentLength, chunked: false, close: minor === 0, spliceable };
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
    EXTRA_LINES.push(binaryBytes(s + "\r\n"));
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

/**
 * The head sent to the client for an app's response: its end-to-end fields
 * in order, then framing generated from the parse (Content-Length as parsed,
 * or chunked while chunks pass through), our cold-start and Connection lines.
 */
export function clientResponseHead(res: ResponseHead, opts: ClientResponseOptions): string {
  let out = opts.http10
    ? `HTTP/1.0 ${res.status} ${res.reason}\r\n`
    : `HTTP/1.1 ${res.status} ${res.reason}\r\n`;
  const named = res.connection;
  const passChunks = res.chunked && !opts.dechunk && !opts.http10;
  const f = res.headers.fields;
  for (let i = 0; i < f.length; i += 3) {
    const name = f[i + 1]!;
    const kind = fieldKind(name);
    if (kind === CONNECTION || kind === UPGRADE) {
      if (!opts.upgraded) continue;
    } else if (kind === TRAILER) {
      if (!passChunks) continue;
    } else if (passesToClient(kind)) {
      if (named.length > 0 && named.indexOf(name) >= 0) continue;
    } else continue; // Framing (generated below), hop-by-hop fields, ours.
    out += `${f[i]}: ${f[i + 2]}\r\n`;
  }
  const s = res.status;
  if (!opts.upgraded && s >= 200 && s !== 204) {
    if (passChunks) out += "Transfer-Encoding: chunked\r\n";
    else if (!res.chunked && res.contentLength >= 0) {
      out += `Content-Length: ${res.contentLength}\r\n`;
    }
  }
  if (opts.coldStart !== null) out += opts.coldStart ? COLD_TRUE : COLD_FALSE;
  if (!opts.upgraded) {
    if (opts.close) out += "Connection: close\r\n";
    else if (opts.http10) out += "Connection: keep-alive\r\n";
  }
  return out + "\r\n";
}

const EMPTY_BODY = new Uint8Array(0);

/** RFC 9110's reason phrases (static responses may use any status). */
const REASONS: Record<number, string> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  202: "Accepted",
  203: "Non-Authoritative Information",
  204: "No Content",
  205: "Reset Content",
  206: "Partial Content",
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  418: "I'm a teapot",
  422: "Unprocessable Content",
  425: "Too Early",
  426: "Upgrade Required",
  428: "Precondition Required",
  429: "Too Many Requests",
  451: "Unavailable For Legal Reasons",
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
  506: "Variant Also Negotiates",
  507: "Insufficient Storage",
  508: "Loop Detected",
  511: "Network Authentication Required",
};

export function reasonOf(status: number): string {
  return REASONS[status] ?? "Error";
}

const utf8enc = new TextEncoder();

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
  return responseBytes(status, opts.headers ?? [], utf8enc.encode(body), {
    ...opts,
    contentType: "text/plain; charset=utf-8",
  });
}

/**
 * A complete response of our own (errors, placeholders, static routes):
 * status line, the given headers (validated by the route's schema: tokens,
 * no CR/LF, none of the framing headers), and framing generated here from
 * the body: Content-Length, or none for 204/304, and the body left out for
 * HEAD and those statuses.
 */
export function responseBytes(
  status: number,
  headers: Array<[string, string]>,
  body: Uint8Array,
  opts: {
    close: boolean;
    http10?: boolean;
    head?: boolean;
    contentType?: string;
    /** The head alone (Content-Length still from `body`): the caller writes the body itself. */
    withoutBody?: boolean;
  },
): Uint8Array {
  // 204 and 304 carry no length and no body; 205 says its (empty) length (RFC 9110 15.3.6).
  const bodyless = status === 204 || status === 304;
  if (status === 205) body = EMPTY_BODY;
  let out = `HTTP/1.${opts.http10 ? 0 : 1} ${status} ${reasonOf(status)}\r\n`;
  if (opts.contentType !== undefined && !bodyless) out += `Content-Type: ${opts.contentType}\r\n`;
  if (!bodyless) out += `Content-Length: ${body.length}\r\n`;
  for (const [k, v] of headers) out += `${k}: ${v}\r\n`;
  if (opts.close) out += "Connection: close\r\n";
  else if (opts.http10) out += "Connection: keep-alive\r\n";
  out += "\r\n";
  const withBody = !opts.head && !bodyless && !opts.withoutBody;
  // Configured header values may hold UTF-8 (obs-text): encode, not binaryBytes.
  const head = utf8enc.encode(out);
  if (!withBody || body.length === 0) return head;
  const all = new Uint8Array(head.length + body.length);
  all.set(head);
  all.set(body, head.length);
  return all;
}
