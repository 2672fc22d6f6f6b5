import assert from "node:assert/strict";
import fc from "fast-check";
import { HpackDecoder, HpackEncoder, HpackError, huffmanDecode, huffmanEncode } from "./hpack.ts";

function hex(s: string): Uint8Array {
  const t = s.replace(/\s+/g, "");
  return new Uint8Array(t.match(/../g)!.map((b) => parseInt(b, 16)));
}

const dec = () => new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 64 * 1024 });

Deno.test("hpack: RFC 7541 C.2.1 literal with indexing, and C.3 requests without Huffman", () => {
  const d = dec();
  assert.deepEqual(
    d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")).fields,
    [["custom-key", "custom-header"]],
  );
  assert.equal(d.tableSize, 55);
  const c = dec();
  assert.deepEqual(c.decode(hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d")).fields, [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
  ]);
  assert.equal(c.tableSize, 57);
  assert.deepEqual(c.decode(hex("8286 84be 5808 6e6f 2d63 6163 6865")).fields, [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ]);
  assert.equal(c.tableSize, 110);
});

Deno.test("hpack: RFC 7541 C.4 requests with Huffman", () => {
  const d = dec();
  assert.deepEqual(d.decode(hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")).fields, [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
  ]);
  assert.deepEqual(d.decode(hex("8286 84be 5886 a8eb 1064 9cbf")).fields.at(-1), [
    "cache-control",
    "no-cache",
  ]);
  assert.deepEqual(
    d.decode(hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")).fields,
    [
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ],
  );
  assert.equal(d.tableSize, 164);
  assert.deepEqual(d.tableEntries.map((e) => e[0]), ["custom-key", "cache-control", ":authority"]);
});

Deno.test("hpack: RFC 7541 C.6 responses with Huffman and a 256-byte table evict in order", () => {
  const d = new HpackDecoder({ maxTableSize: 256, maxHeaderListSize: 64 * 1024 });
  assert.deepEqual(
    d.decode(hex(
      "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
    )).fields,
    [
      [":status", "302"],
      ["cache-control", "private"],
      ["date", "Mon, 21 Oct 2013 20:13:21 GMT"],
      ["location", "https://www.example.com"],
    ],
  );
  assert.equal(d.tableSize, 222);
  assert.deepEqual(d.decode(hex("4883 640e ffc1 c0bf")).fields[0], [":status", "307"]);
  assert.equal(d.tableSize, 222);
  assert.deepEqual(d.tableEntries.map((e) => e[0]), [
    ":status",
    "location",
    "date",
    "cache-control",
  ]);
});

Deno.test("hpack: every RFC 7541 error is an HpackError", () => {
  const cases: Array<[string, string]> = [
    ["index 0", "80"],
    ["index past the tables", "be"],
    ["integer overflow", "ff ff ff ff ff ff 7f"],
    ["string past the block", "40 05 61"],
    ["integer cut short", "ff"],
    ["size update above the maximum", "3f e1 7f"],
    ["size update after a field", "82 20"],
    ["Huffman EOS", "40 84 ff ff ff ff 01 61"],
    ["Huffman padding not all ones", "40 81 00 01 61"],
    ["Huffman padding past 7 bits", "40 82 1f ff 01 61"],
  ];
  for (const [what, bytes] of cases) {
    assert.throws(() => dec().decode(hex(bytes)), HpackError, what);
  }
});

Deno.test("hpack: an HPACK bomb is reported too large without building the list, the table stays in step", () => {
  const d = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 16 * 1024 });
  const e = new TextEncoder();
  const value = "b".repeat(4000);
  // 4000 as a 7-bit prefix integer: 127, then 3873 = 0x21 + 0x1e * 128.
  const block = [0x40, 6, ...e.encode("x-bomb"), 0x7f, 0xa1, 0x1e, ...e.encode(value)];
  for (let i = 0; i < 1000; i++) block.push(0x80 | 62);
  const r = d.decode(new Uint8Array(block));
  assert.equal(r.tooLarge, true);
  assert.equal(r.fields.length, 0);
  assert.deepEqual(d.decode(new Uint8Array([0x80 | 62])).fields, [["x-bomb", value]]);
});

Deno.test("hpack: Huffman round-trips every byte value", () => {
  let all = "";
  for (let i = 0; i < 256; i++) all += String.fromCharCode(i);
  const h = huffmanEncode(all);
  assert.equal(huffmanDecode(h, 0, h.length), all);
});

const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/);
const value = fc.string({
  unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)),
  maxLength: 60,
});
const field = fc.oneof(
  fc.tuple(name, value),
  fc.constantFrom<[string, string]>([":method", "GET"], [":path", "/"], ["cookie", "a=b"], [
    "authorization",
    "secret",
  ]),
);

Deno.test("hpack property: blocks round-trip through encoder and decoder across table size changes", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.array(field, { maxLength: 12 }), fc.option(fc.integer({ min: 0, max: 4096 }))),
        {
          maxLength: 20,
        },
      ),
      (blocks) => {
        const enc = new HpackEncoder();
        const d = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 1 << 20 });
        for (const [fields, size] of blocks) {
          if (size !== null) enc.setMaxTableSize(size);
          assert.deepEqual(d.decode(enc.encode(fields)).fields, fields);
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("hpack property: random bytes only ever raise HpackError, within the list bound", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const d = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 2048 });
      try {
        const r = d.decode(bytes);
        let size = 0;
        for (const [n, v] of r.fields) size += n.length + v.length + 32;
        assert.ok(size <= 2048);
      } catch (e) {
        if (!(e instanceof HpackError)) throw e;
      }
    }),
    { numRuns: 2000 },
  );
});
