import assert from "node:assert/strict";
import { MalformedMessage, requestOf } from "./h2_bridge.ts";
import { parseRequestHead } from "./http1_request.ts";

type Fields = Array<[string, string]>;
const BASE: Fields = [
  [":method", "POST"],
  [":scheme", "https"],
  [":path", "/a?b=1"],
  [":authority", "app.test"],
];

Deno.test("requestOf: the HTTP/1.1 head the proxy parses: host from :authority, cookies joined, te dropped, framing generated", () => {
  const r = requestOf([
    ...BASE,
    ["cookie", "a=1"],
    ["te", "trailers"],
    ["x-a", "v"],
    ["cookie", "b=2"],
    ["host", "other.test"],
  ], false);
  assert.equal(r.chunked, true);
  const head = parseRequestHead(r.head);
  assert.equal(head.method, "POST");
  assert.equal(head.path, "/a?b=1");
  assert.equal(head.host, "app.test");
  assert.equal(head.headers.get("cookie"), "a=1; b=2");
  assert.equal(head.headers.get("te"), null);
  assert.equal(head.headers.count("host"), 1);
  assert.equal(head.chunked, true);
  assert.equal(head.keepAlive, false);
  const withLength = parseRequestHead(requestOf([...BASE, ["content-length", "5"]], false).head);
  assert.equal(withLength.contentLength, 5);
  assert.equal(withLength.chunked, false);
  const noBody = parseRequestHead(requestOf(BASE, true).head);
  assert.equal(noBody.chunked, false);
  assert.equal(noBody.contentLength, -1);
});

/** Regression corpus: lists found refused by nghttp2 or by RFC 9113 that once got through. */
const MALFORMED: Array<[string, Fields]> = [
  ["space in :path (found by the nghttp2 differential)", [
    ...BASE.slice(0, 2),
    [":path", "/a b"],
    BASE[3]!,
  ]],
  ["no :authority and no host (found by the nghttp2 differential)", BASE.slice(0, 3)],
  ["non-token :method", [[":method", "GE T"], ...BASE.slice(1)]],
  ["NUL in a value", [...BASE, ["x", "a\u0000b"]]],
  ["CR in a value", [...BASE, ["x", "a\rb"]]],
  ["content-length above 0 on an ended stream", [...BASE, ["content-length", "3"]]],
  ["two content-length fields", [...BASE, ["content-length", "1"], ["content-length", "1"]]],
  ["CONNECT with a :path", [[":method", "CONNECT"], [":authority", "a:443"], [":path", "/"]]],
];

Deno.test("requestOf: the malformed-request corpus is refused", () => {
  for (const [what, fields] of MALFORMED) {
    assert.throws(() => requestOf(fields, true), MalformedMessage, what);
  }
});
