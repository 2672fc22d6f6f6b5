import assert from "node:assert/strict";
import fc from "fast-check";
import { HpackDecoder, HpackEncoder, HpackError, huffmanDecode, huffmanEncode } from "./hpack.ts";

function hex(s: string): Uint8Array {
  const t = s.replace(/\s+/g, "");
  return new Uint8Array(t.match(/../g)!.map((b) => parseInt(b, 16)));
}
function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

const dec = (maxTableSize = 4096) =>
  new HpackDecoder({ maxTableSize, maxHeaderListSize: 64 * 1024 });

type Fields = Array<[string, string]>;
interface Step {
  block: string;
  fields: Fields;
  /** Newest first. */
  table: Fields;
  size: number;
}

function decodeSeries(maxTableSize: number, steps: Step[]): void {
  const d = dec(maxTableSize);
  for (const [i, s] of steps.entries()) {
    const r = d.decode(hex(s.block));
    assert.equal(r.tooLarge, false);
    assert.deepEqual(r.fields, s.fields, `step ${i} fields`);
    assert.deepEqual(d.tableEntries, s.table, `step ${i} table`);
    assert.equal(d.tableSize, s.size, `step ${i} table size`);
  }
}

Deno.test("hpack: RFC 7541 C.2.1-C.2.4 single representations", () => {
  const cases: Array<[string, string, Fields, Fields, number]> = [
    [
      "C.2.1",
      "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
      [["custom-key", "custom-header"]],
      [["custom-key", "custom-header"]],
      55,
    ],
    ["C.2.2", "040c 2f73 616d 706c 652f 7061 7468", [[":path", "/sample/path"]], [], 0],
    ["C.2.3", "1008 7061 7373 776f 7264 0673 6563 7265 74", [["password", "secret"]], [], 0],
    ["C.2.4", "82", [[":method", "GET"]], [], 0],
  ];
  for (const [what, block, fields, table, size] of cases) {
    const d = dec();
    assert.deepEqual(d.decode(hex(block)).fields, fields, what);
    assert.deepEqual(d.tableEntries, table, what);
    assert.equal(d.tableSize, size, what);
  }
});

const REQ1: Fields = [
  [":method", "GET"],
  [":scheme", "http"],
  [":path", "/"],
  [":authority", "www.example.com"],
];
const REQ2: Fields = [...REQ1, ["cache-control", "no-cache"]];
const REQ3: Fields = [
  [":method", "GET"],
  [":scheme", "https"],
  [":path", "/index.html"],
  [":authority", "www.example.com"],
  ["custom-key", "custom-value"],
];
const REQ_TABLES: Fields[] = [
  [[":authority", "www.example.com"]],
  [["cache-control", "no-cache"], [":authority", "www.example.com"]],
  [["custom-key", "custom-value"], ["cache-control", "no-cache"], [
    ":authority",
    "www.example.com",
  ]],
];

Deno.test("hpack: RFC 7541 C.3 requests without Huffman", () => {
  decodeSeries(4096, [
    {
      block: "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      fields: REQ1,
      table: REQ_TABLES[0]!,
      size: 57,
    },
    { block: "8286 84be 5808 6e6f 2d63 6163 6865", fields: REQ2, table: REQ_TABLES[1]!, size: 110 },
    {
      block: "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
      fields: REQ3,
      table: REQ_TABLES[2]!,
      size: 164,
    },
  ]);
});

const C4 = [
  "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
  "8286 84be 5886 a8eb 1064 9cbf",
  "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
];

Deno.test("hpack: RFC 7541 C.4 requests with Huffman, decoded and encoded byte for byte", () => {
  decodeSeries(4096, [
    { block: C4[0]!, fields: REQ1, table: REQ_TABLES[0]!, size: 57 },
    { block: C4[1]!, fields: REQ2, table: REQ_TABLES[1]!, size: 110 },
    { block: C4[2]!, fields: REQ3, table: REQ_TABLES[2]!, size: 164 },
  ]);
  // The vector's choices (static matches indexed, the rest incrementally indexed, Huffman when
  // shorter) are the encoder's own.
  const e = new HpackEncoder();
  for (const [i, fields] of [REQ1, REQ2, REQ3].entries()) {
    assert.equal(toHex(e.encode(fields)), C4[i]!.replace(/\s+/g, ""), `request ${i + 1}`);
  }
});

const D1 = "Mon, 21 Oct 2013 20:13:21 GMT";
const D2 = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOC = "https://www.example.com";
const COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
const RESP1: Fields = [[":status", "302"], ["cache-control", "private"], ["date", D1], [
  "location",
  LOC,
]];
const RESP2: Fields = [[":status", "307"], ["cache-control", "private"], ["date", D1], [
  "location",
  LOC,
]];
const RESP3: Fields = [
  [":status", "200"],
  ["cache-control", "private"],
  ["date", D2],
  ["location", LOC],
  ["content-encoding", "gzip"],
  ["set-cookie", COOKIE],
];
const RESP_TABLES: Fields[] = [
  [["location", LOC], ["date", D1], ["cache-control", "private"], [":status", "302"]],
  [[":status", "307"], ["location", LOC], ["date", D1], ["cache-control", "private"]],
  [["set-cookie", COOKIE], ["content-encoding", "gzip"], ["date", D2]],
];

Deno.test("hpack: RFC 7541 C.5 responses without Huffman, 256-byte table evicts", () => {
  decodeSeries(256, [
    {
      block: `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
        2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
        6c65 2e63 6f6d`,
      fields: RESP1,
      table: RESP_TABLES[0]!,
      size: 222,
    },
    { block: "4803 3330 37c1 c0bf", fields: RESP2, table: RESP_TABLES[1]!, size: 222 },
    {
      block: `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
        54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
        5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`,
      fields: RESP3,
      table: RESP_TABLES[2]!,
      size: 215,
    },
  ]);
});

Deno.test("hpack: RFC 7541 C.6 responses with Huffman, 256-byte table evicts", () => {
  decodeSeries(256, [
    {
      block: `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
        2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
      fields: RESP1,
      table: RESP_TABLES[0]!,
      size: 222,
    },
    { block: "4883 640e ffc1 c0bf", fields: RESP2, table: RESP_TABLES[1]!, size: 222 },
    {
      block: `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
        77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
        9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
      fields: RESP3,
      table: RESP_TABLES[2]!,
      size: 215,
    },
  ]);
});

Deno.test("hpack: the C.5/C.6 responses encode (with a 256-byte peer table) and decode back", () => {
  // Our choices differ from the vector's (location is not indexed, set-cookie is never-indexed),
  // so the check is the round trip and the size update that starts the first block.
  const e = new HpackEncoder();
  e.setMaxTableSize(256);
  const d = dec(4096);
  for (const [i, fields] of [RESP1, RESP2, RESP3].entries()) {
    const block = e.encode(fields);
    if (i === 0) assert.equal(toHex(block.subarray(0, 3)), "3fe101", "size update to 256 first");
    assert.deepEqual(d.decode(block).fields, fields);
    assert.ok(d.tableSize <= 256);
  }
  // set-cookie went out never-indexed (0x1f 0x28 = 4-bit prefix, name index 55).
  const again = e.encode([["set-cookie", COOKIE]]);
  assert.equal(toHex(again.subarray(0, 2)), "1f28");
});

Deno.test("hpack: sensitive fields are never indexed and stay out of the table", () => {
  const e = new HpackEncoder();
  const d = dec();
  const fields: Fields = [
    ["authorization", "Bearer abc"],
    ["proxy-authorization", "Basic eA=="],
    ["cookie", "sid=1"],
    ["set-cookie", "a=b"],
  ];
  const block = e.encode(fields);
  assert.equal(block[0]! & 0xf0, 0x10);
  assert.deepEqual(d.decode(block).fields, fields);
  assert.deepEqual(d.tableEntries, []);
  // A long cookie is high-entropy enough to index (nghttp2's judgement as well).
  const long = "sid=0123456789abcdefghij";
  d.decode(e.encode([["cookie", long]]));
  assert.deepEqual(d.tableEntries, [["cookie", long]]);
});

Deno.test("hpack: a repeated field is sent as one index byte the second time", () => {
  const e = new HpackEncoder();
  const d = dec();
  const f: Fields = [["x-trace", "abc123"], ["content-type", "text/plain"]];
  d.decode(e.encode(f));
  const second = e.encode(f);
  assert.equal(toHex(second), "bfbe");
  assert.deepEqual(d.decode(second).fields, f);
});

Deno.test("hpack: every RFC 7541 error is an HpackError", () => {
  const cases: Array<[string, string]> = [
    ["index 0", "80"],
    ["index past the static and empty dynamic table", "be"],
    ["index far past the tables", "ff 80 01"],
    ["literal name index past the tables", "7f 00 01 61"],
    ["never-indexed name index past the tables", "1f 2f 01 61"],
    ["integer overflow", "ff ff ff ff ff ff 7f"],
    ["integer just above 2^28", "ff 82 ff ff 7f"],
    ["over-long integer (zero continuation octets)", "ff 80 80 80 80 00"],
    ["integer cut short", "ff"],
    ["integer continuation cut short", "ff 80"],
    ["string length past the block", "40 05 61"],
    ["string missing", "40"],
    ["value missing", "40 01 61"],
    ["Huffman string length past the block", "40 85 61"],
    ["size update above the maximum", "3f e2 1f"],
    ["size update after a field", "82 20"],
    ["size update after a literal", "00 01 61 01 62 20"],
    ["Huffman EOS (30 ones)", "40 84 ff ff ff ff 01 61"],
    ["Huffman EOS after a symbol", "00 81 61 85 1f ff ff ff ff"],
    ["Huffman padding not all ones", "40 81 18 01 61"],
    ["Huffman padding of zeros", "40 81 00 01 61"],
    ["Huffman padding past 7 bits", "40 82 1f ff 01 61"],
    ["Huffman padding of a whole byte", "40 81 ff 01 61"],
    ["Huffman padding ends on a partial symbol", "00 01 61 87 52 bc 30 ff ff ff ff"],
  ];
  for (const [what, bytes] of cases) {
    assert.throws(() => dec().decode(hex(bytes)), HpackError, what);
  }
  assert.throws(() => huffmanDecode(hex("ffffffff"), 0, 4), HpackError);
  assert.throws(() => huffmanDecode(hex("ff"), 0, 1), HpackError);
});

Deno.test("hpack: the largest allowed integer and size updates at the start are accepted", () => {
  // 2^28 exactly: a string of that length runs past the block (the integer itself was fine).
  assert.throws(() => dec().decode(hex("40 7f 81 ff ff 7f")), /past the end of the block/);
  // Several size updates may start a block (RFC 7541 4.2: the minimum, then the final size).
  const d = dec();
  d.decode(hex("40 01 61 01 62"));
  assert.equal(d.tableSize, 34);
  d.decode(hex("20 3f e1 1f 82"));
  assert.equal(d.tableSize, 0);
  // Size update to exactly the maximum.
  assert.deepEqual(dec().decode(hex("3f e1 1f")).fields, []);
});

Deno.test("hpack: an entry larger than the table empties it but is still a field (RFC 7541 4.4)", () => {
  const d = dec();
  // Shrink to 50, add a 34-byte entry.
  assert.deepEqual(d.decode(hex("3f 13 40 01 61 01 62")).fields, [["a", "b"]]);
  assert.equal(d.tableSize, 34);
  const big = "x".repeat(20);
  const block = [0x40, 1, 0x63, 20, ...new TextEncoder().encode(big)];
  assert.deepEqual(d.decode(new Uint8Array(block)).fields, [["c", big]]);
  assert.deepEqual(d.tableEntries, []);
  assert.equal(d.tableSize, 0);
  assert.throws(() => d.decode(hex("be")), HpackError);
});

Deno.test("hpack: an HPACK bomb is reported too large without building the list, the table stays in step", () => {
  const d = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 16 * 1024 });
  const e = new TextEncoder();
  const value = "b".repeat(4000);
  // 4000 as a 7-bit prefix integer: 127, then 3873 = 0x21 + 0x1e * 128.
  const block = [0x40, 6, ...e.encode("x-bomb"), 0x7f, 0xa1, 0x1e, ...e.encode(value)];
  for (let i = 0; i < 100_000; i++) block.push(0x80 | 62);
  // A table insert after the limit was passed still happens.
  block.push(0x40, 1, 0x7a, 1, 0x79);
  const r = d.decode(new Uint8Array(block));
  assert.equal(r.tooLarge, true);
  assert.equal(r.fields.length, 0);
  assert.deepEqual(d.decode(new Uint8Array([0x80 | 62, 0x80 | 63])).fields, [["z", "y"], [
    "x-bomb",
    value,
  ]]);
  // Exactly at the limit is fine: 16 fields of 1024 octets.
  const at = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 16 * 1024 });
  const v = "c".repeat(1024 - 32 - 1);
  const fill = [0x40, 1, 0x63, 0x7f, ((v.length - 127) & 0x7f) | 0x80, (v.length - 127) >> 7];
  const b2 = [...fill, ...e.encode(v)];
  for (let i = 0; i < 15; i++) b2.push(0x80 | 62);
  const r2 = at.decode(new Uint8Array(b2));
  assert.equal(r2.tooLarge, false);
  assert.equal(r2.fields.length, 16);
  assert.equal(at.decode(new Uint8Array(Array(16).fill(0xbe))).tooLarge, false);
  assert.equal(at.decode(new Uint8Array(Array(17).fill(0xbe))).tooLarge, true);
});

Deno.test("hpack: Huffman round-trips every byte value, alone and together", () => {
  let all = "";
  for (let i = 0; i < 256; i++) {
    const c = String.fromCharCode(i);
    const h = huffmanEncode(c);
    assert.equal(huffmanDecode(h, 0, h.length), c, `byte ${i}`);
    all += c;
  }
  const h = huffmanEncode(all);
  assert.equal(huffmanDecode(h, 0, h.length), all);
  assert.equal(huffmanDecode(h, 0, 0), "");
  // RFC 7541 C.4.1's string.
  assert.equal(toHex(huffmanEncode("www.example.com")), "f1e3c2e5f23a6ba0ab90f4ff");
  assert.throws(() => huffmanEncode("\u0100"), /not a byte/);
});

Deno.test("hpack: the encoder shrinks, signals the lowest size then the final one, and grows back to 4096 at most", () => {
  const e = new HpackEncoder();
  const d = dec();
  d.decode(e.encode([["x-a", "1"], ["x-b", "2"]]));
  e.setMaxTableSize(0);
  e.setMaxTableSize(100);
  const b = e.encode([["x-c", "3"]]);
  assert.equal(toHex(b.subarray(0, 3)), "203f45"); // 0, then 100
  assert.deepEqual(d.decode(b).fields, [["x-c", "3"]]);
  assert.deepEqual(d.tableEntries, [["x-c", "3"]]);
  e.setMaxTableSize(1 << 20);
  const c = e.encode([]);
  assert.equal(toHex(c), "3fe11f"); // 4096, not 1 MiB
  d.decode(c);
  assert.equal(toHex(e.encode([])), ""); // signaled once
});

// Generators shared with the properties below.
const tokenName = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/);
const byteValue = fc.string({
  unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)),
  maxLength: 80,
});
const commonField = fc.constantFrom<[string, string]>(
  [":method", "GET"],
  [":path", "/"],
  [":path", "/index.html"],
  [":status", "200"],
  ["cookie", "a=b"],
  ["authorization", "secret"],
  ["content-type", "application/grpc"],
  ["x-big", "v".repeat(3000)],
);

Deno.test("hpack property: blocks round-trip through encoder and decoder across table size changes", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(tokenName, fc.constantFrom(":path", "cookie", "date", "accept")), {
        minLength: 1,
        maxLength: 8,
      }),
      fc.array(
        fc.tuple(
          fc.array(
            fc.oneof(
              fc.tuple(tokenName, byteValue),
              commonField,
              // Repeats exercise the dynamic table.
              fc.tuple(fc.nat(7), fc.nat(3)).map(([n, v]): [string, string] => [
                `x-r${n}`,
                `v${v}`,
              ]),
            ),
            { maxLength: 14 },
          ),
          fc.option(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 8192 }))),
        ),
        { maxLength: 20 },
      ),
      (_names, blocks) => {
        const enc = new HpackEncoder();
        const d = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 1 << 20 });
        for (const [fields, size] of blocks) {
          if (size !== null) enc.setMaxTableSize(size);
          const r = d.decode(enc.encode(fields));
          assert.deepEqual(r.fields, fields);
          assert.ok(d.tableSize <= (size ?? 4096));
        }
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("hpack property: random bytes only ever raise HpackError, within the list bound", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          // Mostly-valid shapes get further into the decoder.
          fc.array(
            fc.constantFrom(0x80, 0xbe, 0xbf, 0x40, 0x01, 0x61, 0x3f, 0xff, 0x7f, 0x10, 0x82),
          )
            .map((a) => new Uint8Array(a)),
        ),
        { minLength: 1, maxLength: 4 },
      ),
      (blocks) => {
        const d = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 2048 });
        for (const bytes of blocks) {
          try {
            const r = d.decode(bytes);
            let size = 0;
            for (const [n, v] of r.fields) size += n.length + v.length + 32;
            assert.ok(size <= 2048);
            if (r.tooLarge) assert.equal(r.fields.length, 0);
            assert.ok(d.tableSize <= 4096);
          } catch (e) {
            if (!(e instanceof HpackError)) throw e;
            return;
          }
        }
      },
    ),
    { numRuns: 3000 },
  );
});

Deno.test("hpack property: Huffman round-trips any binary string", () => {
  fc.assert(
    fc.property(byteValue, (s) => {
      const h = huffmanEncode(s);
      assert.equal(huffmanDecode(h, 0, h.length), s);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("hpack: speed (informational)", () => {
  const text = "GET /api/v1/items?id=1234567890&sort=asc HTTP accept-encoding gzip, deflate, br ";
  const s = text.repeat(Math.ceil(1_000_000 / text.length)).slice(0, 1_000_000);
  const h = huffmanEncode(s);
  let t = performance.now();
  for (let i = 0; i < 20; i++) huffmanDecode(h, 0, h.length);
  const decMBs = (20 * s.length) / 1e6 / ((performance.now() - t) / 1000);
  t = performance.now();
  for (let i = 0; i < 20; i++) huffmanEncode(s);
  const encMBs = (20 * s.length) / 1e6 / ((performance.now() - t) / 1000);
  const e = new HpackEncoder();
  const d = dec();
  const resp: Fields = [
    [":status", "200"],
    ["content-type", "application/json"],
    ["content-length", "1234"],
    ["date", "Thu, 03 Dec 2026 07:00:00 GMT"],
    ["server", "keda-http-deno"],
    ["x-request-id", "0123456789abcdef"],
  ];
  const N = 100_000;
  t = performance.now();
  let bytes = 0;
  for (let i = 0; i < N; i++) bytes += d.decode(e.encode(resp)).fields.length;
  const perBlockUs = ((performance.now() - t) * 1000) / N;
  assert.equal(bytes, N * resp.length);
  // Reported for the record; generous floors catch only a pathological regression.
  assert.ok(decMBs > 5 && encMBs > 5, `huffman decode ${decMBs} MB/s encode ${encMBs} MB/s`);
  assert.ok(perBlockUs < 100, `encode+decode ${perBlockUs} µs per block`);
  Deno.stdout.writeSync(
    new TextEncoder().encode(
      `  huffman decode ${decMBs.toFixed(0)} MB/s, encode ${
        encMBs.toFixed(0)
      } MB/s (of plain text); 6-field response encode+decode ${perBlockUs.toFixed(2)} µs\n`,
    ),
  );
});
