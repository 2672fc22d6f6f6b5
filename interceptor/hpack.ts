/**
 * HPACK (RFC 7541), both directions, for our HTTP/2: the static and
 * dynamic tables, integers, literals and Huffman coding. Strings are
 * "binary" (one char per byte), as the HTTP/1.1 path uses. The decoder
 * enforces every error the RFC names and bounds what a block may expand
 * to (an "HPACK bomb": a small block naming a large table entry many
 * times) while keeping the table in step, so the connection survives a
 * list that is only too large.
 */

/** A malformed header block: the connection ends with GOAWAY COMPRESSION_ERROR. */
export class HpackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HpackError";
  }
}

export interface DecodedBlock {
  /** [name, value] in order. */
  fields: Array<[string, string]>;
  /**
   * The list exceeded maxHeaderListSize (name + value + 32 per field, RFC
   * 9113 6.5.2): `fields` is then empty, the table still updated.
   */
  tooLarge: boolean;
}

/** RFC 7541 Appendix B: the code of each byte value, MSB-aligned in its length. */
const HUFFMAN_CODES: readonly number[] = [
  0x1ff8,
  0x7fffd8,
  0xfffffe2,
  0xfffffe3,
  0xfffffe4,
  0xfffffe5,
  0xfffffe6,
  0xfffffe7,
  0xfffffe8,
  0xffffea,
  0x3ffffffc,
  0xfffffe9,
  0xfffffea,
  0x3ffffffd,
  0xfffffeb,
  0xfffffec,
  0xfffffed,
  0xfffffee,
  0xfffffef,
  0xffffff0,
  0xffffff1,
  0xffffff2,
  0x3ffffffe,
  0xffffff3,
  0xffffff4,
  0xffffff5,
  0xffffff6,
  0xffffff7,
  0xffffff8,
  0xffffff9,
  0xffffffa,
  0xffffffb,
  0x14,
  0x3f8,
  0x3f9,
  0xffa,
  0x1ff9,
  0x15,
  0xf8,
  0x7fa,
  0x3fa,
  0x3fb,
  0xf9,
  0x7fb,
  0xfa,
  0x16,
  0x17,
  0x18,
  0x0,
  0x1,
  0x2,
  0x19,
  0x1a,
  0x1b,
  0x1c,
  0x1d,
  0x1e,
  0x1f,
  0x5c,
  0xfb,
  0x7ffc,
  0x20,
  0xffb,
  0x3fc,
  0x1ffa,
  0x21,
  0x5d,
  0x5e,
  0x5f,
  0x60,
  0x61,
  0x62,
  0x63,
  0x64,
  0x65,
  0x66,
  0x67,
  0x68,
  0x69,
  0x6a,
  0x6b,
  0x6c,
  0x6d,
  0x6e,
  0x6f,
  0x70,
  0x71,
  0x72,
  0xfc,
  0x73,
  0xfd,
  0x1ffb,
  0x7fff0,
  0x1ffc,
  0x3ffc,
  0x22,
  0x7ffd,
  0x3,
  0x23,
  0x4,
  0x24,
  0x5,
  0x25,
  0x26,
  0x27,
  0x6,
  0x74,
  0x75,
  0x28,
  0x29,
  0x2a,
  0x7,
  0x2b,
  0x76,
  0x2c,
  0x8,
  0x9,
  0x2d,
  0x77,
  0x78,
  0x79,
  0x7a,
  0x7b,
  0x7ffe,
  0x7fc,
  0x3ffd,
  0x1ffd,
  0xffffffc,
  0xfffe6,
  0x3fffd2,
  0xfffe7,
  0xfffe8,
  0x3fffd3,
  0x3fffd4,
  0x3fffd5,
  0x7fffd9,
  0x3fffd6,
  0x7fffda,
  0x7fffdb,
  0x7fffdc,
  0x7fffdd,
  0x7fffde,
  0xffffeb,
  0x7fffdf,
  0xffffec,
  0xffffed,
  0x3fffd7,
  0x7fffe0,
  0xffffee,
  0x7fffe1,
  0x7fffe2,
  0x7fffe3,
  0x7fffe4,
  0x1fffdc,
  0x3fffd8,
  0x7fffe5,
  0x3fffd9,
  0x7fffe6,
  0x7fffe7,
  0xffffef,
  0x3fffda,
  0x1fffdd,
  0xfffe9,
  0x3fffdb,
  0x3fffdc,
  0x7fffe8,
  0x7fffe9,
  0x1fffde,
  0x7fffea,
  0x3fffdd,
  0x3fffde,
  0xfffff0,
  0x1fffdf,
  0x3fffdf,
  0x7fffeb,
  0x7fffec,
  0x1fffe0,
  0x1fffe1,
  0x3fffe0,
  0x1fffe2,
  0x7fffed,
  0x3fffe1,
  0x7fffee,
  0x7fffef,
  0xfffea,
  0x3fffe2,
  0x3fffe3,
  0x3fffe4,
  0x7ffff0,
  0x3fffe5,
  0x3fffe6,
  0x7ffff1,
  0x3ffffe0,
  0x3ffffe1,
  0xfffeb,
  0x7fff1,
  0x3fffe7,
  0x7ffff2,
  0x3fffe8,
  0x1ffffec,
  0x3ffffe2,
  0x3ffffe3,
  0x3ffffe4,
  0x7ffffde,
  0x7ffffdf,
  0x3ffffe5,
  0xfffff1,
  0x1ffffed,
  0x7fff2,
  0x1fffe3,
  0x3ffffe6,
  0x7ffffe0,
  0x7ffffe1,
  0x3ffffe7,
  0x7ffffe2,
  0xfffff2,
  0x1fffe4,
  0x1fffe5,
  0x3ffffe8,
  0x3ffffe9,
  0xffffffd,
  0x7ffffe3,
  0x7ffffe4,
  0x7ffffe5,
  0xfffec,
  0xfffff3,
  0xfffed,
  0x1fffe6,
  0x3fffe9,
  0x1fffe7,
  0x1fffe8,
  0x7ffff3,
  0x3fffea,
  0x3fffeb,
  0x1ffffee,
  0x1ffffef,
  0xfffff4,
  0xfffff5,
  0x3ffffea,
  0x7ffff4,
  0x3ffffeb,
  0x7ffffe6,
  0x3ffffec,
  0x3ffffed,
  0x7ffffe7,
  0x7ffffe8,
  0x7ffffe9,
  0x7ffffea,
  0x7ffffeb,
  0xffffffe,
  0x7ffffec,
  0x7ffffed,
  0x7ffffee,
  0x7ffffef,
  0x7fffff0,
  0x3ffffee,
];

const HUFFMAN_LENGTHS: readonly number[] = [
  13,
  23,
  28,
  28,
  28,
  28,
  28,
  28,
  28,
  24,
  30,
  28,
  28,
  30,
  28,
  28,
  28,
  28,
  28,
  28,
  28,
  28,
  30,
  28,
  28,
  28,
  28,
  28,
  28,
  28,
  28,
  28,
  6,
  10,
  10,
  12,
  13,
  6,
  8,
  11,
  10,
  10,
  8,
  11,
  8,
  6,
  6,
  6,
  5,
  5,
  5,
  6,
  6,
  6,
  6,
  6,
  6,
  6,
  7,
  8,
  15,
  6,
  12,
  10,
  13,
  6,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  8,
  7,
  8,
  13,
  19,
  13,
  14,
  6,
  15,
  5,
  6,
  5,
  6,
  5,
  6,
  6,
  6,
  5,
  7,
  7,
  6,
  6,
  6,
  5,
  6,
  7,
  6,
  5,
  5,
  6,
  7,
  7,
  7,
  7,
  7,
  15,
  11,
  14,
  13,
  28,
  20,
  22,
  20,
  20,
  22,
  22,
  22,
  23,
  22,
  23,
  23,
  23,
  23,
  23,
  24,
  23,
  24,
  24,
  22,
  23,
  24,
  23,
  23,
  23,
  23,
  21,
  22,
  23,
  22,
  23,
  23,
  24,
  22,
  21,
  20,
  22,
  22,
  23,
  23,
  21,
  23,
  22,
  22,
  24,
  21,
  22,
  23,
  23,
  21,
  21,
  22,
  21,
  23,
  22,
  23,
  23,
  20,
  22,
  22,
  22,
  23,
  22,
  22,
  23,
  26,
  26,
  20,
  19,
  22,
  23,
  22,
  25,
  26,
  26,
  26,
  27,
  27,
  26,
  24,
  25,
  19,
  21,
  26,
  27,
  27,
  26,
  27,
  24,
  21,
  21,
  26,
  26,
  28,
  27,
  27,
  27,
  20,
  24,
  20,
  21,
  22,
  21,
  21,
  23,
  22,
  22,
  25,
  25,
  24,
  24,
  26,
  23,
  26,
  27,
  26,
  26,
  27,
  27,
  27,
  27,
  27,
  28,
  27,
  27,
  27,
  27,
  27,
  26,
];

/** RFC 7541 Appendix A. */
const STATIC: ReadonlyArray<readonly [string, string]> = [
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

const EOS_LENGTH = 30;
/** Integers above this are refused: no length or index we accept comes near it. */
const MAX_INT = 2 ** 28;

/** Decoding trie: node n's children at TRIE[2n] (bit 0) and TRIE[2n+1] (bit 1); leaves are -(sym+1). */
const TRIE: Int32Array = (() => {
  const t: number[] = [0, 0];
  let nodes = 1;
  for (let sym = 0; sym <= 256; sym++) {
    const code = sym === 256 ? 0x3fffffff : HUFFMAN_CODES[sym]!;
    const len = sym === 256 ? EOS_LENGTH : HUFFMAN_LENGTHS[sym]!;
    let node = 0;
    for (let b = len - 1; b >= 0; b--) {
      const bit = (code >>> b) & 1;
      const at = 2 * node + bit;
      if (b === 0) {
        t[at] = -(sym + 1);
      } else {
        if (t[at] === 0) {
          t[at] = nodes++;
          t.push(0, 0);
        }
        node = t[at]!;
      }
    }
  }
  return Int32Array.from(t);
})();

export function huffmanDecode(b: Uint8Array, start: number, end: number): string {
  let node = 0;
  let depth = 0;
  let ones = true;
  let out = "";
  for (let i = start; i < end; i++) {
    const byte = b[i]!;
    for (let k = 7; k >= 0; k--) {
      const bit = (byte >>> k) & 1;
      const next = TRIE[2 * node + bit]!;
      depth++;
      if (bit === 0) ones = false;
      if (next < 0) {
        const sym = -next - 1;
        if (sym === 256) throw new HpackError("Huffman string holds the EOS symbol");
        out += String.fromCharCode(sym);
        node = 0;
        depth = 0;
        ones = true;
      } else {
        node = next;
      }
    }
  }
  // RFC 7541 5.2: padding is the most significant bits of EOS (all ones), at most 7 bits.
  if (depth > 7) throw new HpackError("Huffman padding longer than 7 bits");
  if (!ones) throw new HpackError("Huffman padding is not all ones");
  return out;
}

function huffmanBits(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += HUFFMAN_LENGTHS[s.charCodeAt(i) & 0xff]!;
  return bits;
}

export function huffmanEncode(s: string): Uint8Array {
  const out = new Uint8Array(Math.ceil(huffmanBits(s) / 8));
  let acc = 0;
  let n = 0;
  let at = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    const len = HUFFMAN_LENGTHS[c]!;
    const code = HUFFMAN_CODES[c]!;
    for (let b = len - 1; b >= 0; b--) {
      acc = (acc << 1) | ((code >>> b) & 1);
      if (++n === 8) {
        out[at++] = acc;
        acc = 0;
        n = 0;
      }
    }
  }
  if (n > 0) out[at] = ((acc << (8 - n)) | ((1 << (8 - n)) - 1)) & 0xff;
  return out;
}

const STATIC_BY_PAIR = new Map<string, number>();
const STATIC_BY_NAME = new Map<string, number>();
STATIC.forEach(([n, v], i) => {
  if (!STATIC_BY_PAIR.has(`${n}\0${v}`)) STATIC_BY_PAIR.set(`${n}\0${v}`, i + 1);
  if (!STATIC_BY_NAME.has(n)) STATIC_BY_NAME.set(n, i + 1);
});

/** A dynamic table: newest entry first (index 62). */
class Table {
  entries: Array<[string, string]> = [];
  size = 0;
  constructor(public max: number) {}

  add(name: string, value: string): void {
    const s = name.length + value.length + 32;
    // RFC 7541 4.4: an entry larger than the table empties it and is not added.
    this.evict(this.max - s);
    if (s <= this.max) {
      this.entries.unshift([name, value]);
      this.size += s;
    }
  }

  evict(to: number): void {
    while (this.size > Math.max(0, to) && this.entries.length > 0) {
      const [n, v] = this.entries.pop()!;
      this.size -= n.length + v.length + 32;
    }
  }

  resize(max: number): void {
    this.max = max;
    this.evict(max);
  }
}

function latin1(b: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i += 4096) {
    s += String.fromCharCode.apply(
      null,
      b.subarray(i, Math.min(end, i + 4096)) as unknown as number[],
    );
  }
  return s;
}

export class HpackDecoder {
  readonly #table: Table;
  readonly #maxTable: number;
  readonly #maxList: number;
  #b: Uint8Array = new Uint8Array(0);
  #i = 0;

  constructor(opts: { maxTableSize: number; maxHeaderListSize: number }) {
    this.#maxTable = opts.maxTableSize;
    this.#maxList = opts.maxHeaderListSize;
    this.#table = new Table(opts.maxTableSize);
  }

  /** Dynamic table size, for tests. */
  get tableSize(): number {
    return this.#table.size;
  }

  get tableEntries(): Array<[string, string]> {
    return this.#table.entries;
  }

  #int(prefixBits: number): number {
    const b = this.#b;
    if (this.#i >= b.length) throw new HpackError("header block ends inside an integer");
    const max = (1 << prefixBits) - 1;
    let v = b[this.#i++]! & max;
    if (v < max) return v;
    let m = 0;
    while (true) {
      if (this.#i >= b.length) throw new HpackError("header block ends inside an integer");
      const c = b[this.#i++]!;
      v += (c & 0x7f) * 2 ** m;
      if (v > MAX_INT) throw new HpackError("HPACK integer too large");
      if ((c & 0x80) === 0) return v;
      m += 7;
    }
  }

  #str(): string {
    const b = this.#b;
    if (this.#i >= b.length) throw new HpackError("header block ends before a string");
    const huff = (b[this.#i]! & 0x80) !== 0;
    const len = this.#int(7);
    const end = this.#i + len;
    if (end > b.length) throw new HpackError("string length past the end of the header block");
    const s = huff ? huffmanDecode(b, this.#i, end) : latin1(b, this.#i, end);
    this.#i = end;
    return s;
  }

  #get(index: number): [string, string] {
    if (index === 0) throw new HpackError("index 0 is not valid");
    if (index <= STATIC.length) return STATIC[index - 1] as [string, string];
    const e = this.#table.entries[index - STATIC.length - 1];
    if (e === undefined) throw new HpackError(`index ${index} is beyond the tables`);
    return e;
  }

  decode(block: Uint8Array): DecodedBlock {
    this.#b = block;
    this.#i = 0;
    const fields: Array<[string, string]> = [];
    let size = 0;
    let tooLarge = false;
    let sawField = false;
    while (this.#i < block.length) {
      const c = block[this.#i]!;
      let name: string;
      let value: string;
      if ((c & 0x80) !== 0) {
        [name, value] = this.#get(this.#int(7));
      } else if ((c & 0x40) !== 0) {
        const idx = this.#int(6);
        name = idx === 0 ? this.#str() : this.#get(idx)[0];
        value = this.#str();
        this.#table.add(name, value);
      } else if ((c & 0x20) !== 0) {
        if (sawField) throw new HpackError("dynamic table size update after a field");
        const v = this.#int(5);
        if (v > this.#maxTable) {
          throw new HpackError(`dynamic table size ${v} above the ${this.#maxTable} allowed`);
        }
        this.#table.resize(v);
        continue;
      } else {
        const idx = this.#int(4);
        name = idx === 0 ? this.#str() : this.#get(idx)[0];
        value = this.#str();
      }
      sawField = true;
      if (tooLarge) continue;
      size += name.length + value.length + 32;
      if (size > this.#maxList) {
        tooLarge = true;
        fields.length = 0;
        continue;
      }
      fields.push([name, value]);
    }
    this.#b = new Uint8Array(0);
    return { fields, tooLarge };
  }
}

/** Fields never indexed (RFC 7541 7.1): secrets an attacker could probe the table for. */
const SENSITIVE = new Set(["authorization", "proxy-authorization", "set-cookie", "cookie"]);

export class HpackEncoder {
  readonly #table = new Table(4096);
  /** Sizes to announce at the start of the next block: the smallest, then the final one. */
  #pending: number[] = [];
  #out = new Uint8Array(1024);
  #n = 0;

  setMaxTableSize(n: number): void {
    const size = Math.min(n, 4096);
    if (size === this.#table.max && this.#pending.length === 0) return;
    const min = Math.min(size, this.#pending[0] ?? this.#table.max);
    this.#pending = min < size ? [min, size] : [size];
    this.#table.resize(size);
  }

  #byte(b: number): void {
    if (this.#n === this.#out.length) {
      const bigger = new Uint8Array(this.#out.length * 2);
      bigger.set(this.#out);
      this.#out = bigger;
    }
    this.#out[this.#n++] = b;
  }

  #int(first: number, prefixBits: number, v: number): void {
    const max = (1 << prefixBits) - 1;
    if (v < max) return this.#byte(first | v);
    this.#byte(first | max);
    v -= max;
    while (v >= 128) {
      this.#byte((v % 128) + 128);
      v = Math.floor(v / 128);
    }
    this.#byte(v);
  }

  #str(s: string): void {
    const bits = huffmanBits(s);
    if (Math.ceil(bits / 8) < s.length) {
      const h = huffmanEncode(s);
      this.#int(0x80, 7, h.length);
      for (let i = 0; i < h.length; i++) this.#byte(h[i]!);
    } else {
      this.#int(0, 7, s.length);
      for (let i = 0; i < s.length; i++) this.#byte(s.charCodeAt(i) & 0xff);
    }
  }

  #dynamicIndex(name: string, value: string): { pair: number; name: number } {
    let nameAt = 0;
    const e = this.#table.entries;
    for (let i = 0; i < e.length; i++) {
      if (e[i]![0] !== name) continue;
      if (e[i]![1] === value) return { pair: i + STATIC.length + 1, name: 0 };
      if (nameAt === 0) nameAt = i + STATIC.length + 1;
    }
    return { pair: 0, name: nameAt };
  }

  encode(fields: Array<[string, string]>): Uint8Array {
    this.#n = 0;
    for (const size of this.#pending) this.#int(0x20, 5, size);
    this.#pending = [];
    for (const [name, value] of fields) {
      const sensitive = SENSITIVE.has(name) && (name !== "cookie" || value.length < 20);
      const exact = STATIC_BY_PAIR.get(`${name}\0${value}`);
      if (exact !== undefined) {
        this.#int(0x80, 7, exact);
        continue;
      }
      const dyn = sensitive ? { pair: 0, name: 0 } : this.#dynamicIndex(name, value);
      if (dyn.pair > 0) {
        this.#int(0x80, 7, dyn.pair);
        continue;
      }
      const nameIdx = STATIC_BY_NAME.get(name) ?? dyn.name;
      const entry = name.length + value.length + 32;
      if (sensitive) {
        this.#int(0x10, 4, nameIdx);
      } else if (entry <= this.#table.max / 2 && !name.startsWith(":path")) {
        this.#int(0x40, 6, nameIdx);
        this.#table.add(name, value);
      } else {
        this.#int(0x00, 4, nameIdx);
      }
      if (nameIdx === 0) this.#str(name);
      this.#str(value);
    }
    return this.#out.slice(0, this.#n);
  }
}
