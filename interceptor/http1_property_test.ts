/**
 * Properties of the HTTP/1.1 parser that need no oracle to state: it fails
 * only with HttpError, reads the same however the bytes are split, forwards
 * a head that means what the client's meant, and its fast response scanner
 * never disagrees with the full parser. Fixed seeds and bounded runs.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { binaryBytes, binaryString, findHeadEnd } from "./http1_bytes.ts";
import { HttpError } from "./http1_fields.ts";
import {
  parseRequestHead,
  type RequestHead,
  spliceRequestHead,
  upstreamRequestHead,
} from "./http1_request.ts";
import { parseResponseHead, scanResponseBytes } from "./http1_response.ts";
import { ChunkedScanner } from "./http1_chunked.ts";
import {
  anyBytesArb,
  chunkedBodyArb,
  chunkedCaseArb,
  forwardableRequestArb,
  llhttpOutcome,
  plainRequestArb,
  requestArb,
  responseHeadArb,
  sample,
  strictResponseHeadOk,
} from "./http1_generators_testing.ts";
import { LlhttpOracle } from "./llhttp_oracle_testing.ts";
import { LLHTTP_METHODS } from "./http1_divergences.ts";

const SEED = 0x9112;
const RUNS = 2000;
const opts = (n = RUNS, seed = SEED): fc.Parameters<unknown> => ({ seed, numRuns: n });

function onlyHttpError<T>(f: () => T): T | HttpError {
  try {
    return f();
  } catch (e) {
    if (e instanceof HttpError) return e;
    throw new Error(`threw ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e });
  }
}

/** Split points: sorted distinct offsets in (0, len). */
const splitsArb = fc.array(fc.nat(), { maxLength: 8 });
function cuts(len: number, raw: number[]): number[] {
  return [...new Set(raw.map((n) => (len > 1 ? 1 + (n % (len - 1)) : 0)).filter((n) => n > 0))]
    .sort((a, b) => a - b);
}

Deno.test("property: the parsers fail only with HttpError, whatever the bytes", () => {
  fc.assert(
    fc.property(anyBytesArb, (s) => {
      const buf = binaryBytes(s);
      const he = findHeadEnd(buf, 0, buf.length);
      assert.ok(he === -1 || (he > 0 && he <= buf.length));
      const head = he > 0 ? binaryString(buf, 0, he) : s;
      onlyHttpError(() => parseRequestHead(head));
      onlyHttpError(() => parseRequestHead(s));
      onlyHttpError(() => parseResponseHead(head));
      onlyHttpError(() => parseResponseHead(s));
      if (he > 0) scanResponseBytes(buf, 0, he);
      scanResponseBytes(buf, 0, buf.length);
      onlyHttpError(() => new ChunkedScanner().scan(buf, 0, buf.length, () => {}));
    }),
    opts(4000),
  );
});

Deno.test("property: findHeadEnd finds the same end however the head arrives", () => {
  fc.assert(
    fc.property(
      fc.oneof(requestArb, responseHeadArb, anyBytesArb),
      splitsArb,
      fc.nat({ max: 5 }),
      (s, raw, pad) => {
        // The message sits after other bytes in the buffer, as in a connection's.
        const buf = binaryBytes("x".repeat(pad) + s);
        const full = findHeadEnd(buf, pad, buf.length);
        for (const k of [...cuts(s.length, raw), s.length]) {
          const got = findHeadEnd(buf, pad, pad + k);
          assert.equal(got, full >= 0 && full <= pad + k ? full : -1, `prefix ${k}`);
        }
      },
    ),
    opts(),
  );
});

interface ScanResult {
  end: number;
  error: number | null;
  data: string;
}

function scanWhole(s: string): ScanResult {
  let data = "";
  const r = onlyHttpError(() =>
    new ChunkedScanner().scan(binaryBytes(s), 0, s.length, (a, b) => {
      data += s.slice(a, b);
    })
  );
  return r instanceof HttpError
    ? { end: -1, error: r.status, data }
    : { end: r, error: null, data };
}

/** Feeds the pieces one read at a time, each in a fresh buffer after some other bytes. */
function scanSplit(s: string, at: number[]): ScanResult {
  const scanner = new ChunkedScanner();
  let data = "";
  let from = 0;
  for (const to of [...at, s.length]) {
    const piece = binaryBytes("~~~" + s.slice(from, to));
    const r = onlyHttpError(() =>
      scanner.scan(piece, 3, piece.length, (a, b) => {
        data += binaryString(piece, a, b);
      })
    );
    if (r instanceof HttpError) return { end: -1, error: r.status, data };
    if (r >= 0) return { end: from + r - 3, error: null, data };
    from = to;
  }
  return { end: -1, error: null, data };
}

Deno.test("property: ChunkedScanner reads the same however the body arrives", () => {
  fc.assert(
    fc.property(
      fc.oneof(chunkedBodyArb, chunkedCaseArb.map((c) => c.bytes)),
      splitsArb,
      (s, raw) => {
        const whole = scanWhole(s);
        const split = scanSplit(s, cuts(s.length, raw));
        assert.equal(split.error, whole.error, "rejected in one read and not in pieces");
        assert.equal(split.end, whole.end);
        // Data handed out before a rejection may stop at a different byte; after success, not.
        if (whole.error === null) assert.equal(split.data, whole.data);
      },
    ),
    opts(),
  );
});

const FWD = { clientIp: "10.1.2.3", proto: "http" };

/** Parses a head we built; the field multiset sorted, for comparing. */
function reparse(head: string): { req: RequestHead; fields: string[] } {
  const req = parseRequestHead(head);
  const f = req.headers.fields;
  const pairs: string[] = [];
  for (let i = 0; i < f.length; i += 3) pairs.push(`${f[i + 1]}: ${f[i + 2]}`);
  return { req, fields: pairs.sort() };
}

Deno.test("property: a simple request spliced as received means what the rebuilt head means", async () => {
  const llhttp = LlhttpOracle.start();
  try {
    const heads: Array<{ spliced: string; built: string; req: RequestHead }> = [];
    const arb = fc.oneof(
      { weight: 3, arbitrary: forwardableRequestArb },
      { weight: 1, arbitrary: plainRequestArb },
    );
    for (const s of sample(arb, SEED + 1, 3000)) {
      const buf = binaryBytes(s);
      const he = findHeadEnd(buf, 0, buf.length);
      if (he < 0) continue;
      const req = onlyHttpError(() => parseRequestHead(binaryString(buf, 0, he)));
      if (req instanceof HttpError || !req.simple) continue;
      req.raw = buf.subarray(0, he);
      const sp = spliceRequestHead(req, FWD, 0)!;
      heads.push({
        spliced: binaryString(sp.bytes, 0, sp.headLength),
        built: upstreamRequestHead(req, FWD),
        req,
      });
    }
    assert.ok(heads.length > 1000, `only ${heads.length} simple requests generated`);
    const answers = await llhttp.run(
      heads.flatMap((h) => [
        { kind: "request" as const, bytes: h.spliced },
        { kind: "request" as const, bytes: h.built },
      ]),
    );
    heads.forEach((h, i) => {
      const where = `for ${JSON.stringify(binaryString(h.req.raw!, 0, h.req.raw!.length))}`;
      const a = reparse(h.spliced);
      const b = reparse(h.built);
      for (const r of [a.req, b.req]) {
        assert.equal(r.method, h.req.method, where);
        assert.equal(r.target, h.req.path, where);
        assert.equal(r.host, h.req.host, where);
        assert.equal(r.contentLength, h.req.contentLength, where);
        assert.equal(r.chunked, h.req.chunked, where);
      }
      assert.deepEqual(a.fields, b.fields, `spliced and built heads differ ${where}`);
      // llhttp refuses methods it does not know (divergence extension-method).
      if (!LLHTTP_METHODS.has(h.req.method)) return;
      const [ls, lb] = [answers[2 * i]!, answers[2 * i + 1]!].map((x, j) =>
        llhttpOutcome({ kind: "request", bytes: j === 0 ? h.spliced : h.built }, x)
      );
      for (const l of [ls!, lb!]) {
        // The head alone: llhttp may still wait for the body, but must have read the head.
        assert.notEqual(l.verdict, "reject", `llhttp rejects a head we forward ${where}`);
        assert.ok(l.headers !== undefined, where);
        assert.equal(l.method, h.req.method, where);
        assert.equal(l.target, h.req.path, where);
      }
      const multiset = (x: typeof ls) => x!.headers!.map(([n, v]) => `${n}: ${v}`).sort();
      assert.deepEqual(multiset(ls), a.fields, where);
      assert.deepEqual(multiset(lb), b.fields, where);
    });
  } finally {
    await llhttp.close();
  }
});

Deno.test("property: scanResponseBytes agrees with parseResponseHead whenever it answers", () => {
  let answered = 0;
  fc.assert(
    fc.property(responseHeadArb, fc.nat({ max: 4 }), (s, pad) => {
      const buf = binaryBytes("\r\n".repeat(pad).slice(0, pad) + s);
      const he = findHeadEnd(buf, pad, buf.length);
      if (he < 0) return;
      const info = scanResponseBytes(buf, pad, he);
      if (info === null) return;
      answered++;
      const res = parseResponseHead(binaryString(buf, pad, he));
      assert.deepEqual(
        {
          status: info.status,
          minor: info.minor,
          contentLength: info.contentLength,
          chunked: info.chunked,
          close: info.close,
        },
        {
          status: res.status,
          minor: res.minor,
          contentLength: res.contentLength,
          chunked: res.chunked,
          close: res.close,
        },
      );
    }),
    opts(3000),
  );
  // Not vacuous: the fast path must answer for a fair share of generated heads.
  assert.ok(answered > 500, `scanResponseBytes answered only ${answered} times`);
});

Deno.test("property: parseResponseHead accepts nothing a strict reading of RFC 9112 rejects", () => {
  let accepted = 0;
  fc.assert(
    fc.property(responseHeadArb, (s) => {
      const buf = binaryBytes(s);
      const he = findHeadEnd(buf, 0, buf.length);
      if (he < 0) return;
      const head = binaryString(buf, 0, he);
      const r = onlyHttpError(() => parseResponseHead(head));
      if (r instanceof HttpError) return;
      accepted++;
      assert.ok(strictResponseHeadOk(head), `accepted ${JSON.stringify(head)}`);
    }),
    opts(3000),
  );
  assert.ok(accepted > 500, `only ${accepted} heads accepted`);
});
