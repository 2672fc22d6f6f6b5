/**
 * The one table of header field names the data plane treats specially
 * (framing, hop-by-hop, forwarding, ours), and the field syntax every
 * HTTP/1.1 reader checks against. Request, response and chunked-trailer
 * readers, string and byte scanners alike, classify names through this
 * module only, so no fast path can miss a field the full parser knows.
 */
import type { HeaderSource } from "./routing.ts";

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** Extra response fields (e.g. Allow on a 405). */
    readonly headers?: Array<[string, string]>,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/** Largest accepted request or response head, in bytes. */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Most field lines in one head (Node's server allows 2,000; 64 KiB of tiny lines would be 16k). */
export const MAX_FIELDS = 500;

/** Kinds of field name; NONE is every name not in the table. */
export const NONE = 0;
/** Framing (RFC 9112 6): never copied, always generated from what the parser decided. */
export const CONTENT_LENGTH = 1;
export const TRANSFER_ENCODING = 2;
export const HOST = 3;
export const CONNECTION = 4;
export const UPGRADE = 5;
/** Declares trailer fields; kept only while a chunked body passes through. */
export const TRAILER = 6;
/** Hop-by-hop (RFC 9110 7.6.1) or conventionally dropped by proxies. */
export const HOP_BY_HOP = 7;
export const X_FORWARDED_FOR = 8;
export const X_FORWARDED_HOST = 9;
export const X_FORWARDED_PROTO = 10;
/** X-KEDA-HTTP-Cold-Start: ours to set; an app's or client's copy is dropped. */
export const COLD_START = 11;

const TABLE: ReadonlyArray<readonly [string, number]> = [
  ["content-length", CONTENT_LENGTH],
  ["transfer-encoding", TRANSFER_ENCODING],
  ["host", HOST],
  ["connection", CONNECTION],
  ["upgrade", UPGRADE],
  ["trailer", TRAILER],
  ["keep-alive", HOP_BY_HOP],
  ["proxy-connection", HOP_BY_HOP],
  ["te", HOP_BY_HOP],
  ["proxy-authenticate", HOP_BY_HOP],
  ["proxy-authorization", HOP_BY_HOP],
  ["x-forwarded-for", X_FORWARDED_FOR],
  ["x-forwarded-host", X_FORWARDED_HOST],
  ["x-forwarded-proto", X_FORWARDED_PROTO],
  ["x-keda-http-cold-start", COLD_START],
];

const BY_NAME = new Map<string, number>(TABLE);

const END_TO_END: boolean[] = [];
for (const k of [NONE, HOST, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO]) {
  END_TO_END[k] = true;
}

/**
 * Whether a response field of this kind goes to the client as the app sent
 * it (unless Connection names it): everything but framing, Connection,
 * Upgrade, Trailer, hop-by-hop fields and ours.
 */
export function passesToClient(kind: number): boolean {
  return END_TO_END[kind] === true;
}

/** The kind of a lower-case field name. */
export function fieldKind(lower: string): number {
  return BY_NAME.get(lower) ?? NONE;
}

/** Table names by length, for the byte scanners (most lengths match nothing). */
const BY_LENGTH: Array<Array<readonly [string, number]> | undefined> = [];
for (const entry of TABLE) (BY_LENGTH[entry[0].length] ??= []).push(entry);

const LOWER = new Uint8Array(256).map((_, i) => (i >= 65 && i <= 90 ? i + 32 : i));

/** The kind of the name in buf[at, at + len), ignoring ASCII case, without decoding it. */
export function fieldKindAt(buf: Uint8Array, at: number, len: number): number {
  const names = BY_LENGTH[len];
  if (names === undefined) return NONE;
  outer: for (const [name, kind] of names) {
    for (let i = 0; i < len; i++) {
      if (LOWER[buf[at + i]!] !== name.charCodeAt(i)) continue outer;
    }
    return kind;
  }
  return NONE;
}

/** tchar (RFC 9110 5.6.2), by byte. */
export const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TCHAR[c.charCodeAt(0)] = 1;
}

/** Bytes a field value may not hold (RFC 9110 5.5): controls other than HTAB, and DEL. */
export const BAD_VALUE_BYTE = new Uint8Array(256).map((_, i) =>
  (i < 0x20 && i !== 9) || i === 0x7f ? 1 : 0
);

/** Whether a string is a non-empty token. */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255 || TCHAR[c] === 0) return false;
  }
  return true;
}

/** Whether a binary string holds a byte a field value may not. */
export function hasBadValueByte(s: string, from = 0, to = s.length): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 256 && BAD_VALUE_BYTE[c] === 1) return true;
  }
  return false;
}

/** 1*DIGIT, at most 15 of them (2^53 bounds exact integers); -1 when not. */
export function contentLengthOf(value: string): number {
  const n = value.length;
  if (n === 0 || n > 15) return -1;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
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

/** Lower-case comma-separated list elements of a header value (empty ones dropped). */
export function tokensOf(value: string | null): string[] {
  if (value === null) return [];
  const out: string[] = [];
  for (const part of value.split(",")) {
    const t = part.trim().toLowerCase();
    if (t !== "") out.push(t);
  }
  return out;
}

/**
 * Reads the field lines of a head (binary string) from `pos` to the blank
 * line into `headers`: the one field-line grammar (RFC 9112 5) for requests
 * and responses. Returns the offset after the blank line. Throws
 * HttpError(status) on a malformed line; a line ending in a bare LF is
 * accepted only when `bareLf` is set (the caller then rebuilds the head).
 */
export function readFields(
  head: string,
  pos: number,
  status: number,
  bareLf: boolean,
  headers: HeaderList,
): number {
  const len = head.length;
  const f = headers.fields;
  while (pos < len) {
    const nl = head.indexOf("\n", pos);
    if (nl < 0) break;
    let lineEnd = nl;
    if (nl > pos && head.charCodeAt(nl - 1) === 13) lineEnd = nl - 1;
    else if (!bareLf) throw new HttpError(status, "header lines must end in CRLF");
    if (lineEnd === pos) return nl + 1;
    const c0 = head.charCodeAt(pos);
    if (c0 === 32 || c0 === 9) {
      throw new HttpError(status, "obsolete header line folding is not accepted");
    }
    const colon = head.indexOf(":", pos);
    if (colon <= pos || colon > lineEnd) {
      throw new HttpError(status, "malformed header line (no name or colon)");
    }
    for (let i = pos; i < colon; i++) {
      const c = head.charCodeAt(i);
      if (c > 255 || TCHAR[c] === 0) {
        throw new HttpError(
          status,
          "malformed header name (whitespace or a forbidden character before the colon)",
        );
      }
    }
    let a = colon + 1;
    let b = lineEnd;
    while (a < b && (head.charCodeAt(a) === 32 || head.charCodeAt(a) === 9)) a++;
    while (b > a && (head.charCodeAt(b - 1) === 32 || head.charCodeAt(b - 1) === 9)) b--;
    const name = head.slice(pos, colon);
    if (hasBadValueByte(head, a, b)) {
      throw new HttpError(status, `header ${name} has a control character in its value`);
    }
    if (f.length >= MAX_FIELDS * 3) {
      throw new HttpError(
        status === 400 ? 431 : status,
        `more than ${MAX_FIELDS} header fields`,
      );
    }
    f.push(name, name.toLowerCase(), head.slice(a, b));
    pos = nl + 1;
  }
  throw new HttpError(status, "the head has no blank line at its end");
}
