/**
 * Generators of HTTP/1.1 messages (RFC 9112 grammar plus the mutations that
 * smuggling attacks use) and the comparison of our parser with the oracles,
 * shared by the oracle and property tests, the corpus and `deno task fuzz`.
 * Every message is a binary string (one char per byte).
 */
import fc from "fast-check";
import { binaryBytes, binaryString, findHeadEnd } from "./http1_bytes.ts";
import { HttpError, MAX_HEAD_BYTES } from "./http1_fields.ts";
import { parseRequestHead, type RequestHead } from "./http1_request.ts";
import { parseResponseHead, responseHasNoBody } from "./http1_response.ts";
import { ChunkedScanner } from "./http1_chunked.ts";
import {
  type CaseKind,
  type Difference,
  type Divergence,
  type DivergenceContext,
  explain,
  type OracleName,
  type Outcome,
} from "./http1_divergences.ts";
import type { LlhttpAnswer, LlhttpCase, LlhttpOracle } from "./llhttp_oracle_testing.ts";
import { type HyperAnswer, type HyperOracle, pathOf } from "./hyper_oracle_testing.ts";

export interface HttpCase {
  kind: CaseKind;
  /** Binary string; for `chunked`, the body alone. */
  bytes: string;
  /** Responses: the request's method. */
  method?: string;
  /** Responses: the app closes the connection after the bytes. */
  eof?: boolean;
}

// ---------------------------------------------------------------------------
// Characters and tokens

const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALPHA = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS = "0123456789";
const HEX = "0123456789abcdefABCDEF";

function charsOf(s: string): string[] {
  return [...s];
}

function stringOf(chars: fc.Arbitrary<string>, min: number, max: number): fc.Arbitrary<string> {
  return fc.string({ unit: chars, minLength: min, maxLength: max });
}

const tchar = fc.constantFrom(...charsOf(TCHARS));
const token = (min = 1, max = 10): fc.Arbitrary<string> => stringOf(tchar, min, max);
const vchar = fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c));
const obsText = fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c));
const anyByte = fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c));

/** A field value: visible chars, inner SP/HTAB, now and then obs-text. */
const fieldValue: fc.Arbitrary<string> = stringOf(
  fc.oneof(
    { weight: 20, arbitrary: vchar },
    { weight: 3, arbitrary: fc.constant(" ") },
    { weight: 1, arbitrary: fc.constant("\t") },
    { weight: 1, arbitrary: obsText },
  ),
  0,
  16,
);

/** A deterministic re-casing of ASCII letters, driven by a seed. */
export function recase(s: string, seed: number): string {
  let x = seed | 1;
  let out = "";
  for (const ch of s) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const c = ch.charCodeAt(0);
    const letter = (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
    // ASCII only: toUpperCase would turn some latin-1 bytes into chars past 0xff.
    out += !letter ? ch : (x >> 16) & 1 ? ch.toUpperCase() : ch.toLowerCase();
  }
  return out;
}

// ---------------------------------------------------------------------------
// Request heads

const methodArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 24, arbitrary: fc.constantFrom("GET", "POST", "PUT", "HEAD", "DELETE", "PATCH") },
  { weight: 3, arbitrary: fc.constantFrom("OPTIONS", "TRACE", "CONNECT", "PROPFIND", "QUERY") },
  { weight: 2, arbitrary: fc.constantFrom("get", "Post", "BREW", "M-SEARCH", "PURGE") },
  { weight: 1, arbitrary: token(1, 8) },
);

const pchar = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...charsOf(ALPHA + DIGITS + "-._~")) },
  { weight: 3, arbitrary: fc.constantFrom(...charsOf("!$&'()*+,;=:@")) },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.constantFrom(...charsOf(HEX)), fc.constantFrom(...charsOf(HEX)))
      .map(([a, b]) => `%${a}${b}`),
  },
);

const pathArb = fc.array(stringOf(pchar, 0, 6), { minLength: 1, maxLength: 4 })
  .map((segs) => `/${segs.join("/")}`);
const queryArb = fc.option(stringOf(fc.oneof(pchar, fc.constantFrom("/", "?")), 0, 10), {
  nil: undefined,
});
const originForm = fc.tuple(pathArb, queryArb).map(([p, q]) => (q === undefined ? p : `${p}?${q}`));

const regName = fc.oneof(
  fc.constantFrom("a.example", "app.test", "localhost", "x", "EXAMPLE.com", "a-b.c_d.test"),
  stringOf(fc.constantFrom(...charsOf("abcdefghijklmnopqrstuvwxyz0123456789-.")), 1, 12),
);
const hostName = fc.oneof(
  { weight: 6, arbitrary: regName },
  { weight: 1, arbitrary: fc.constantFrom("127.0.0.1", "[::1]", "[2001:db8::1]", "10.0.0.1") },
);
const port = fc.oneof(
  { weight: 6, arbitrary: fc.constant("") },
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 65535 }).map((p) => `:${p}`) },
  { weight: 1, arbitrary: fc.constantFrom(":", ":080", ":123456", ":abc") },
);
const authority = fc.tuple(hostName, port).map(([h, p]) => h + p);

/** Host field values: mostly valid, some that no proxy should route by. */
const hostValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 14, arbitrary: authority },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "",
      "a b",
      "a/b",
      "u@a.example",
      "a.example, b.example",
      "a.example\t",
      "[::1",
      "a.example:80:80",
      "\u00e9.test",
    ),
  },
);

const absoluteForm = fc.tuple(
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom("http", "https") },
    { weight: 1, arbitrary: fc.constantFrom("HTTP", "ftp", "ws", "h") },
  ),
  fc.oneof(
    { weight: 8, arbitrary: authority },
    { weight: 1, arbitrary: fc.constantFrom("", "user@a.example", "user:pw@a.example:81") },
  ),
  fc.oneof(
    { weight: 4, arbitrary: originForm },
    { weight: 1, arbitrary: fc.constant("") },
    { weight: 1, arbitrary: queryArb.map((q) => `?${q ?? "x=1"}`) },
  ),
).map(([s, a, p]) => `${s}://${a}${p}`);

const targetArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 30, arbitrary: originForm },
  { weight: 5, arbitrary: absoluteForm },
  { weight: 1, arbitrary: fc.constant("*") },
  { weight: 1, arbitrary: authority },
  {
    weight: 1,
    arbitrary: fc.constantFrom("/a#frag", "/\u00e9", '/a"b', "/a<b>", "/a\\b", "/{x}", "//a", "?x"),
  },
);

const versionArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 40, arbitrary: fc.constant("HTTP/1.1") },
  { weight: 6, arbitrary: fc.constant("HTTP/1.0") },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "HTTP/1.2",
      "HTTP/1.9",
      "HTTP/2.0",
      "HTTP/0.9",
      "HTTP/3.0",
      "HTTP/1.10",
      "http/1.1",
      "HTTP/1",
      "HTTP/11",
      "HTTP/1.1 ",
    ),
  },
);

/** Content-Length values: digits mostly, and the forms smuggling uses. */
const contentLengthValue = (n: number): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 12, arbitrary: fc.constant(String(n)) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        `0${n}`,
        `+${n}`,
        `-${n}`,
        `0x${n.toString(16)}`,
        `${n}, ${n}`,
        `${n},${n + 1}`,
        `${n} ${n}`,
        `${n}.0`,
        "",
        "99999999999999999999",
        `${n}\u00a0`,
      ),
    },
  );

const teValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 10, arbitrary: fc.constant("chunked") },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "Chunked",
      "CHUNKED",
      "gzip, chunked",
      "chunked, gzip",
      "chunked, chunked",
      "identity",
      "xchunked",
      "chunked;q=1",
      "chunked, identity",
      "identity, chunked",
      "gzip",
      ",chunked",
      "chunked,",
      '"chunked"',
      "chunk",
    ),
  },
);

/** One field line as name, separator (colon and OWS), value and trailing OWS. */
type FieldLine = [name: string, value: string];

/** Framing fields and the body they announce. */
interface Framing {
  fields: FieldLine[];
  /** "chunked" when the body is chunked framing, else the exact body. */
  chunked: boolean;
  length: number;
}

const framingArb: fc.Arbitrary<Framing> = fc.integer({ min: 0, max: 24 }).chain((n) =>
  fc.oneof(
    { weight: 5, arbitrary: fc.constant<Framing>({ fields: [], chunked: false, length: 0 }) },
    {
      weight: 5,
      arbitrary: contentLengthValue(n).map((v): Framing => ({
        fields: [["Content-Length", v]],
        chunked: false,
        length: n,
      })),
    },
    {
      weight: 5,
      arbitrary: teValue.map((v): Framing => ({
        fields: [["Transfer-Encoding", v]],
        chunked: true,
        length: 0,
      })),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(teValue, contentLengthValue(n), fc.boolean(), fc.boolean()).map((
        [te, cl, teFirst, chunkedBody],
      ): Framing => ({
        fields: teFirst
          ? [["Transfer-Encoding", te], ["Content-Length", cl]]
          : [["Content-Length", cl], ["Transfer-Encoding", te]],
        // CL.TE and TE.CL: the body fits one reading or the other.
        chunked: chunkedBody,
        length: n,
      })),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(contentLengthValue(n), contentLengthValue(n + 1)).map((
        [a, b],
      ): Framing => ({
        fields: [["Content-Length", a], ["Content-Length", b]],
        chunked: false,
        length: n,
      })),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(teValue, teValue).map(([a, b]): Framing => ({
        fields: [["Transfer-Encoding", a], ["Transfer-Encoding", b]],
        chunked: true,
        length: 0,
      })),
    },
  )
);

const extraField: fc.Arbitrary<FieldLine> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(token(1, 12), fieldValue) },
  {
    weight: 4,
    arbitrary: fc.tuple(
      fc.constantFrom("Accept", "User-Agent", "Cookie", "X-Request-Id", "Content-Type", "Via"),
      fieldValue,
    ),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(
      fc.constant("Connection"),
      fc.constantFrom(
        "close",
        "keep-alive",
        "Upgrade",
        "keep-alive, Upgrade",
        "Content-Length",
        "Transfer-Encoding",
        "x-foo",
        "close, close",
        "",
      ),
    ),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.constantFrom("Upgrade", "Keep-Alive", "TE", "Trailer", "Proxy-Connection"),
      fc.constantFrom("websocket", "h2c", "timeout=5", "trailers", "X-Checksum", "close"),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constantFrom("X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"),
      fc.constantFrom("10.0.0.1", "a.example", "https"),
    ),
  },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom("X-Long"), stringOf(vchar, 100, 400)) },
);

/** Whitespace and line ends of one field line. */
interface LineStyle {
  before: string;
  after: string;
  eol: string;
  recase: number;
}

const lineStyle: fc.Arbitrary<LineStyle> = fc.record({
  before: fc.oneof(
    { weight: 12, arbitrary: fc.constant(" ") },
    { weight: 3, arbitrary: fc.constantFrom("", "  ", "\t", " \t") },
  ),
  after: fc.oneof(
    { weight: 12, arbitrary: fc.constant("") },
    { weight: 2, arbitrary: fc.constantFrom(" ", "\t", "  ") },
  ),
  eol: fc.oneof(
    { weight: 100, arbitrary: fc.constant("\r\n") },
    { weight: 1, arbitrary: fc.constant("\n") },
  ),
  recase: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat() }),
});

function fieldLines(fields: FieldLine[], styles: LineStyle[]): string {
  let out = "";
  fields.forEach(([name, value], i) => {
    const s = styles[i % styles.length]!;
    out += `${
      s.recase === 0 ? name : recase(name, s.recase)
    }:${s.before}${value}${s.after}${s.eol}`;
  });
  return out;
}

// ---------------------------------------------------------------------------
// Chunked bodies

const chunkExt: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: token(1, 6).map((n) => `;${n}`) },
  { weight: 6, arbitrary: fc.tuple(token(1, 6), token(1, 6)).map(([n, v]) => `;${n}=${v}`) },
  {
    weight: 4,
    arbitrary: fc.tuple(
      token(1, 6),
      stringOf(
        fc.oneof(
          { weight: 10, arbitrary: fc.constantFrom(...charsOf(ALPHA + " ;=,")) },
          { weight: 1, arbitrary: fc.constantFrom('\\"', "\\\\", "\t", "\u00e9") },
        ),
        0,
        8,
      ),
    ).map(([n, v]) => `;${n}="${v}"`),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(token(1, 4), token(1, 4)).map(([n, v]) => ` ; ${n} = ${v}`),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      ";",
      ";=v",
      ";n=",
      ';n="unterminated',
      ";n=a b",
      ";n=@",
      ";n=\u0000",
      ";n=\x7f",
      ";n\x0bx",
      ";\u00e9",
      ';n="a\rb"',
      " x",
      "\t;n",
    ),
  },
);

interface ChunkModel {
  sizeText: string;
  ext: string;
  data: string;
  eol: string;
  dataEnd: string;
}

const chunkArb: fc.Arbitrary<ChunkModel> = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 24 }) },
  { weight: 1, arbitrary: fc.integer({ min: 25, max: 300 }) },
).chain((size) =>
  fc.record({
    sizeText: fc.oneof(
      { weight: 30, arbitrary: fc.constant(size.toString(16)) },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          size.toString(16).toUpperCase(),
          `0${size.toString(16)}`,
          `000${size.toString(16)}`,
        ),
      },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          `0x${size.toString(16)}`,
          `+${size.toString(16)}`,
          `-${size.toString(16)}`,
          `${size.toString(16)}g`,
          ` ${size.toString(16)}`,
          `${(size + 1).toString(16)}`,
          `${Math.max(1, size - 1).toString(16)}`,
          "ffffffffffffffff1",
          "",
        ),
      },
    ),
    ext: fc.oneof({ weight: 6, arbitrary: fc.constant("") }, { weight: 2, arbitrary: chunkExt }),
    data: stringOf(
      fc.oneof({ weight: 6, arbitrary: vchar }, { weight: 1, arbitrary: anyByte }),
      size,
      size,
    ),
    eol: fc.oneof(
      { weight: 30, arbitrary: fc.constant("\r\n") },
      { weight: 1, arbitrary: fc.constantFrom("\n", "\r", "\r\r\n") },
    ),
    dataEnd: fc.oneof(
      { weight: 30, arbitrary: fc.constant("\r\n") },
      { weight: 1, arbitrary: fc.constantFrom("", "\n", "\r", "x\r\n") },
    ),
  })
);

const trailerField: fc.Arbitrary<FieldLine> = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(token(1, 10), fieldValue) },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.constantFrom(
        "Content-Length",
        "Transfer-Encoding",
        "Host",
        "Connection",
        "TE",
        "Trailer",
        "X-Checksum",
        "Server-Timing",
      ),
      fc.constantFrom("5", "chunked", "a.example", "close", "abc"),
    ),
  },
);

/** Invalid trailer lines (the whole line, with its end). */
const badTrailerLine = fc.constantFrom(
  "no-colon\r\n",
  "X : v\r\n",
  " folded\r\n",
  "X: a\u0000b\r\n",
  "X: v\n",
  ": v\r\n",
  "X\u00e9: v\r\n",
);

export const chunkedBodyArb: fc.Arbitrary<string> = fc.record({
  chunks: fc.array(chunkArb, { maxLength: 4 }),
  last: fc.oneof(
    { weight: 10, arbitrary: fc.constant("0") },
    { weight: 1, arbitrary: fc.constantFrom("00", "000", "0x0", "") },
  ),
  lastExt: fc.oneof({ weight: 6, arbitrary: fc.constant("") }, { weight: 1, arbitrary: chunkExt }),
  trailers: fc.oneof(
    { weight: 6, arbitrary: fc.constant<FieldLine[]>([]) },
    { weight: 2, arbitrary: fc.array(trailerField, { minLength: 1, maxLength: 2 }) },
  ),
  badTrailer: fc.oneof(
    { weight: 12, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: badTrailerLine },
  ),
  style: lineStyle,
  end: fc.oneof(
    { weight: 20, arbitrary: fc.constant("\r\n") },
    { weight: 1, arbitrary: fc.constantFrom("\n", "", "\r") },
  ),
  after: fc.oneof(
    { weight: 8, arbitrary: fc.constant("") },
    { weight: 1, arbitrary: fc.constantFrom("GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", "\r\n") },
  ),
}).map((m) => {
  let out = "";
  for (const c of m.chunks) out += `${c.sizeText}${c.ext}${c.eol}${c.data}${c.dataEnd}`;
  out += `${m.last}${m.lastExt}\r\n`;
  out += fieldLines(m.trailers, [{ ...m.style, eol: "\r\n" }]);
  if (m.badTrailer !== undefined) out += m.badTrailer;
  return out + m.end + m.after;
});

// ---------------------------------------------------------------------------
// Mutations

const MUTATION_BYTES = ["\r", "\n", " ", "\t", "\u0000", "\u000b", ":", ",", "\u00ff", "\r\n"];

type Mutation =
  | { op: "insert"; at: number; text: string }
  | { op: "delete"; at: number }
  | { op: "dupLine"; line: number }
  | { op: "recaseLine"; line: number; seed: number }
  | { op: "inject"; line: number; text: string }
  | { op: "bareLf"; line: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("insert" as const),
      at: fc.nat(),
      text: fc.constantFrom(...MUTATION_BYTES),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("delete" as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("dupLine" as const), line: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("recaseLine" as const),
      line: fc.nat(),
      seed: fc.nat(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("inject" as const),
      line: fc.nat(),
      text: fc.constantFrom(
        "Transfer-Encoding: chunked\r\n",
        "Content-Length: 0\r\n",
        "Content-Length: 5\r\n",
        "Transfer-Encoding : chunked\r\n",
        "Transfer-Encoding:\tchunked\r\n",
        " Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Host: b.example\r\n",
        "X: y\r\n\r\n",
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("bareLf" as const), line: fc.nat() }) },
);

/** Line starts of the head (up to the first blank line), and the head's end. */
function headLines(s: string): number[] {
  const starts = [0];
  let i = 0;
  while (true) {
    const nl = s.indexOf("\n", i);
    if (nl < 0 || nl + 1 >= s.length) break;
    if (s[nl + 1] === "\n" || s.startsWith("\r\n", nl + 1)) break;
    starts.push(nl + 1);
    i = nl + 1;
  }
  return starts;
}

export function mutate(s: string, m: Mutation): string {
  const lines = headLines(s);
  const lineAt = (n: number) => lines[n % lines.length]!;
  switch (m.op) {
    case "insert": {
      const at = m.at % (s.length + 1);
      return s.slice(0, at) + m.text + s.slice(at);
    }
    case "delete": {
      if (s.length === 0) return s;
      const at = m.at % s.length;
      return s.slice(0, at) + s.slice(at + 1);
    }
    case "dupLine": {
      const start = lineAt(m.line);
      const end = s.indexOf("\n", start) + 1;
      if (end <= 0) return s;
      return s.slice(0, end) + s.slice(start, end) + s.slice(end);
    }
    case "recaseLine": {
      const start = lineAt(m.line);
      const colon = s.indexOf(":", start);
      const nl = s.indexOf("\n", start);
      if (colon < 0 || (nl >= 0 && colon > nl)) return s;
      return s.slice(0, start) + recase(s.slice(start, colon), m.seed) + s.slice(colon);
    }
    case "inject": {
      // After the request line, or after a later field line.
      const n = m.line % lines.length;
      const at = n + 1 < lines.length ? lines[n + 1]! : s.indexOf("\n", lines[n]!) + 1;
      if (at <= 0) return s;
      return s.slice(0, at) + m.text + s.slice(at);
    }
    case "bareLf": {
      const start = lineAt(m.line);
      const nl = s.indexOf("\n", start);
      if (nl <= 0 || s[nl - 1] !== "\r") return s;
      return s.slice(0, nl - 1) + s.slice(nl);
    }
  }
}

const mutationsArb: fc.Arbitrary<Mutation[]> = fc.oneof(
  { weight: 5, arbitrary: fc.constant<Mutation[]>([]) },
  { weight: 2, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 2 }) },
);

function mutated(base: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(base, mutationsArb).map(([s, ms]) => ms.reduce(mutate, s));
}

// ---------------------------------------------------------------------------
// Whole messages

interface RequestModel {
  lead: string;
  method: string;
  target: string;
  version: string;
  hosts: string[];
  framing: Framing;
  extras: FieldLine[];
  order: number[];
  styles: LineStyle[];
  requestEol: string;
  body: string;
  chunkedBody: string;
  tail: string;
}

/** A short body: mostly visible characters, sometimes any byte. */
const smallBody = stringOf(
  fc.oneof({ weight: 4, arbitrary: vchar }, { weight: 1, arbitrary: anyByte }),
  0,
  30,
);

const requestModel: fc.Arbitrary<RequestModel> = fc.record({
  lead: fc.oneof({ weight: 20, arbitrary: fc.constant("") }, {
    weight: 1,
    arbitrary: fc.constantFrom("\r\n", "\n", "\r\n\r\n"),
  }),
  method: methodArb,
  target: targetArb,
  version: versionArb,
  hosts: fc.oneof(
    { weight: 40, arbitrary: hostValue.map((h) => [h]) },
    { weight: 1, arbitrary: fc.constant<string[]>([]) },
    { weight: 1, arbitrary: fc.tuple(hostValue, hostValue).map((h): string[] => h) },
    { weight: 1, arbitrary: hostValue.map((h) => [h, h]) },
  ),
  framing: framingArb,
  extras: fc.array(extraField, { maxLength: 5 }),
  order: fc.array(fc.nat(), { minLength: 10, maxLength: 10 }),
  styles: fc.array(lineStyle, { minLength: 1, maxLength: 4 }),
  requestEol: fc.oneof({ weight: 40, arbitrary: fc.constant("\r\n") }, {
    weight: 1,
    arbitrary: fc.constantFrom("\n", "\r", " \r\n"),
  }),
  body: smallBody,
  chunkedBody: chunkedBodyArb,
  tail: fc.oneof({ weight: 10, arbitrary: fc.constant("") }, {
    weight: 1,
    arbitrary: fc.constantFrom(
      "GET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n",
      "0\r\n\r\n",
      "\r\n",
      "x",
    ),
  }),
});

function serializeRequest(m: RequestModel): string {
  const fields: FieldLine[] = [
    ...m.hosts.map((h): FieldLine => ["Host", h]),
    ...m.framing.fields,
    ...m.extras,
  ];
  // A generated order, so that Host and framing are not always first.
  const keyed = fields.map((f, i) => ({ f, k: m.order[i % m.order.length]! * 64 + i }));
  keyed.sort((a, b) => a.k - b.k);
  let out = `${m.lead}${m.method} ${m.target} ${m.version}${m.requestEol}`;
  out += fieldLines(keyed.map((x) => x.f), m.styles);
  out += "\r\n";
  if (m.framing.chunked) out += m.chunkedBody;
  else out += m.body.slice(0, m.framing.length).padEnd(m.framing.length, "b");
  return out + m.tail;
}

/** Requests: grammar-built heads, framing and bodies, with mutations. */
export const requestArb: fc.Arbitrary<string> = mutated(requestModel.map(serializeRequest));

/** Requests without mutations and with valid-looking lines (for the forwarding properties). */
export const plainRequestArb: fc.Arbitrary<string> = requestModel.map((m) =>
  serializeRequest({
    ...m,
    lead: "",
    requestEol: "\r\n",
    styles: m.styles.map((s) => ({ ...s, eol: "\r\n" })),
    tail: "",
  })
);

/**
 * Requests the proxy may forward as received (mostly `simple`): HTTP/1.1,
 * origin-form, one Host, at most a Content-Length, end-to-end fields only.
 */
export const forwardableRequestArb: fc.Arbitrary<string> = fc.tuple(
  requestModel,
  originForm,
  authority,
  fc.oneof(
    { weight: 2, arbitrary: fc.constant<FieldLine[]>([]) },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 0, max: 20 }).map((
        n,
      ): FieldLine[] => [["Content-Length", String(n)]]),
    },
  ),
  fc.array(
    fc.oneof(
      { weight: 3, arbitrary: fc.tuple(token(1, 12), fieldValue) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom("Accept", "Cookie", "Via"), fieldValue) },
    ),
    { maxLength: 6 },
  ),
).map(([m, target, host, framing, extras]) =>
  serializeRequest({
    ...m,
    lead: "",
    method: /^[A-Z]+$/.test(m.method) && m.method !== "CONNECT" ? m.method : "GET",
    target,
    version: "HTTP/1.1",
    hosts: [host.replace(/:(\d{6,}|[^\d].*)$/, "")],
    framing: { fields: framing, chunked: false, length: Number(framing[0]?.[1] ?? 0) },
    extras,
    requestEol: "\r\n",
    styles: m.styles.map((s) => ({ ...s, eol: "\r\n" })),
    tail: "",
  })
);

const statusArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom("200", "201", "204", "301", "304", "404", "500") },
  { weight: 2, arbitrary: fc.constantFrom("100", "101", "103", "199", "599", "999") },
  { weight: 2, arbitrary: fc.integer({ min: 100, max: 999 }).map(String) },
  { weight: 1, arbitrary: fc.constantFrom("099", "000", "20", "2000", "abc", "-20", " 200") },
);

const reasonArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(" OK", " Not Found", " Whatever Works", "") },
  { weight: 3, arbitrary: fieldValue.map((v) => ` ${v}`) },
  { weight: 1, arbitrary: fc.constantFrom(" ", " O\u0000K", " O\u000bK", " O\rK", "  OK", "\tOK") },
);

const responseVersion: fc.Arbitrary<string> = fc.oneof(
  { weight: 20, arbitrary: fc.constant("HTTP/1.1") },
  { weight: 4, arbitrary: fc.constant("HTTP/1.0") },
  {
    weight: 1,
    arbitrary: fc.constantFrom("HTTP/1.2", "HTTP/2.0", "HTTP/0.9", "http/1.1", "HTTP/1"),
  },
);

const responseField: fc.Arbitrary<FieldLine> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(token(1, 12), fieldValue) },
  {
    weight: 3,
    arbitrary: fc.tuple(
      fc.constantFrom("Content-Type", "Set-Cookie", "Server", "Date", "Cache-Control"),
      fieldValue,
    ),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(
      fc.constantFrom("Connection", "Keep-Alive", "Upgrade", "Trailer", "X-KEDA-HTTP-Cold-Start"),
      fc.constantFrom("close", "keep-alive", "Upgrade", "websocket", "timeout=5", "true"),
    ),
  },
);

interface ResponseModel {
  version: string;
  status: string;
  reason: string;
  eol: string;
  framing: Framing;
  extras: FieldLine[];
  order: number[];
  styles: LineStyle[];
  body: string;
  chunkedBody: string;
  tail: string;
  method: string;
  eof: boolean;
}

const responseModel: fc.Arbitrary<ResponseModel> = fc.record({
  version: responseVersion,
  status: statusArb,
  reason: reasonArb,
  eol: fc.oneof({ weight: 30, arbitrary: fc.constant("\r\n") }, {
    weight: 1,
    arbitrary: fc.constantFrom("\n", "\r"),
  }),
  framing: framingArb,
  extras: fc.array(responseField, { maxLength: 4 }),
  order: fc.array(fc.nat(), { minLength: 8, maxLength: 8 }),
  styles: fc.array(lineStyle, { minLength: 1, maxLength: 3 }),
  body: smallBody,
  chunkedBody: chunkedBodyArb,
  tail: fc.oneof({ weight: 10, arbitrary: fc.constant("") }, {
    weight: 1,
    arbitrary: fc.constantFrom("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "xyz"),
  }),
  method: fc.oneof({ weight: 6, arbitrary: fc.constant("GET") }, {
    weight: 1,
    arbitrary: fc.constantFrom("HEAD", "POST"),
  }),
  eof: fc.boolean(),
});

function serializeResponse(m: ResponseModel): string {
  const fields = [...m.framing.fields, ...m.extras];
  const keyed = fields.map((f, i) => ({ f, k: m.order[i % m.order.length]! * 64 + i }));
  keyed.sort((a, b) => a.k - b.k);
  let out = `${m.version} ${m.status}${m.reason}${m.eol}`;
  out += fieldLines(keyed.map((x) => x.f), m.styles) + "\r\n";
  if (m.framing.chunked) out += m.chunkedBody;
  else out += m.body.slice(0, m.framing.length).padEnd(m.framing.length, "b");
  return out + m.tail;
}

export const responseArb: fc.Arbitrary<HttpCase> = fc.tuple(responseModel, mutationsArb).map((
  [m, ms],
): HttpCase => ({
  kind: "response",
  bytes: ms.reduce(mutate, serializeResponse(m)),
  method: m.method,
  eof: m.eof,
}));

/** Response heads alone (no body), mutated, for the response-scanner properties. */
export const responseHeadArb: fc.Arbitrary<string> = fc.tuple(responseModel, mutationsArb).map((
  [m, ms],
) => {
  const s = ms.reduce(mutate, serializeResponse({ ...m, body: "", tail: "", chunkedBody: "" }));
  return s;
});

export const requestCaseArb: fc.Arbitrary<HttpCase> = requestArb.map((bytes) => ({
  kind: "request",
  bytes,
}));

export const chunkedCaseArb: fc.Arbitrary<HttpCase> = fc.tuple(chunkedBodyArb, mutationsArb).map((
  [body, ms],
): HttpCase => ({
  kind: "chunked",
  // Mutations of the body only (its "lines" are the chunk lines).
  bytes: ms.filter((m) => m.op === "insert" || m.op === "delete").reduce(mutate, body),
}));

/** Any bytes: random, and generated messages cut or spliced at random places. */
export const anyBytesArb: fc.Arbitrary<string> = fc.oneof(
  stringOf(anyByte, 0, 200),
  stringOf(fc.constantFrom(...charsOf('\r\n :;,\t0aZ"\\/'), "\u0000", "\u00ff"), 0, 120),
  fc.tuple(requestArb, fc.nat()).map(([s, n]) => s.slice(0, n % (s.length + 1))),
  fc.tuple(responseHeadArb, fc.nat()).map(([s, n]) => s.slice(0, n % (s.length + 1))),
  fc.tuple(chunkedBodyArb, fc.nat()).map(([s, n]) => s.slice(0, n % (s.length + 1))),
);

// ---------------------------------------------------------------------------
// Our parser's outcome

/** The prefix that makes a chunked body a request for the oracles. */
export const CHUNKED_PREFIX =
  "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n";

function rejected(e: unknown): Outcome {
  if (!(e instanceof HttpError)) throw e;
  return { verdict: "reject", status: e.status, error: e.message };
}

/** Scans a chunked body at buf[from, end); the body's bytes, the end, or a rejection. */
function scanChunked(
  s: string,
  buf: Uint8Array,
  from: number,
): { body: string; end: number } | Outcome {
  let body = "";
  try {
    const end = new ChunkedScanner().scan(buf, from, buf.length, (a, b) => {
      body += s.slice(a, b);
    });
    return { body, end };
  } catch (e) {
    return rejected(e);
  }
}

function headersOf(fields: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < fields.length; i += 3) out.push([fields[i + 1]!, fields[i + 2]!]);
  return out;
}

/**
 * What our parser makes of a request: head, then framing as the proxy
 * follows it; with `headOnly`, the head alone (the body is not looked at).
 */
export function ourRequest(s: string, headOnly = false): Outcome & { req?: RequestHead } {
  const buf = binaryBytes(s);
  const he = findHeadEnd(buf, 0, buf.length);
  if (he < 0) {
    if (buf.length > MAX_HEAD_BYTES) return { verdict: "reject", status: 431 };
    return { verdict: "incomplete", headIncomplete: true };
  }
  let req: RequestHead;
  try {
    req = parseRequestHead(binaryString(buf, 0, he));
  } catch (e) {
    return rejected(e);
  }
  const head = {
    method: req.method,
    target: req.target,
    version: `1.${req.minor}`,
    headers: headersOf(req.headers.fields),
    keepAlive: req.keepAlive,
    upgrade: req.upgrade !== null,
    req,
  };
  if (headOnly) return { ...head, verdict: "accept", body: "", consumed: he };
  if (req.chunked) {
    const r = scanChunked(s, buf, he);
    if ("verdict" in r) return r;
    if (r.end < 0) return { ...head, verdict: "incomplete" };
    return { ...head, verdict: "accept", body: r.body, consumed: r.end };
  }
  const n = Math.max(0, req.contentLength);
  if (buf.length < he + n) return { ...head, verdict: "incomplete" };
  return { ...head, verdict: "accept", body: s.slice(he, he + n), consumed: he + n };
}

/** What our parser makes of a response to `method`; `eof`: the app closed after the bytes. */
export function ourResponse(s: string, method: string, eof: boolean): Outcome {
  const buf = binaryBytes(s);
  const he = findHeadEnd(buf, 0, buf.length);
  if (he < 0) {
    if (buf.length > MAX_HEAD_BYTES || eof) return { verdict: "reject", status: 502 };
    return { verdict: "incomplete", headIncomplete: true };
  }
  let res;
  try {
    res = parseResponseHead(binaryString(buf, 0, he));
  } catch (e) {
    return rejected(e);
  }
  const head = {
    code: res.status,
    version: `1.${res.minor}`,
    headers: headersOf(res.headers.fields),
  };
  const short = (): Outcome =>
    eof ? { verdict: "reject", status: 502 } : { ...head, verdict: "incomplete" };
  if (responseHasNoBody(method, res.status)) {
    return { ...head, verdict: "accept", body: "", consumed: he, keepAlive: !res.close };
  }
  if (res.chunked) {
    const r = scanChunked(s, buf, he);
    if ("verdict" in r) return { ...r, status: 502 };
    if (r.end < 0) return short();
    return { ...head, verdict: "accept", body: r.body, consumed: r.end, keepAlive: !res.close };
  }
  if (res.contentLength >= 0) {
    const end = he + res.contentLength;
    if (buf.length < end) return short();
    return {
      ...head,
      verdict: "accept",
      body: s.slice(he, end),
      consumed: end,
      keepAlive: !res.close,
    };
  }
  // Delimited by the connection closing.
  if (!eof) return { ...head, verdict: "incomplete" };
  return { ...head, verdict: "accept", body: s.slice(he), consumed: s.length, keepAlive: false };
}

/** What our chunked scanner makes of a body (offsets within the body). */
export function ourChunked(s: string): Outcome {
  const r = scanChunked(s, binaryBytes(s), 0);
  if ("verdict" in r) return r;
  if (r.end < 0) return { verdict: "incomplete" };
  return { verdict: "accept", body: r.body, consumed: r.end };
}

export function ourOutcome(c: HttpCase): Outcome {
  if (c.kind === "request") {
    const { req: _req, ...o } = ourRequest(c.bytes);
    return o;
  }
  if (c.kind === "response") return ourResponse(c.bytes, c.method ?? "GET", c.eof === true);
  return ourChunked(c.bytes);
}

// ---------------------------------------------------------------------------
// The oracles' outcomes and the comparison

export function llhttpCaseOf(c: HttpCase): LlhttpCase {
  if (c.kind === "chunked") return { kind: "request", bytes: CHUNKED_PREFIX + c.bytes };
  if (c.kind === "response") {
    return { kind: "response", bytes: c.bytes, method: c.method ?? "GET", eof: c.eof === true };
  }
  return { kind: "request", bytes: c.bytes };
}

/** llhttp's answer as an Outcome; the head's fields are kept whenever llhttp finished the head. */
export function llhttpOutcome(c: HttpCase, a: LlhttpAnswer): Outcome {
  const lower = (h: Array<[string, string]>) =>
    h.map(([n, v]): [string, string] => [n.toLowerCase(), v]);
  const out: Outcome = a.outcome === "error"
    ? { verdict: "reject", error: `${a.error?.code} ${a.error?.reason}` }
    : { verdict: a.outcome };
  if (a.outcome === "accept") {
    out.body = a.body;
    out.trailers = lower(a.trailers);
    out.consumed = c.kind === "chunked" ? a.consumed - CHUNKED_PREFIX.length : a.consumed;
  }
  if (c.kind === "chunked" || !a.headersComplete) return out;
  out.version = `${a.major}.${a.minor}`;
  out.headers = lower(a.headers);
  if (c.kind === "request") {
    out.method = a.method ?? undefined;
    out.target = a.url ?? undefined;
    out.upgrade = a.upgrade;
    out.keepAlive = a.keepAlive;
  } else {
    out.code = a.status ?? undefined;
    // llhttp decides keep-alive before it hears that a HEAD or 1xx response has no body.
    const code = a.status ?? 0;
    if (c.method !== "HEAD" && (code < 100 || code >= 200 || code === 101)) {
      out.keepAlive = a.keepAlive;
    }
  }
  return out;
}

const COMPARED: Record<CaseKind, Array<keyof Outcome & Difference["field"]>> = {
  request: [
    "method",
    "target",
    "version",
    "headers",
    "body",
    "consumed",
    "keepAlive",
    "upgrade",
  ],
  response: ["code", "version", "headers", "body", "consumed", "keepAlive"],
  chunked: ["body", "consumed"],
};

/**
 * The differences between two outcomes of the same input. A head we have
 * not judged yet (incomplete) against an oracle that already rejects it is
 * no difference: we judge heads only once complete. An upgrade request is
 * compared up to its head (what follows belongs to the new protocol).
 */
export function differences(kind: CaseKind, ours: Outcome, theirs: Outcome): Difference[] {
  if (ours.verdict !== theirs.verdict) {
    if (ours.verdict === "incomplete" && ours.headIncomplete && theirs.verdict === "reject") {
      return [];
    }
    return [{ field: "verdict", ours: ours.verdict, theirs: theirs.verdict }];
  }
  if (ours.verdict !== "accept") return [];
  const out: Difference[] = [];
  for (const field of COMPARED[kind]) {
    if (theirs[field] === undefined) continue;
    if ((field === "body" || field === "consumed") && (ours.upgrade || theirs.upgrade)) continue;
    const a = JSON.stringify(ours[field]);
    const b = JSON.stringify(theirs[field]);
    if (a !== b) out.push({ field, ours: ours[field], theirs: theirs[field] });
  }
  return out;
}

export interface Disagreement {
  case: HttpCase;
  oracle: OracleName;
  ours: Outcome;
  theirs: Outcome;
  unexplained: Difference[];
}

export interface Comparison {
  /** Differences no divergence entry explains. */
  disagreement: Disagreement | null;
  /** Entries that explained a difference. */
  explained: Divergence[];
}

export function compare(
  c: HttpCase,
  oracle: OracleName,
  ours: Outcome,
  theirs: Outcome,
): Comparison {
  const explained: Divergence[] = [];
  const unexplained: Difference[] = [];
  for (const diff of differences(c.kind, ours, theirs)) {
    const ctx: DivergenceContext = {
      kind: c.kind,
      oracle,
      bytes: c.bytes,
      ours,
      theirs,
      diff,
    };
    if (c.method !== undefined) ctx.method = c.method;
    const d = explain(ctx);
    if (d) explained.push(d);
    else unexplained.push(diff);
  }
  return {
    disagreement: unexplained.length > 0 ? { case: c, oracle, ours, theirs, unexplained } : null,
    explained,
  };
}

export interface BatchResult {
  cases: number;
  disagreements: Disagreement[];
  /** How often each divergence entry explained a difference. */
  explained: Map<string, number>;
}

/** Our parser and llhttp over the cases. */
export async function checkWithLlhttp(
  oracle: LlhttpOracle,
  cases: HttpCase[],
): Promise<BatchResult> {
  const answers = await oracle.run(cases.map(llhttpCaseOf));
  const result: BatchResult = { cases: cases.length, disagreements: [], explained: new Map() };
  cases.forEach((c, i) => {
    const r = compare(c, "llhttp", ourOutcome(c), llhttpOutcome(c, answers[i]!));
    if (r.disagreement) result.disagreements.push(r.disagreement);
    for (const d of r.explained) result.explained.set(d.id, (result.explained.get(d.id) ?? 0) + 1);
  });
  return result;
}

/** Hyper's view of a request, comparable with ours (see hyperComparable). */
export function hyperOutcome(a: HyperAnswer): Outcome {
  if (a.outcome === "incomplete" && (a.method === "GET" || a.method === "HEAD")) {
    // The handler saw the head; Deno does not show such a request's body (see hyperComparable).
    return {
      verdict: "accept",
      method: a.method,
      target: a.target!,
      headers: a.headers!,
      body: "",
    };
  }
  if (a.outcome !== "accept") {
    return { verdict: a.outcome, ...(a.status !== null ? { status: a.status } : {}) };
  }
  return {
    verdict: "accept",
    method: a.method!,
    target: a.target!,
    headers: a.headers!,
    body: a.body!,
  };
}

/**
 * Ours in hyper's terms: Deno builds a URL (so the target is normalised by
 * the URL parser) and a Headers object (names joined, values trimmed).
 */
export function hyperComparable(c: HttpCase): Outcome | null {
  // Deno hands GET and HEAD requests to the handler without their body, and hyper
  // may drop the connection over a bad one before the handler runs: such a request
  // says nothing about hyper's framing, so it is not compared.
  const method = /^[^ ]*/.exec(c.bytes.replace(/^[\r\n]+/, ""))![0];
  const { req, ...ours } = ourRequest(c.bytes, method === "GET" || method === "HEAD");
  if (req && ours.verdict === "accept" && (method === "GET" || method === "HEAD")) {
    if (req.chunked || req.contentLength > 0) return null;
  }
  if (ours.verdict !== "accept") {
    return ours.verdict === "incomplete" ? { ...ours, headIncomplete: true } : ours;
  }
  // Deno's Headers: sorted names, repeated fields joined with ", " (Cookie with "; ",
  // as HTTP/2 does; onto an empty value nothing is joined), Set-Cookie kept apart.
  const joined = new Map<string, string[]>();
  const h: Array<[string, string]> = [];
  for (const [n, v] of ours.headers ?? []) {
    if (n === "set-cookie") h.push([n, v]);
    else joined.set(n, [...(joined.get(n) ?? []), v]);
  }
  for (const [n, vs] of joined) {
    h.push([
      n,
      n === "cookie" ? vs.join("; ") : vs.reduce((a, v) => (a === "" ? v : `${a}, ${v}`)),
    ]);
  }
  h.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  // Deno's URL: the absolute-form target, or "http://" + Host + the origin-form target.
  const hostField = (ours.headers ?? []).find(([n]) => n === "host")?.[1] ?? "h.invalid";
  const t = req!.target;
  const url = t.startsWith("/")
    ? `http://${hostField}${t}`
    : t === "*"
    ? `http://${hostField}/*`
    : t;
  return {
    verdict: "accept",
    method: ours.method!,
    target: pathOf(url),
    headers: h,
    body: ours.body!,
  };
}

/** Ours and hyper's; null when the case cannot be compared (see hyperComparable). */
export function compareWithHyper(c: HttpCase, a: HyperAnswer): Comparison | null {
  const ours = hyperComparable(c);
  if (ours === null) return null;
  const theirs = hyperOutcome(a);
  const explained: Divergence[] = [];
  const unexplained: Difference[] = [];
  let diffs: Difference[];
  if (ours.verdict !== theirs.verdict) {
    // Hyper closes without an answer on a truncated message: not accepting is agreeing.
    diffs = ours.verdict !== "accept" && theirs.verdict !== "accept"
      ? []
      : [{ field: "verdict", ours: ours.verdict, theirs: theirs.verdict }];
  } else if (ours.verdict === "accept") {
    diffs = (["method", "target", "headers", "body"] as const)
      .filter((f) => JSON.stringify(ours[f]) !== JSON.stringify(theirs[f]))
      .map((f) => ({ field: f, ours: ours[f], theirs: theirs[f] }));
  } else diffs = [];
  for (const diff of diffs) {
    const d = explain({ kind: c.kind, oracle: "hyper", bytes: c.bytes, ours, theirs, diff });
    if (d) explained.push(d);
    else unexplained.push(diff);
  }
  return {
    disagreement: unexplained.length > 0
      ? { case: c, oracle: "hyper", ours, theirs, unexplained }
      : null,
    explained,
  };
}

/** A chunked-body case as the request that carries it (hyper sees whole requests). */
export function asRequest(c: HttpCase): HttpCase {
  return c.kind === "chunked" ? { kind: "request", bytes: CHUNKED_PREFIX + c.bytes } : c;
}

/** Our parser and hyper over request (or chunked-body) cases, one connection each. */
export async function checkWithHyper(hyper: HyperOracle, cases: HttpCase[]): Promise<BatchResult> {
  const result: BatchResult = { cases: 0, disagreements: [], explained: new Map() };
  for (const c0 of cases) {
    const c = asRequest(c0);
    const r = compareWithHyper(c, await hyper.run(c.bytes));
    if (r === null) continue;
    result.cases++;
    if (r.disagreement) result.disagreements.push(r.disagreement);
    for (const d of r.explained) result.explained.set(d.id, (result.explained.get(d.id) ?? 0) + 1);
  }
  return result;
}

// ---------------------------------------------------------------------------
// Reporting

/** The input JSON-escaped, for a failure message. */
export function describe(d: Disagreement): string {
  const diffs = d.unexplained.map((x) =>
    `  ${x.field}: ours ${JSON.stringify(x.ours)}, ${d.oracle} ${JSON.stringify(x.theirs)}`
  ).join("\n");
  return `${d.case.kind} ${JSON.stringify(d.case.bytes)}` +
    (d.case.method ? ` (to ${d.case.method}${d.case.eof ? ", then EOF" : ""})` : "") +
    `\n${diffs}\n  ours: ${JSON.stringify(d.ours)}\n  ${d.oracle}: ${JSON.stringify(d.theirs)}`;
}

export interface CorpusCase {
  name: string;
  why: string;
  kind: CaseKind;
  bytes: string;
  method?: string;
  eof?: boolean;
  expect:
    | { reject: number }
    | { accept: AcceptedAs };
}

/** What an accepted corpus case was read as; unset keys are not checked. */
export interface AcceptedAs {
  method?: string;
  path?: string;
  host?: string;
  contentLength?: number;
  chunked?: boolean;
  body?: string;
  /** Requests: forwarded as received (spliceRequestHead) or rebuilt. */
  simple?: boolean;
}

/** A corpus file for a disagreement, expecting what the oracle did (edit before saving). */
export function corpusCaseOf(d: Disagreement, name: string): CorpusCase {
  const t = d.theirs;
  const expect: CorpusCase["expect"] = t.verdict === "accept"
    ? {
      accept: {
        ...(t.method !== undefined ? { method: t.method } : {}),
        ...(t.body !== undefined ? { body: t.body } : {}),
      },
    }
    : { reject: d.case.kind === "response" ? 502 : 400 };
  const c: CorpusCase = {
    name,
    why:
      `${d.oracle}: ${
        d.unexplained.map((x) => `${x.field} ${JSON.stringify(x.theirs)}`).join(", ")
      }; ` +
      `ours: ${d.unexplained.map((x) => JSON.stringify(x.ours)).join(", ")}`,
    kind: d.case.kind,
    bytes: d.case.bytes,
    expect,
  };
  if (d.case.method !== undefined) c.method = d.case.method;
  if (d.case.eof !== undefined) c.eof = d.case.eof;
  return c;
}

/** Cases from an arbitrary, reproducibly. */
export function sample<T>(arb: fc.Arbitrary<T>, seed: number, n: number): T[] {
  return fc.sample(arb, { seed, numRuns: n });
}

// ---------------------------------------------------------------------------
// A strict reading of response heads, for the response-parser property

// deno-lint-ignore no-control-regex -- control characters are the point
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Whether a response head (ending in its blank line) is valid by RFC 9112
 * 4 and 5 as we mean to read it, written as plainly as possible: status
 * line `HTTP/1.DIGIT SP 3DIGIT (100-999) [SP reason]`, field lines `token
 * ":" OWS value OWS` without controls, lines ending in CRLF (or, from apps,
 * a bare LF), at most one Content-Length of digits, Transfer-Encoding only
 * `chunked` alone and never with Content-Length.
 */
export function strictResponseHeadOk(head: string): boolean {
  if (!/\r?\n\r?\n$/.test(head)) return false;
  const lines = head.replace(/\r?\n\r?\n$/, "").split("\n").map((l) => l.replace(/\r$/, ""));
  if (lines.some((l) => l.includes("\r"))) return false;
  // HTTP/1.2 to 1.9 read as HTTP/1.1 (RFC 9110 2.5).
  const m = /^HTTP\/1\.\d [1-9]\d\d(?: (.*))?$/.exec(lines[0]!);
  if (!m || BAD_VALUE.test(m[1] ?? "")) return false;
  let cl = 0;
  let te: string | null = null;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) return false;
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (BAD_VALUE.test(value)) return false;
    const name = line.slice(0, colon).toLowerCase();
    if (name === "content-length") {
      if (++cl > 1 || !/^\d{1,15}$/.test(value)) return false;
    } else if (name === "transfer-encoding") te = te === null ? value : `${te}, ${value}`;
  }
  if (te !== null && (te.toLowerCase() !== "chunked" || cl > 0)) return false;
  return true;
}

// ---------------------------------------------------------------------------
// The corpus

/** What our parser decided for a corpus case, in the terms of its `expect`. */
export interface Judgement extends AcceptedAs {
  verdict: Outcome["verdict"];
  status?: number;
}

export function judge(c: CorpusCase): Judgement {
  if (c.kind === "request") {
    const o = ourRequest(c.bytes);
    const out: Judgement = { verdict: o.verdict };
    if (o.status !== undefined) out.status = o.status;
    if (o.req) {
      Object.assign(out, {
        method: o.req.method,
        path: o.req.path,
        host: o.req.host,
        contentLength: o.req.contentLength,
        chunked: o.req.chunked,
        simple: o.req.simple,
      });
    }
    if (o.body !== undefined) out.body = o.body;
    return out;
  }
  if (c.kind === "response") {
    const o = ourResponse(c.bytes, c.method ?? "GET", c.eof === true);
    const out: Judgement = { verdict: o.verdict };
    if (o.status !== undefined) out.status = o.status;
    if (o.body !== undefined) out.body = o.body;
    const buf = binaryBytes(c.bytes);
    const he = findHeadEnd(buf, 0, buf.length);
    if (o.verdict !== "reject" && he >= 0) {
      const res = parseResponseHead(binaryString(buf, 0, he));
      out.contentLength = res.contentLength;
      out.chunked = res.chunked;
    }
    return out;
  }
  const o = ourChunked(c.bytes);
  const out: Judgement = { verdict: o.verdict };
  if (o.status !== undefined) out.status = o.status;
  if (o.body !== undefined) out.body = o.body;
  return out;
}

/** Why a judgement does not meet the case's expectation; null when it does. */
export function unmet(c: CorpusCase, j: Judgement): string | null {
  const e = c.expect;
  if ("reject" in e) {
    if (j.verdict === "reject" && j.status === e.reject) return null;
    return `expected a ${e.reject}, got ${JSON.stringify(j)}`;
  }
  if (j.verdict !== "accept") return `expected it accepted, got ${JSON.stringify(j)}`;
  for (const [k, v] of Object.entries(e.accept)) {
    const got = j[k as keyof Judgement];
    if (got !== v) return `expected ${k} ${JSON.stringify(v)}, got ${JSON.stringify(got)}`;
  }
  return null;
}
