/**
 * HPACK (RFC 7541): the header compression of our own HTTP/2. Strings are binary (latin1, one
 * char per byte) like the HTTP/1.1 path, so a field crosses protocols without re-encoding.
 *
 * The decoder is the attack surface: every malformed block throws HpackError (the connection
 * then ends with GOAWAY COMPRESSION_ERROR), and a block's decoded size is counted as it grows so
 * an "HPACK bomb" (one small block naming a big table entry thousands of times) never builds a
 * big list.
 */

/** A malformed header block: the connection must end with GOAWAY COMPRESSION_ERROR. */
export class HpackError extends Error {
  override name = "HpackError";
}

export interface DecodedBlock {
  /** [name, value] in order; strings are "binary" (latin1: one char per byte), as the HTTP/1.1 path uses. */
  fields: Array<[string, string]>;
  /** The decoded list exceeded maxHeaderListSize (RFC 9113 6.5.2 sizing: name+value+32 per field): fields is then EMPTY, but the dynamic table was still updated so the connection stays in sync. */
  tooLarge: boolean;
}

/** SETTINGS_HEADER_TABLE_SIZE's initial value (RFC 9113 6.5.2), and the encoder's ceiling. */
const DEFAULT_TABLE_SIZE = 4096;
/** RFC 7541 4.1: an entry's size is its name and value lengths plus 32. */
const ENTRY_OVERHEAD = 32;
/**
 * Integers above this are malformed. Nothing legitimate comes close: string lengths are bounded
 * by the block (a frame is < 2^24 octets), indices by the table (< 2^27 entries even for a 4 GiB
 * table), and table sizes beyond our setting are errors anyway. Capping keeps the arithmetic exact
 * and stops a peer from sending endless continuation octets.
 */
const MAX_INTEGER = 2 ** 28;

// RFC 7541 Appendix A, indices 1..61.
const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];
const STATIC_COUNT = STATIC_TABLE.length;

/** The encoder's view of the static table: name -> first index, and exact (name, value) -> index. */
const STATIC_BY_NAME = new Map<string, { index: number; values: Map<string, number> }>();
for (let i = 0; i < STATIC_COUNT; i++) {
  const [name, value] = STATIC_TABLE[i]!;
  let e = STATIC_BY_NAME.get(name);
  if (e === undefined) STATIC_BY_NAME.set(name, e = { index: i + 1, values: new Map() });
  if (!e.values.has(value)) e.values.set(value, i + 1);
}

// RFC 7541 Appendix B: (code, bit length) for symbols 0..255 and EOS (256).
// deno-fmt-ignore
const HUFFMAN_TABLE: readonly number[] = [
  0x1ff8, 13, 0x7fffd8, 23, 0xfffffe2, 28, 0xfffffe3, 28,
  0xfffffe4, 28, 0xfffffe5, 28, 0xfffffe6, 28, 0xfffffe7, 28,
  0xfffffe8, 28, 0xffffea, 24, 0x3ffffffc, 30, 0xfffffe9, 28,
  0xfffffea, 28, 0x3ffffffd, 30, 0xfffffeb, 28, 0xfffffec, 28,
  0xfffffed, 28, 0xfffffee, 28, 0xfffffef, 28, 0xffffff0, 28,
  0xffffff1, 28, 0xffffff2, 28, 0x3ffffffe, 30, 0xffffff3, 28,
  0xffffff4, 28, 0xffffff5, 28, 0xffffff6, 28, 0xffffff7, 28,
  0xffffff8, 28, 0xffffff9, 28, 0xffffffa, 28, 0xffffffb, 28,
  0x14, 6, 0x3f8, 10, 0x3f9, 10, 0xffa, 12,
  0x1ff9, 13, 0x15, 6, 0xf8, 8, 0x7fa, 11,
  0x3fa, 10, 0x3fb, 10, 0xf9, 8, 0x7fb, 11,
  0xfa, 8, 0x16, 6, 0x17, 6, 0x18, 6,
  0x0, 5, 0x1, 5, 0x2, 5, 0x19, 6,
  0x1a, 6, 0x1b, 6, 0x1c, 6, 0x1d, 6,
  0x1e, 6, 0x1f, 6, 0x5c, 7, 0xfb, 8,
  0x7ffc, 15, 0x20, 6, 0xffb, 12, 0x3fc, 10,
  0x1ffa, 13, 0x21, 6, 0x5d, 7, 0x5e, 7,
  0x5f, 7, 0x60, 7, 0x61, 7, 0x62, 7,
  0x63, 7, 0x64, 7, 0x65, 7, 0x66, 7,
  0x67, 7, 0x68, 7, 0x69, 7, 0x6a, 7,
  0x6b, 7, 0x6c, 7, 0x6d, 7, 0x6e, 7,
  0x6f, 7, 0x70, 7, 0x71, 7, 0x72, 7,
  0xfc, 8, 0x73, 7, 0xfd, 8, 0x1ffb, 13,
  0x7fff0, 19, 0x1ffc, 13, 0x3ffc, 14, 0x22, 6,
  0x7ffd, 15, 0x3, 5, 0x23, 6, 0x4, 5,
  0x24, 6, 0x5, 5, 0x25, 6, 0x26, 6,
  0x27, 6, 0x6, 5, 0x74, 7, 0x75, 7,
  0x28, 6, 0x29, 6, 0x2a, 6, 0x7, 5,
  0x2b, 6, 0x76, 7, 0x2c, 6, 0x8, 5,
  0x9, 5, 0x2d, 6, 0x77, 7, 0x78, 7,
  0x79, 7, 0x7a, 7, 0x7b, 7, 0x7ffe, 15,
  0x7fc, 11, 0x3ffd, 14, 0x1ffd, 13, 0xffffffc, 28,
  0xfffe6, 20, 0x3fffd2, 22, 0xfffe7, 20, 0xfffe8, 20,
  0x3fffd3, 22, 0x3fffd4, 22, 0x3fffd5, 22, 0x7fffd9, 23,
  0x3fffd6, 22, 0x7fffda, 23, 0x7fffdb, 23, 0x7fffdc, 23,
  0x7fffdd, 23, 0x7fffde, 23, 0xffffeb, 24, 0x7fffdf, 23,
  0xffffec, 24, 0xffffed, 24, 0x3fffd7, 22, 0x7fffe0, 23,
  0xffffee, 24, 0x7fffe1, 23, 0x7fffe2, 23, 0x7fffe3, 23,
  0x7fffe4, 23, 0x1fffdc, 21, 0x3fffd8, 22, 0x7fffe5, 23,
  0x3fffd9, 22, 0x7fffe6, 23, 0x7fffe7, 23, 0xffffef, 24,
  0x3fffda, 22, 0x1fffdd, 21, 0xfffe9, 20, 0x3fffdb, 22,
  0x3fffdc, 22, 0x7fffe8, 23, 0x7fffe9, 23, 0x1fffde, 21,
  0x7fffea, 23, 0x3fffdd, 22, 0x3fffde, 22, 0xfffff0, 24,
  0x1fffdf, 21, 0x3fffdf, 22, 0x7fffeb, 23, 0x7fffec, 23,
  0x1fffe0, 21, 0x1fffe1, 21, 0x3fffe0, 22, 0x1fffe2, 21,
  0x7fffed, 23, 0x3fffe1, 22, 0x7fffee, 23, 0x7fffef, 23,
  0xfffea, 20, 0x3fffe2, 22, 0x3fffe3, 22, 0x3fffe4, 22,
  0x7ffff0, 23, 0x3fffe5, 22, 0x3fffe6, 22, 0x7ffff1, 23,
  0x3ffffe0, 26, 0x3ffffe1, 26, 0xfffeb, 20, 0x7fff1, 19,
  0x3fffe7, 22, 0x7ffff2, 23, 0x3fffe8, 22, 0x1ffffec, 25,
  0x3ffffe2, 26, 0x3ffffe3, 26, 0x3ffffe4, 26, 0x7ffffde, 27,
  0x7ffffdf, 27, 0x3ffffe5, 26, 0xfffff1, 24, 0x1ffffed, 25,
  0x7fff2, 19, 0x1fffe3, 21, 0x3ffffe6, 26, 0x7ffffe0, 27,
  0x7ffffe1, 27, 0x3ffffe7, 26, 0x7ffffe2, 27, 0xfffff2, 24,
  0x1fffe4, 21, 0x1fffe5, 21, 0x3ffffe8, 26, 0x3ffffe9, 26,
  0xffffffd, 28, 0x7ffffe3, 27, 0x7ffffe4, 27, 0x7ffffe5, 27,
  0xfffec, 20, 0xfffff3, 24, 0xfffed, 20, 0x1fffe6, 21,
  0x3fffe9, 22, 0x1fffe7, 21, 0x1fffe8, 21, 0x7ffff3, 23,
  0x3fffea, 22, 0x3fffeb, 22, 0x1ffffee, 25, 0x1ffffef, 25,
  0xfffff4, 24, 0xfffff5, 24, 0x3ffffea, 26, 0x7ffff4, 23,
  0x3ffffeb, 26, 0x7ffffe6, 27, 0x3ffffec, 26, 0x3ffffed, 26,
  0x7ffffe7, 27, 0x7ffffe8, 27, 0x7ffffe9, 27, 0x7ffffea, 27,
  0x7ffffeb, 27, 0xffffffe, 28, 0x7ffffec, 27, 0x7ffffed, 27,
  0x7ffffee, 27, 0x7ffffef, 27, 0x7fffff0, 27, 0x3ffffee, 26,
  0x3fffffff, 30,
];

const EOS = 256;
const HUFF_CODES = new Uint32Array(257);
const HUFF_LENS = new Uint8Array(257);
for (let s = 0; s <= EOS; s++) {
  HUFF_CODES[s] = HUFFMAN_TABLE[2 * s]!;
  HUFF_LENS[s] = HUFFMAN_TABLE[2 * s + 1]!;
}

// The decoder walks the code tree a nibble at a time through a table built once here (as
// nghttp2 does): state = internal tree node (256 of them), entry = next state, the symbol a
// nibble completed (codes are >= 5 bits, so at most one per nibble), and flags.
const H_EMIT = 1 << 16;
const H_FAIL = 1 << 17; // the nibble completed EOS (RFC 7541 5.2: a decoding error)
const H_ACCEPT = 1 << 18; // the input may end here: the bits since the last symbol are <= 7 ones
const HUFF_DECODE = new Uint32Array(256 * 16);
{
  // child[node * 2 + bit]: > 0 internal node, < 0 leaf -(symbol + 1), 0 unset (root has no parent).
  const child = new Int32Array(256 * 2);
  const depth = new Uint8Array(256);
  const ones = new Uint8Array(256).fill(1);
  let nodes = 1;
  for (let s = 0; s <= EOS; s++) {
    const code = HUFF_CODES[s]!, len = HUFF_LENS[s]!;
    let node = 0;
    for (let i = len - 1; i > 0; i--) {
      const bit = (code >>> i) & 1;
      let next = child[node * 2 + bit]!;
      if (next === 0) {
        next = nodes++;
        child[node * 2 + bit] = next;
        depth[next] = depth[node]! + 1;
        ones[next] = ones[node]! & bit;
      }
      node = next;
    }
    child[node * 2 + (code & 1)] = -(s + 1);
  }
  if (nodes !== 256) throw new Error(`HPACK Huffman table is corrupt: ${nodes} internal nodes`);
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state, entry = 0;
      for (let i = 3; i >= 0; i--) {
        const next = child[node * 2 + ((nibble >> i) & 1)]!;
        if (next >= 0) {
          node = next;
          continue;
        }
        const sym = -next - 1;
        if (sym === EOS) {
          entry |= H_FAIL;
          break;
        }
        entry |= H_EMIT | (sym << 8);
        node = 0;
      }
      if (node === 0 || (ones[node] === 1 && depth[node]! <= 7)) entry |= H_ACCEPT;
      HUFF_DECODE[state * 16 + nibble] = entry | node;
    }
  }
}

/** Scratch for Huffman output: decoded length <= encoded * 8 / 5 (the shortest code is 5 bits). */
let huffScratch = new Uint8Array(1024);

/** Decodes b[start, end) as an HPACK Huffman string into a binary string. */
export function huffmanDecode(b: Uint8Array, start: number, end: number): string {
  const need = Math.floor(((end - start) * 8) / 5) + 1;
  if (huffScratch.length < need) {
    huffScratch = new Uint8Array(Math.max(need, huffScratch.length * 2));
  }
  const out = huffScratch;
  let n = 0, state = 0, accept = H_ACCEPT;
  for (let i = start; i < end; i++) {
    const byte = b[i]!;
    let e = HUFF_DECODE[(state << 4) | (byte >> 4)]!;
    if (e & H_FAIL) {
      throw new HpackError("HPACK: a Huffman string contains the EOS symbol (RFC 7541 5.2)");
    }
    if (e & H_EMIT) out[n++] = (e >> 8) & 255;
    state = e & 255;
    e = HUFF_DECODE[(state << 4) | (byte & 15)]!;
    if (e & H_FAIL) {
      throw new HpackError("HPACK: a Huffman string contains the EOS symbol (RFC 7541 5.2)");
    }
    if (e & H_EMIT) out[n++] = (e >> 8) & 255;
    state = e & 255;
    accept = e & H_ACCEPT;
  }
  if (accept === 0) {
    throw new HpackError(
      "HPACK: a Huffman string ends with padding longer than 7 bits or not all ones (RFC 7541 5.2)",
    );
  }
  return latin1(out, 0, n);
}

/** Huffman-encodes a binary string (chars 0..255). */
export function huffmanEncode(s: string): Uint8Array {
  const w = new Writer(huffmanLength(s) + 1);
  w.huffman(s);
  return w.buf.slice(0, w.pos);
}

/** The Huffman-coded length of a binary string in octets. */
function huffmanLength(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += HUFF_LENS[byteAt(s, i)]!;
  return (bits + 7) >> 3;
}

function byteAt(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c > 255) {
    throw new Error(
      `HPACK: character U+${
        c.toString(16)
      } at ${i} is not a byte; header names and values must be binary (latin1) strings`,
    );
  }
  return c;
}

const CHUNK = 4096;
/** A binary string of b[start, end). TextDecoder("latin1") is windows-1252, so it will not do. */
function latin1(b: Uint8Array, start: number, end: number): string {
  if (end - start <= 16) {
    let s = "";
    for (let i = start; i < end; i++) s += String.fromCharCode(b[i]!);
    return s;
  }
  let s = "";
  for (let i = start; i < end; i += CHUNK) {
    s += String.fromCharCode.apply(
      null,
      b.subarray(i, Math.min(i + CHUNK, end)) as unknown as number[],
    );
  }
  return s;
}

/** A dynamic table (RFC 7541 2.3.2) as a ring of entries, newest last. */
class DynamicTable {
  names: string[] = new Array(16);
  values: string[] = new Array(16);
  /** Slot of the oldest entry. */
  first = 0;
  count = 0;
  /** Sum of entry sizes (RFC 7541 4.1). */
  size = 0;
  /** Entries ever added: the newest entry's sequence number is inserted - 1. */
  inserted = 0;

  constructor(public max: number) {}

  /** Entry i, 0 = newest (HPACK index 62). */
  name(i: number): string {
    return this.names[(this.first + this.count - 1 - i) & (this.names.length - 1)]!;
  }
  value(i: number): string {
    return this.values[(this.first + this.count - 1 - i) & (this.names.length - 1)]!;
  }

  /** Adds an entry, evicting as RFC 7541 4.4 says; `onEvict` sees each evicted sequence number. */
  add(
    name: string,
    value: string,
    onEvict?: (seq: number, name: string, value: string) => void,
  ): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.max) {
      // RFC 7541 4.4: an entry larger than the table empties it and is not added.
      this.evictTo(0, onEvict);
      this.inserted++;
      return;
    }
    this.evictTo(this.max - size, onEvict);
    if (this.count === this.names.length) this.#grow();
    const slot = (this.first + this.count) & (this.names.length - 1);
    this.names[slot] = name;
    this.values[slot] = value;
    this.count++;
    this.size += size;
    this.inserted++;
  }

  evictTo(max: number, onEvict?: (seq: number, name: string, value: string) => void): void {
    const mask = this.names.length - 1;
    while (this.size > max && this.count > 0) {
      const name = this.names[this.first]!, value = this.values[this.first]!;
      if (onEvict !== undefined) onEvict(this.inserted - this.count, name, value);
      this.size -= name.length + value.length + ENTRY_OVERHEAD;
      // Release the strings: a table entry can be large.
      this.names[this.first] = "";
      this.values[this.first] = "";
      this.first = (this.first + 1) & mask;
      this.count--;
    }
  }

  #grow(): void {
    const n = this.names.length;
    const names: string[] = new Array(n * 2), values: string[] = new Array(n * 2);
    for (let i = 0; i < n; i++) {
      names[i] = this.names[(this.first + i) & (n - 1)]!;
      values[i] = this.values[(this.first + i) & (n - 1)]!;
    }
    this.names = names;
    this.values = values;
    this.first = 0;
  }
}

export class HpackDecoder {
  readonly #maxTableSize: number;
  readonly #maxHeaderListSize: number;
  readonly #table: DynamicTable;
  #buf: Uint8Array = new Uint8Array(0);
  #pos = 0;

  /** maxTableSize: our SETTINGS_HEADER_TABLE_SIZE (4096 default); maxHeaderListSize: our SETTINGS_MAX_HEADER_LIST_SIZE. */
  constructor(opts: { maxTableSize: number; maxHeaderListSize: number }) {
    this.#maxTableSize = opts.maxTableSize;
    this.#maxHeaderListSize = opts.maxHeaderListSize;
    this.#table = new DynamicTable(opts.maxTableSize);
  }

  /** The dynamic table as [name, value] pairs, newest first (for tests and diagnostics). */
  get tableEntries(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (let i = 0; i < this.#table.count; i++) {
      out.push([this.#table.name(i), this.#table.value(i)]);
    }
    return out;
  }
  /** The dynamic table's size in the RFC 7541 4.1 sense. */
  get tableSize(): number {
    return this.#table.size;
  }

  /** Decodes one complete header block (HEADERS+CONTINUATION fragments joined). Throws HpackError. */
  decode(block: Uint8Array): DecodedBlock {
    this.#buf = block;
    this.#pos = 0;
    const end = block.length;
    const table = this.#table;
    const limit = this.#maxHeaderListSize;
    let fields: Array<[string, string]> = [];
    let listSize = 0, tooLarge = false, fieldSeen = false;
    try {
      while (this.#pos < end) {
        const b = block[this.#pos]!;
        let name: string, value: string;
        if (b & 0x80) {
          // 6.1 Indexed Header Field.
          const index = this.#int(7);
          if (index === 0) {
            throw new HpackError("HPACK: an indexed field refers to index 0 (RFC 7541 6.1)");
          }
          if (index <= STATIC_COUNT) {
            const e = STATIC_TABLE[index - 1]!;
            name = e[0];
            value = e[1];
          } else {
            const d = this.#dynamic(index);
            name = table.name(d);
            value = table.value(d);
          }
        } else if (b & 0x40) {
          // 6.2.1 Literal with Incremental Indexing.
          name = this.#literalName(6);
          value = this.#string();
          table.add(name, value);
        } else if (b & 0x20) {
          // 6.3 Dynamic Table Size Update.
          if (fieldSeen) {
            throw new HpackError(
              "HPACK: a dynamic table size update follows a field; it may only start a block (RFC 7541 4.2)",
            );
          }
          const size = this.#int(5);
          if (size > this.#maxTableSize) {
            throw new HpackError(
              `HPACK: dynamic table size update to ${size} exceeds our SETTINGS_HEADER_TABLE_SIZE ${this.#maxTableSize} (RFC 7541 6.3)`,
            );
          }
          table.max = size;
          table.evictTo(size);
          continue;
        } else {
          // 6.2.2 without indexing / 6.2.3 never indexed: the same wire shape with a 4-bit prefix.
          name = this.#literalName(4);
          value = this.#string();
        }
        fieldSeen = true;
        if (tooLarge) continue;
        listSize += name.length + value.length + ENTRY_OVERHEAD;
        if (listSize > limit) {
          // Keep decoding (the table must stay in sync) but drop what we hold.
          tooLarge = true;
          fields = [];
          continue;
        }
        fields.push([name, value]);
      }
    } finally {
      // Don't keep the peer's block alive.
      this.#buf = EMPTY;
    }
    return { fields, tooLarge };
  }

  #dynamic(index: number): number {
    const d = index - STATIC_COUNT - 1;
    if (d >= this.#table.count) {
      throw new HpackError(
        `HPACK: index ${index} is beyond the static table and the ${this.#table.count}-entry dynamic table (RFC 7541 2.3.3)`,
      );
    }
    return d;
  }

  #literalName(prefix: number): string {
    const index = this.#int(prefix);
    if (index === 0) return this.#string();
    if (index <= STATIC_COUNT) return STATIC_TABLE[index - 1]![0];
    return this.#table.name(this.#dynamic(index));
  }

  /** RFC 7541 5.1 integer with an N-bit prefix, at #pos. */
  #int(prefix: number): number {
    const buf = this.#buf;
    const max = (1 << prefix) - 1;
    let value = buf[this.#pos++]! & max;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      if (this.#pos >= buf.length) {
        throw new HpackError("HPACK: an integer runs past the end of the block (RFC 7541 5.1)");
      }
      const b = buf[this.#pos++]!;
      value += (b & 127) * 2 ** shift;
      if (value > MAX_INTEGER || shift > 21) {
        throw new HpackError(
          `HPACK: an integer exceeds 2^28 or is over-long (RFC 7541 5.1 allows us a limit)`,
        );
      }
      if ((b & 128) === 0) return value;
      shift += 7;
    }
  }

  /** RFC 7541 5.2 string literal at #pos. */
  #string(): string {
    const buf = this.#buf;
    if (this.#pos >= buf.length) {
      throw new HpackError("HPACK: a string literal is missing at the end of the block");
    }
    const huffman = buf[this.#pos]! & 0x80;
    const len = this.#int(7);
    const start = this.#pos, end = start + len;
    if (end > buf.length) {
      throw new HpackError(
        `HPACK: a string literal of ${len} octets runs ${
          end - buf.length
        } past the end of the block (RFC 7541 5.2)`,
      );
    }
    this.#pos = end;
    return huffman ? huffmanDecode(buf, start, end) : latin1(buf, start, end);
  }
}

const EMPTY = new Uint8Array(0);

/** A growable output buffer. */
class Writer {
  buf: Uint8Array;
  pos = 0;
  constructor(size: number) {
    this.buf = new Uint8Array(size);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  /** RFC 7541 5.1: `flags` are the first octet's bits above the prefix. */
  int(prefix: number, flags: number, value: number): void {
    this.ensure(6);
    const max = (1 << prefix) - 1;
    if (value < max) {
      this.buf[this.pos++] = flags | value;
      return;
    }
    this.buf[this.pos++] = flags | max;
    value -= max;
    while (value >= 128) {
      this.buf[this.pos++] = (value & 127) | 128;
      value = Math.floor(value / 128);
    }
    this.buf[this.pos++] = value;
  }

  /** RFC 7541 5.2, Huffman-coded when that is shorter. */
  string(s: string): void {
    const hlen = huffmanLength(s);
    if (hlen < s.length) {
      this.int(7, 0x80, hlen);
      this.ensure(hlen);
      this.huffman(s);
      return;
    }
    this.int(7, 0, s.length);
    this.ensure(s.length);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < s.length; i++) buf[p++] = byteAt(s, i);
    this.pos = p;
  }

  /** Writes s Huffman-coded; the caller has ensured room. */
  huffman(s: string): void {
    const buf = this.buf;
    let p = this.pos;
    // acc holds n < 8 pending bits; codes over 24 bits go in two pieces so acc fits in 32 bits.
    let acc = 0, n = 0;
    for (let i = 0; i < s.length; i++) {
      const c = byteAt(s, i);
      let code = HUFF_CODES[c]!, len = HUFF_LENS[c]!;
      if (len > 24) {
        acc = (acc << (len - 16)) | (code >>> 16);
        n += len - 16;
        while (n >= 8) {
          n -= 8;
          buf[p++] = acc >>> n;
        }
        acc &= (1 << n) - 1;
        code &= 0xffff;
        len = 16;
      }
      acc = (acc << len) | code;
      n += len;
      while (n >= 8) {
        n -= 8;
        buf[p++] = acc >>> n;
      }
      acc &= (1 << n) - 1;
    }
    // Pad with the EOS prefix (all ones).
    if (n > 0) buf[p++] = (acc << (8 - n)) | ((1 << (8 - n)) - 1);
    this.pos = p;
  }
}

/**
 * Fields whose values an attacker sharing the connection could recover by probing the table
 * (CRIME-style, RFC 7541 7.1): credentials always, short cookies (guessable, as nghttp2 judges
 * them) and set-cookie. They go out never-indexed, so intermediaries keep them out of tables too.
 */
function isSensitive(name: string, value: string): boolean {
  switch (name) {
    case "authorization":
    case "proxy-authorization":
    case "set-cookie":
      return true;
    case "cookie":
      return value.length < 20;
    default:
      return false;
  }
}

/** Values that change per message: indexing them only churns the table (nghttp2's list). */
const NOT_INDEXED = new Set([
  ":path",
  "age",
  "content-length",
  "etag",
  "if-modified-since",
  "if-none-match",
  "location",
]);

export class HpackEncoder {
  readonly #table = new DynamicTable(DEFAULT_TABLE_SIZE);
  /** name -> value -> sequence number of the newest entry with both. */
  readonly #exact = new Map<string, Map<string, number>>();
  /** name -> sequence number of the newest entry with that name. */
  readonly #byName = new Map<string, number>();
  readonly #w = new Writer(512);
  /** The table size the peer's decoder last heard from us. */
  #signaled = DEFAULT_TABLE_SIZE;
  /** The smallest size since the last block (RFC 7541 4.2: it must be signaled first). */
  #lowest = DEFAULT_TABLE_SIZE;
  readonly #onEvict = (seq: number, name: string, value: string): void => {
    const values = this.#exact.get(name);
    if (values !== undefined && values.get(value) === seq) {
      values.delete(value);
      if (values.size === 0) this.#exact.delete(name);
    }
    if (this.#byName.get(name) === seq) this.#byName.delete(name);
  };

  constructor() {}

  /** The peer's SETTINGS_HEADER_TABLE_SIZE: the encoder shrinks to it (never grows past 4096 unless told) and signals a Dynamic Table Size Update at the start of the next block. */
  setMaxTableSize(n: number): void {
    const size = Math.max(0, Math.min(n, DEFAULT_TABLE_SIZE));
    this.#lowest = Math.min(this.#lowest, size);
    this.#table.max = size;
    this.#table.evictTo(size, this.#onEvict);
  }

  /** Encodes one header block. Names must already be lower-case. Sensitive fields (see isSensitive) are encoded never-indexed. */
  encode(fields: Array<[string, string]>): Uint8Array {
    const w = this.#w;
    const table = this.#table;
    w.pos = 0;
    if (this.#lowest < this.#signaled) {
      w.int(5, 0x20, this.#lowest);
      if (table.max !== this.#lowest) w.int(5, 0x20, table.max);
    } else if (table.max !== this.#signaled) {
      w.int(5, 0x20, table.max);
    }
    this.#signaled = this.#lowest = table.max;
    for (let i = 0; i < fields.length; i++) {
      const [name, value] = fields[i]!;
      const sensitive = isSensitive(name, value);
      const st = STATIC_BY_NAME.get(name);
      if (!sensitive) {
        const si = st?.values.get(value);
        if (si !== undefined) {
          w.int(7, 0x80, si);
          continue;
        }
        const seq = this.#exact.get(name)?.get(value);
        if (seq !== undefined) {
          w.int(7, 0x80, this.#index(seq));
          continue;
        }
      }
      let nameIndex = st?.index ?? 0;
      if (nameIndex === 0) {
        const seq = this.#byName.get(name);
        if (seq !== undefined) nameIndex = this.#index(seq);
      }
      const size = name.length + value.length + ENTRY_OVERHEAD;
      const index = !sensitive && size <= (table.max * 3) / 4 && !NOT_INDEXED.has(name);
      if (index) w.int(6, 0x40, nameIndex);
      else w.int(4, sensitive ? 0x10 : 0x00, nameIndex);
      if (nameIndex === 0) w.string(name);
      w.string(value);
      if (index) {
        table.add(name, value, this.#onEvict);
        const seq = table.inserted - 1;
        let values = this.#exact.get(name);
        if (values === undefined) this.#exact.set(name, values = new Map());
        values.set(value, seq);
        this.#byName.set(name, seq);
      }
    }
    return w.buf.slice(0, w.pos);
  }

  /** The HPACK index of the dynamic entry with this sequence number. */
  #index(seq: number): number {
    return STATIC_COUNT + this.#table.inserted - seq;
  }
}
