import assert from "node:assert/strict";
import {
  binaryBytes,
  binaryString,
  ChunkedScanner,
  clientResponseHead,
  findHeadEnd,
  HttpError,
  parseRequestHead,
  parseResponseHead,
  scanResponseBytes,
  scanResponseHead,
  upstreamRequestHead,
} from "./http1.ts";

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

const PARSE_OK: Array<[string, string, Partial<ReturnType<typeof parseRequestHead>>]> = [
  ["simple GET", "GET /a?b=1 HTTP/1.1\r\nHost: x.test\r\n\r\n", {
    method: "GET",
    path: "/a?b=1",
    host: "x.test",
    minor: 1,
    keepAlive: true,
    contentLength: -1,
    chunked: false,
    upgrade: null,
  }],
  ["HTTP/1.0 defaults to close", "GET / HTTP/1.0\r\n\r\n", {
    minor: 0,
    keepAlive: false,
    host: "",
  }],
  ["HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", { keepAlive: true }],
  ["close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", { keepAlive: false }],
  ["content length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", {
    contentLength: 12,
  }],
  ["repeated equal content length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", {
    contentLength: 3,
  }],
  ["chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", {
    chunked: true,
    contentLength: -1,
  }],
  [
    "upgrade",
    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
    {
      upgrade: "websocket",
    },
  ],
  ["absolute form", "GET http://user@B.test:81/p?q HTTP/1.1\r\nHost: a\r\n\r\n", {
    host: "B.test:81",
    path: "/p?q",
  }],
  ["absolute form without path", "GET http://b.test HTTP/1.1\r\nHost: b.test\r\n\r\n", {
    path: "/",
  }],
  ["IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", { host: "[::1]:8080" }],
  ["leading blank lines", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", { method: "GET" }],
  ["value whitespace trimmed", "GET / HTTP/1.1\r\nHost:   a.test  \r\n\r\n", { host: "a.test" }],
];

for (const [name, text, want] of PARSE_OK) {
  Deno.test(`parseRequestHead: ${name}`, () => {
    const got = parseRequestHead(text);
    for (const [k, v] of Object.entries(want)) {
      assert.deepEqual(got[k as keyof typeof got], v, k);
    }
  });
}

const PARSE_BAD: Array<[string, string, number]> = [
  ["empty", "\r\n", 400],
  ["two spaces only", "GET  HTTP/1.1\r\nHost: a\r\n\r\n", 400],
  ["lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400],
  ["HTTP/2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505],
  ["space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400],
  ["no Host", "GET / HTTP/1.1\r\n\r\n", 400],
  ["empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400],
  ["Host with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400],
  ["two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400],
  [
    "CL and TE",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    400,
  ],
  ["CL not a number", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400],
  ["CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400],
  [
    "CL conflict",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    400,
  ],
  [
    "TE not chunked last",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    400,
  ],
  [
    "chunked twice",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    400,
  ],
  ["TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
  ["space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400],
  ["folding", "GET / HTTP/1.1\r\nHost: a\r\n\tmore\r\n\r\n", 400],
  ["no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", 400],
  ["control char", "GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", 400],
  ["bare CR inside a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400],
  ["CONNECT authority form", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405],
];

for (const [name, text, status] of PARSE_BAD) {
  Deno.test(`parseRequestHead rejects ${name} with ${status}`, () => {
    assert.throws(
      () => parseRequestHead(text),
      (e) => e instanceof HttpError && e.status === status,
    );
  });
}

Deno.test("upstreamRequestHead: Host kept, hop-by-hop and Connection-named headers dropped, X-Forwarded-* set", () => {
  const req = parseRequestHead(
    "POST http://app.test/x HTTP/1.1\r\nHost: ignored\r\nConnection: X-Drop, keep-alive\r\nX-Drop: 1\r\n" +
      "TE: trailers\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nUser-Agent: t\r\n\r\n",
  );
  const head = upstreamRequestHead(req, { clientIp: "10.0.0.9", proto: "http" });
  assert.equal(
    head,
    "POST /x HTTP/1.1\r\nHost: ignored\r\nX-Forwarded-Proto: https\r\nUser-Agent: t\r\n" +
      "Transfer-Encoding: chunked\r\nX-Forwarded-For: 1.2.3.4, 10.0.0.9\r\nX-Forwarded-Host: app.test\r\n\r\n",
  );
  const ws = parseRequestHead(
    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
  );
  const wsHead = upstreamRequestHead(ws, { clientIp: "1.1.1.1", proto: "https" });
  assert.match(wsHead, /\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n/);
  assert.match(wsHead, /\r\nSec-WebSocket-Key: k\r\n/);
  assert.match(wsHead, /\r\nX-Forwarded-Proto: https\r\n/);
});

Deno.test("parseResponseHead: framing and connection semantics", () => {
  const r = parseResponseHead(
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
  );
  assert.equal(r.status, 200);
  assert.equal(r.contentLength, 5);
  assert.equal(r.close, false);
  const c = parseResponseHead(
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
  );
  assert.equal(c.chunked, true);
  assert.equal(c.contentLength, -1);
  assert.equal(parseResponseHead("HTTP/1.0 200 OK\r\n\r\n").close, true);
  assert.equal(parseResponseHead("HTTP/1.1 204 No Content\r\n\r\n").reason, "No Content");
  assert.equal(parseResponseHead("HTTP/1.1 200\r\n\r\n").reason, "");
  assert.throws(() => parseResponseHead("HTTP/1.1 2000 OK\r\n\r\n"), HttpError);
  assert.throws(() => parseResponseHead("ICY 200 OK\r\n\r\n"), HttpError);
});

Deno.test("clientResponseHead: hop-by-hop dropped, cold-start header, close and HTTP/1.0 keep-alive", () => {
  const res = parseResponseHead(
    "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\nX-App: 1\r\n" +
      "Transfer-Encoding: chunked\r\nTrailer: X-T\r\nX-KEDA-HTTP-Cold-Start: spoofed\r\n\r\n",
  );
  const base = { coldStart: true, close: false, http10: false, dechunk: false, upgraded: false };
  assert.equal(
    clientResponseHead(res, base),
    "HTTP/1.1 200 OK\r\nX-App: 1\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n" +
      "X-KEDA-HTTP-Cold-Start: true\r\n\r\n",
  );
  assert.equal(
    clientResponseHead(res, { ...base, coldStart: null, http10: true, dechunk: true, close: true }),
    "HTTP/1.0 200 OK\r\nX-App: 1\r\nConnection: close\r\n\r\n",
  );
  const up = parseResponseHead(
    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\n",
  );
  assert.equal(
    clientResponseHead(up, { ...base, coldStart: false, upgraded: true }),
    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
      "Sec-WebSocket-Accept: x\r\nX-KEDA-HTTP-Cold-Start: false\r\n\r\n",
  );
});

function scanAll(text: string, splitEvery: number): { end: number; data: string } {
  const bytes = enc.encode(text);
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
  const body =
    "4\r\nWiki\r\n5;name=val\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n";
  for (const split of [1, 2, 3, 7, 1000]) {
    const r = scanAll(body + "NEXT", split);
    assert.equal(r.end, body.length, `split ${split}`);
    assert.equal(r.data, "Wikipedia in\r\n\r\nchunks.", `split ${split}`);
  }
  assert.equal(scanAll("0\r\n\r\n", 1).end, 5);
  assert.equal(scanAll("0\n\n", 100).end, 3);
  assert.equal(scanAll("5\r\nabc", 100).end, -1);
});

Deno.test("ChunkedScanner rejects malformed framing", () => {
  for (const bad of ["x\r\n", "5\r\nabcdefg\r\n", "\r\n", "FFFFFFFFFFFFFFFFF\r\n"]) {
    assert.throws(() => scanAll(bad, 100), HttpError, bad);
  }
});

Deno.test("scanResponseBytes agrees with scanResponseHead (or defers to it)", () => {
  const heads = [
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n\r\n",
    "HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n",
    "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
    "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX-KEDA-HTTP-Cold-Start: true\r\n\r\n",
    "HTTP/1.1 200 OK\r\nCONTENT-LENGTH:  7 \r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    "HTTP/1.1 200 OK\nContent-Length: 2\n\n",
    "HTTP/1.1 500\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
    "HTTP/2 200 OK\r\n\r\n",
  ];
  for (const h of heads) {
    const bytes = enc.encode(h);
    const fromBytes = scanResponseBytes(bytes, 0, bytes.length);
    const fromText = scanResponseHead(h);
    if (fromBytes !== null) assert.deepEqual(fromBytes, fromText, JSON.stringify(h));
  }
  const plain = enc.encode(heads[0]!);
  assert.deepEqual(scanResponseBytes(plain, 0, plain.length), {
    status: 200,
    minor: 1,
    contentLength: 22,
    chunked: false,
    close: false,
    spliceable: true,
  });
});
