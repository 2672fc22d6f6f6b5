import assert from "node:assert/strict";
import { HttpError } from "./http1_fields.ts";
import { clientResponseHead, parseResponseHead, scanResponseBytes } from "./http1_response.ts";

const enc = new TextEncoder();

Deno.test("parseResponseHead: framing and connection semantics", () => {
  const r = parseResponseHead(
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
  );
  assert.equal(r.status, 200);
  assert.equal(r.contentLength, 5);
  assert.equal(r.close, false);
  const c = parseResponseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  assert.equal(c.chunked, true);
  assert.equal(c.contentLength, -1);
  assert.equal(parseResponseHead("HTTP/1.0 200 OK\r\n\r\n").close, true);
  assert.equal(parseResponseHead("HTTP/1.1 204 No Content\r\n\r\n").reason, "No Content");
  assert.equal(parseResponseHead("HTTP/1.1 200\r\n\r\n").reason, "");
  // Bare LF from an app is tolerated (the head is rebuilt with CRLF).
  assert.equal(parseResponseHead("HTTP/1.1 200 OK\nContent-Length: 2\n\n").contentLength, 2);
});

const BAD_RESPONSES: Array<[string, string]> = [
  ["a four-digit status", "HTTP/1.1 2000 OK\r\n\r\n"],
  ["not HTTP", "ICY 200 OK\r\n\r\n"],
  ["HTTP/2 status line", "HTTP/2 200 OK\r\n\r\n"],
  ["space before a colon", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n"],
  [
    "Content-Length with Transfer-Encoding spelled with a space before the colon",
    "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding : chunked\r\n\r\n",
  ],
  ["both framings", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"],
  ["a coding besides chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"],
  ["a coding without chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"],
  ["two Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n"],
  ["a Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n"],
  ["a CR in a value", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n"],
  ["a NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n"],
  ["a control character in the reason", "HTTP/1.1 200 O\x01K\r\n\r\n"],
  ["obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n"],
];

for (const [name, head] of BAD_RESPONSES) {
  Deno.test(`parseResponseHead rejects ${name} (502), and the byte scanner defers`, () => {
    assert.throws(
      () => parseResponseHead(head),
      (e) => e instanceof HttpError && e.status === 502,
    );
    const bytes = enc.encode(head);
    assert.equal(scanResponseBytes(bytes, 0, bytes.length), null);
  });
}

Deno.test("clientResponseHead: hop-by-hop dropped, framing generated, cold-start header, close and HTTP/1.0 keep-alive", () => {
  const res = parseResponseHead(
    "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\nX-App: 1\r\n" +
      "Transfer-Encoding: chunked\r\nTrailer: X-T\r\nX-KEDA-HTTP-Cold-Start: spoofed\r\n\r\n",
  );
  const base = { coldStart: true, close: false, http10: false, dechunk: false, upgraded: false };
  assert.equal(
    clientResponseHead(res, base),
    "HTTP/1.1 200 OK\r\nX-App: 1\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n" +
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

Deno.test("clientResponseHead: Connection naming Content-Length never leaves the client without framing", () => {
  const res = parseResponseHead(
    "HTTP/1.1 200 OK\r\nConnection: content-length, x-gone\r\nContent-Length: 5\r\nX-Gone: 1\r\n\r\n",
  );
  const head = clientResponseHead(res, {
    coldStart: null,
    close: false,
    http10: false,
    dechunk: false,
    upgraded: false,
  });
  assert.equal(head, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
  const bytes = enc.encode(
    "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
  );
  // Connection decides reuse: the byte scanner leaves it to the parser.
  assert.equal(scanResponseBytes(bytes, 0, bytes.length), null);
});

Deno.test("clientResponseHead: no framing on 1xx and 204; HEAD and 304 keep their Content-Length", () => {
  const opts = { coldStart: null, close: false, http10: false, dechunk: false, upgraded: false };
  assert.equal(
    clientResponseHead(
      parseResponseHead("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"),
      opts,
    ),
    "HTTP/1.1 204 No Content\r\n\r\n",
  );
  assert.equal(
    clientResponseHead(
      parseResponseHead("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
      opts,
    ),
    "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
  );
});

Deno.test("scanResponseBytes agrees with parseResponseHead whenever it answers", () => {
  const heads = [
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n\r\n",
    "HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n",
    "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
    "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX-KEDA-HTTP-Cold-Start: true\r\n\r\n",
    "HTTP/1.1 200 OK\r\nCONTENT-LENGTH:  7 \r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    "HTTP/1.1 200 OK\nContent-Length: 2\n\n",
    "HTTP/1.1 500\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX-\xe9: \xff\r\n\r\n",
  ];
  let answered = 0;
  for (const h of heads) {
    const bytes = Uint8Array.from(h, (ch) => ch.charCodeAt(0));
    const fromBytes = scanResponseBytes(bytes, 0, bytes.length);
    if (fromBytes === null) continue;
    answered++;
    const full = parseResponseHead(h);
    const { spliceable: _, ...got } = fromBytes;
    assert.deepEqual(got, {
      status: full.status,
      minor: full.minor,
      contentLength: full.contentLength,
      chunked: full.chunked,
      close: full.close,
    }, JSON.stringify(h));
  }
  assert.ok(answered >= 6, `the scanner answered only ${answered} heads`);
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
