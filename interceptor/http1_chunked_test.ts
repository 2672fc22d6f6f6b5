import assert from "node:assert/strict";
import { ChunkedScanner } from "./http1_chunked.ts";
import { HttpError } from "./http1_fields.ts";

const enc = new TextEncoder();

function scanAll(text: string, splitEvery: number): { end: number; data: string } {
  const bytes = Uint8Array.from(text, (ch) => ch.charCodeAt(0));
  const s = new ChunkedScanner();
  let data = "";
  for (let off = 0; off < bytes.length; off += splitEvery) {
    const stop = Math.min(bytes.length, off + splitEvery);
    const e = s.scan(
      bytes,
      off,
      stop,
      (a, b) => (data += new TextDecoder().decode(bytes.subarray(a, b))),
    );
    if (e >= 0) return { end: e, data };
  }
  return { end: -1, data };
}

Deno.test("ChunkedScanner finds the end and the data however the bytes are split", () => {
  const body = '4\r\nWiki\r\n5;name=val\r\npedia\r\nE ; a = "q\\"x" ;b\r\n in\r\n\r\nchunks.\r\n' +
    "0\r\nTrailer-X: x\r\n\r\n";
  for (const split of [1, 2, 3, 7, 1000]) {
    const r = scanAll(body + "NEXT", split);
    assert.equal(r.end, body.length, `split ${split}`);
    assert.equal(r.data, "Wikipedia in\r\n\r\nchunks.", `split ${split}`);
  }
  assert.equal(scanAll("0\r\n\r\n", 1).end, 5);
  assert.equal(scanAll("000a\r\n0123456789\r\n0\r\n\r\n", 3).end, 23);
  assert.equal(scanAll("5\r\nabc", 100).end, -1);
  assert.equal(enc.encode("x").length, 1);
});

const MALFORMED: Array<[string, string]> = [
  ["not hex", "x\r\n"],
  ["data longer than its size", "5\r\nabcdefg\r\n"],
  ["no size", "\r\n"],
  ["a size past 2^52", "FFFFFFFFFFFFFFFFF\r\n"],
  ["bare LF after the size", "5\nabcde\r\n0\r\n\r\n"],
  ["bare LF after the data", "5\r\nabcde\n0\r\n\r\n"],
  ["bare LF at the end", "0\r\n\n"],
  ["bare CR after the size", "5\rabcde\r\n"],
  ["junk after the size", "5x\r\nabcde\r\n"],
  ["whitespace then junk after the size", "5 x\r\nabcde\r\n"],
  ["an extension without a name", "5;\r\nabcde\r\n"],
  ["an extension with a control character", "5;a=\x01\r\nabcde\r\n"],
  ["an unterminated quoted extension", '5;a="x\r\nabcde\r\n'],
  ["a trailer line without a colon", "0\r\nNoColon\r\n\r\n"],
  ["a trailer with a space before the colon", "0\r\nX-T : 1\r\n\r\n"],
  ["a trailer starting with whitespace", "0\r\n X-T: 1\r\n\r\n"],
  ["Content-Length in the trailers", "0\r\nContent-Length: 5\r\n\r\n"],
  ["Transfer-Encoding in the trailers", "0\r\nTransfer-Encoding: chunked\r\n\r\n"],
  ["Host in the trailers", "0\r\nHost: other\r\n\r\n"],
  ["a NUL in a trailer value", "0\r\nX-T: a\x00\r\n\r\n"],
  ["a bare LF ending a trailer", "0\r\nX-T: a\n\r\n"],
];

for (const [name, bytes] of MALFORMED) {
  Deno.test(`ChunkedScanner rejects ${name}, however the bytes are split`, () => {
    for (const split of [1, 100]) {
      assert.throws(
        () => scanAll(bytes, split),
        (e) => e instanceof HttpError && e.status === 400,
        `${JSON.stringify(bytes)} split ${split}`,
      );
    }
  });
}
