import assert from "node:assert/strict";
import { binaryString } from "./http1_bytes.ts";
import { HttpError } from "./http1_fields.ts";
import {
  isIdempotent,
  parseRequestHead,
  spliceRequestHead,
  upstreamRequestHead,
} from "./http1_request.ts";

const FWD = { clientIp: "10.0.0.9", proto: "http" };

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
    simple: true,
  }],
  ["HTTP/1.0 defaults to close", "GET / HTTP/1.0\r\n\r\n", {
    minor: 0,
    keepAlive: false,
    host: "",
  }],
  ["HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", { keepAlive: true }],
  ["HTTP/1.2 is HTTP/1.1 (RFC 9110 2.5)", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", {
    minor: 1,
    keepAlive: true,
    simple: false,
  }],
  ["close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", { keepAlive: false }],
  ["content length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", {
    contentLength: 12,
    simple: true,
  }],
  [
    "content length with leading zeros is rebuilt",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 012\r\n\r\n",
    {
      contentLength: 12,
      simple: false,
    },
  ],
  ["chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", {
    chunked: true,
    contentLength: -1,
    simple: false,
  }],
  [
    "upgrade",
    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
    { upgrade: "websocket" },
  ],
  [
    "absolute form: the authority is the host",
    "GET http://B.test:81/p?q HTTP/1.1\r\nHost: a\r\n\r\n",
    {
      host: "B.test:81",
      path: "/p?q",
      simple: false,
    },
  ],
  ["absolute form without path", "GET http://b.test HTTP/1.1\r\nHost: b.test\r\n\r\n", {
    path: "/",
  }],
  [
    "absolute form with a query and no path gets a /",
    "GET http://h?x=1 HTTP/1.1\r\nHost: h\r\n\r\n",
    {
      path: "/?x=1",
      host: "h",
    },
  ],
  ["OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", { target: "*" }],
  ["IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", { host: "[::1]:8080" }],
  ["leading blank lines", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", {
    method: "GET",
    simple: false,
  }],
  ["value whitespace trimmed", "GET / HTTP/1.1\r\nHost:   a.test  \r\n\r\n", { host: "a.test" }],
  [
    "an HTAB anywhere in the head is rebuilt, not spliced",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\t\r\n\r\n",
    { contentLength: 5, simple: false },
  ],
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
  ["HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505],
  ["space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400],
  ["a byte past ASCII in the target", "GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n", 400],
  ["no Host", "GET / HTTP/1.1\r\n\r\n", 400],
  ["no Host with an absolute-form target", "GET http://a/ HTTP/1.1\r\n\r\n", 400],
  ["user information in the target", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400],
  ["a scheme other than http(s)", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400],
  ["empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400],
  ["Host with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400],
  ["two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400],
  ["* with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400],
  [
    "CL and TE",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    400,
  ],
  ["CL not a number", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400],
  ["CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400],
  ["CL with a sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400],
  [
    "CL as a list of equal values",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
    400,
  ],
  [
    "CL twice with equal values",
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
    400,
  ],
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
    "TE gzip, chunked (a coding we cannot forward)",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    501,
  ],
  [
    "TE split over two lines, gzip first",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
    501,
  ],
  ["TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400],
  ["TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 400],
  [
    "chunked twice",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
    400,
  ],
  ["TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
  ["space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400],
  [
    "space before the colon of Transfer-Encoding",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n",
    400,
  ],
  ["folding", "GET / HTTP/1.1\r\nHost: a\r\n\tmore\r\n\r\n", 400],
  ["no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", 400],
  ["control char", "GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", 400],
  ["NUL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400],
  ["bare CR inside a value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400],
  ["bare LF line ends", "GET / HTTP/1.1\nHost: a\n\n", 400],
  ["CONNECT authority form", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405],
  ["CONNECT origin form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 405],
];

for (const [name, text, status] of PARSE_BAD) {
  Deno.test(`parseRequestHead rejects ${name} with ${status}`, () => {
    assert.throws(
      () => parseRequestHead(text),
      (e) => e instanceof HttpError && e.status === status,
    );
  });
}

Deno.test("parseRequestHead: CONNECT's 405 carries Allow", () => {
  try {
    parseRequestHead("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n");
    assert.fail("accepted CONNECT");
  } catch (e) {
    assert.ok(e instanceof HttpError);
    assert.equal(e.status, 405);
    const allow = new Map(e.headers ?? []).get("Allow");
    assert.ok(allow?.includes("GET") && !allow.includes("CONNECT"), String(allow));
  }
});

Deno.test("upstreamRequestHead: Host from the authority, hop-by-hop and Connection-named fields dropped, framing generated, X-Forwarded-* set", () => {
  const req = parseRequestHead(
    "POST http://app.test/x HTTP/1.1\r\nHost: ignored\r\nConnection: X-Drop, keep-alive\r\nX-Drop: 1\r\n" +
      "TE: trailers\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nUser-Agent: t\r\n\r\n",
  );
  assert.equal(
    upstreamRequestHead(req, FWD),
    "POST /x HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-Proto: https\r\nUser-Agent: t\r\n" +
      "X-Forwarded-For: 1.2.3.4, 10.0.0.9\r\nX-Forwarded-Host: app.test\r\nTransfer-Encoding: chunked\r\n\r\n",
  );
  const ws = parseRequestHead(
    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
  );
  const wsHead = upstreamRequestHead(ws, { clientIp: "1.1.1.1", proto: "https" });
  assert.match(wsHead, /\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n/);
  assert.match(wsHead, /\r\nSec-WebSocket-Key: k\r\n/);
  assert.match(wsHead, /\r\nX-Forwarded-Proto: https\r\n/);
});

Deno.test("upstreamRequestHead: framing fields named in Connection are still framing (the body length survives)", () => {
  // The smuggling case: Connection naming Content-Length must not strip the framing of a body
  // that is still forwarded, or the app parses the body as a second request.
  const req = parseRequestHead(
    "POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 42\r\n\r\n",
  );
  assert.equal(req.contentLength, 42);
  const head = upstreamRequestHead(req, FWD);
  assert.match(head, /\r\nContent-Length: 42\r\n/);
  assert.doesNotMatch(head, /Connection/i);
  const te = parseRequestHead(
    "POST / HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding, Host\r\nTransfer-Encoding: chunked\r\n\r\n",
  );
  const teHead = upstreamRequestHead(te, FWD);
  assert.match(teHead, /\r\nTransfer-Encoding: chunked\r\n/);
  assert.match(teHead, /\r\nHost: a\r\n/);
});

Deno.test("spliceRequestHead: only simple heads, equal to the built head field for field", () => {
  const text = "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-A: 1\r\n\r\n";
  const req = parseRequestHead(text);
  req.raw = new TextEncoder().encode(text);
  const spliced = spliceRequestHead(req, FWD, 0)!;
  const fromSplice = parseRequestHead(binaryString(spliced.bytes, 0, spliced.headLength));
  const fromBuilt = parseRequestHead(upstreamRequestHead(req, FWD));
  const sorted = (h: string[]) => {
    const out: string[] = [];
    for (let i = 0; i < h.length; i += 3) out.push(`${h[i + 1]}: ${h[i + 2]}`);
    return out.sort();
  };
  assert.deepEqual(sorted(fromSplice.headers.fields), sorted(fromBuilt.headers.fields));
  assert.equal(fromSplice.contentLength, fromBuilt.contentLength);
  const notSimple = parseRequestHead("GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\n\r\n");
  notSimple.raw = new Uint8Array(1);
  assert.equal(spliceRequestHead(notSimple, FWD, 0), null);
});

Deno.test("isIdempotent: RFC 9110 9.2.2 methods and an Idempotency-Key", () => {
  const of = (m: string, extra = "") =>
    isIdempotent(parseRequestHead(`${m} / HTTP/1.1\r\nHost: a\r\n${extra}\r\n`));
  for (const m of ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]) assert.ok(of(m), m);
  for (const m of ["POST", "PATCH", "LOCK"]) assert.ok(!of(m), m);
  assert.ok(of("POST", "Idempotency-Key: k1\r\n"));
});
