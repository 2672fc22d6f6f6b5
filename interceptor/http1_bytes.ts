/**
 * Bytes of HTTP/1.1 messages: where a head ends, and the "binary strings"
 * (one char per byte, latin-1) the parsers work on, so bytes outside ASCII
 * pass through unchanged.
 */

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
