import assert from "node:assert/strict";
import { binaryBytes, binaryString, findHeadEnd } from "./http1_bytes.ts";

const enc = new TextEncoder();

Deno.test("findHeadEnd finds the blank line, with CRLF or bare LF, across partial reads", () => {
  const full = enc.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY");
  assert.equal(findHeadEnd(full, 0, full.length), full.length - 4);
  assert.equal(findHeadEnd(full, 0, 20), -1);
  const lf = enc.encode("GET / HTTP/1.1\nHost: a\n\nX");
  assert.equal(findHeadEnd(lf, 0, lf.length), lf.length - 1);
  const lead = enc.encode("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal(findHeadEnd(lead, 0, lead.length), lead.length);
  const crAtEnd = enc.encode("GET / HTTP/1.1\r\nHost: a\r\n\r");
  assert.equal(findHeadEnd(crAtEnd, 0, crAtEnd.length), -1);
});

Deno.test("binary strings keep every byte, ASCII or not", () => {
  const bytes = new Uint8Array([71, 0xe9, 0x80, 0xff, 10]);
  const s = binaryString(bytes, 0, bytes.length);
  assert.equal(s.length, 5);
  assert.deepEqual([...binaryBytes(s)], [...bytes]);
  assert.deepEqual([...binaryBytes("abc", 2)], [97, 98, 99, 0, 0]);
});
