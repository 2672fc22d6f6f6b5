/**
 * Chunked bodies (RFC 9112 7.1): a streaming validator that finds where a
 * chunked message ends across reads and can hand out the data ranges (to
 * de-chunk). Strict, because valid bytes are passed on as they are: CRLF
 * line ends only, hex sizes, extensions only as `;name[=token|"quoted"]`
 * with optional whitespace, trailer lines that are valid fields and no
 * framing, routing or hop-by-hop field in them.
 */
import { BAD_VALUE_BYTE, fieldKind, HttpError, NONE, TCHAR } from "./http1_fields.ts";

const enum CS {
  Size,
  /** Whitespace after the size or after an extension, before `;` or CR. */
  ExtBws,
  /** After `;`: optional whitespace, then an extension name. */
  ExtNameStart,
  ExtName,
  /** After an extension name: whitespace, then `=`, `;` or CR. */
  ExtAfterName,
  ExtValStart,
  ExtToken,
  ExtQuoted,
  ExtQuotedEscape,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  TrailerName,
  TrailerValue,
  TrailerLf,
  TrailerEndLf,
  Done,
}

const MAX_CHUNK_LINE = 4096;
const MAX_TRAILERS = 16 * 1024;
const MAX_TRAILER_NAME = 256;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** qdtext and the characters a quoted-pair may escape (RFC 9110 5.6.4). */
function qdtext(c: number): boolean {
  return c === 9 || c === 32 || c === 0x21 || (c >= 0x23 && c <= 0x5b) ||
    (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

function bad(message: string): HttpError {
  return new HttpError(400, message);
}

/**
 * Follows chunked framing across reads to find where the message ends.
 * Throws HttpError(400) on malformed framing (callers answering for an app's
 * body turn that into their own status).
 */
export class ChunkedScanner {
  #state = CS.Size;
  #size = 0;
  #digits = 0;
  #lineLen = 0;
  #trailerLen = 0;
  #name = "";

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
      const state = this.#state;
      if (state === CS.Data) {
        const n = Math.min(this.#size, end - i);
        if (onData && n > 0) onData(i, i + n);
        i += n;
        this.#size -= n;
        if (this.#size === 0) this.#state = CS.DataCr;
        continue;
      }
      if (state === CS.Done) return i;
      const c = buf[i]!;
      i++;
      if (state <= CS.SizeLf && ++this.#lineLen > MAX_CHUNK_LINE) {
        throw bad("chunk size line too long");
      }
      switch (state) {
        case CS.Size: {
          const v = hexValue(c);
          if (v >= 0) {
            // Leading zeros are fine; a size past 2^52 is not (exact integers end at 2^53).
            if (this.#size >= 2 ** 48) throw bad("chunk size too large");
            this.#size = this.#size * 16 + v;
            this.#digits++;
          } else if (this.#digits === 0) throw bad("malformed chunk size");
          else if (c === 13) this.#state = CS.SizeLf;
          else if (c === 59) this.#state = CS.ExtNameStart;
          else if (c === 32 || c === 9) this.#state = CS.ExtBws;
          else throw bad("malformed chunk size");
          break;
        }
        case CS.ExtBws:
          if (c === 59) this.#state = CS.ExtNameStart;
          else if (c === 13) this.#state = CS.SizeLf;
          else if (c !== 32 && c !== 9) throw bad("malformed chunk extension");
          break;
        case CS.ExtNameStart:
          if (TCHAR[c] === 1) this.#state = CS.ExtName;
          else if (c !== 32 && c !== 9) throw bad("malformed chunk extension name");
          break;
        case CS.ExtName:
          if (TCHAR[c] === 1) break;
          if (c === 61) this.#state = CS.ExtValStart;
          else if (c === 59) this.#state = CS.ExtNameStart;
          else if (c === 13) this.#state = CS.SizeLf;
          else if (c === 32 || c === 9) this.#state = CS.ExtAfterName;
          else throw bad("malformed chunk extension name");
          break;
        case CS.ExtAfterName:
          if (c === 61) this.#state = CS.ExtValStart;
          else if (c === 59) this.#state = CS.ExtNameStart;
          else if (c === 13) this.#state = CS.SizeLf;
          else if (c !== 32 && c !== 9) throw bad("malformed chunk extension");
          break;
        case CS.ExtValStart:
          if (c === 34) this.#state = CS.ExtQuoted;
          else if (TCHAR[c] === 1) this.#state = CS.ExtToken;
          else if (c !== 32 && c !== 9) throw bad("malformed chunk extension value");
          break;
        case CS.ExtToken:
          if (TCHAR[c] === 1) break;
          if (c === 59) this.#state = CS.ExtNameStart;
          else if (c === 13) this.#state = CS.SizeLf;
          else if (c === 32 || c === 9) this.#state = CS.ExtBws;
          else throw bad("malformed chunk extension value");
          break;
        case CS.ExtQuoted:
          if (c === 34) this.#state = CS.ExtBws;
          else if (c === 92) this.#state = CS.ExtQuotedEscape;
          else if (!qdtext(c)) throw bad("malformed quoted chunk extension value");
          break;
        case CS.ExtQuotedEscape:
          if (c !== 9 && (c < 0x20 || c === 0x7f)) {
            throw bad("malformed quoted chunk extension value");
          }
          this.#state = CS.ExtQuoted;
          break;
        case CS.SizeLf:
          if (c !== 10) throw bad("a chunk size line must end in CRLF");
          this.#state = this.#size === 0 ? CS.TrailerStart : CS.Data;
          this.#digits = 0;
          this.#lineLen = 0;
          break;
        case CS.DataCr:
          if (c !== 13) throw bad("chunk data longer than its size, or not followed by CRLF");
          this.#state = CS.DataLf;
          break;
        case CS.DataLf:
          if (c !== 10) throw bad("chunk data must be followed by CRLF");
          this.#state = CS.Size;
          break;
        case CS.TrailerStart:
          if (++this.#trailerLen > MAX_TRAILERS) throw bad("trailers too large");
          if (c === 13) this.#state = CS.TrailerEndLf;
          else if (TCHAR[c] === 1) {
            this.#name = String.fromCharCode(c | (c >= 65 && c <= 90 ? 32 : 0));
            this.#state = CS.TrailerName;
          } else throw bad("malformed trailer line");
          break;
        case CS.TrailerName:
          if (++this.#trailerLen > MAX_TRAILERS) throw bad("trailers too large");
          if (TCHAR[c] === 1) {
            if (this.#name.length >= MAX_TRAILER_NAME) throw bad("trailer name too long");
            this.#name += String.fromCharCode(c | (c >= 65 && c <= 90 ? 32 : 0));
          } else if (c === 58) {
            if (fieldKind(this.#name) !== NONE) {
              throw bad(`${this.#name} is not allowed in trailers`);
            }
            this.#state = CS.TrailerValue;
          } else throw bad("malformed trailer name (whitespace or a forbidden character)");
          break;
        case CS.TrailerValue:
          if (++this.#trailerLen > MAX_TRAILERS) throw bad("trailers too large");
          if (c === 13) this.#state = CS.TrailerLf;
          else if (BAD_VALUE_BYTE[c] === 1) throw bad("a trailer value has a control character");
          break;
        case CS.TrailerLf:
          if (c !== 10) throw bad("a trailer line must end in CRLF");
          this.#state = CS.TrailerStart;
          break;
        case CS.TrailerEndLf:
          if (c !== 10) throw bad("malformed end of chunked body");
          this.#state = CS.Done;
          return i;
      }
    }
    return this.#state === CS.Done ? i : -1;
  }
}

const utf8enc = new TextEncoder();

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
