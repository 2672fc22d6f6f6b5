/**
 * Our HTTP/1.1 parser against two others on generated messages: llhttp (as
 * Node 20 runs it, strict settings) and hyper (behind Deno.serve). They must
 * agree on accepting or rejecting, and on what an accepted message is; a
 * disagreement passes only when an entry of http1_divergences.ts explains
 * it. Fixed seeds; `deno task fuzz` runs the same generators unbounded.
 */
import assert from "node:assert/strict";
import {
  type BatchResult,
  checkWithHyper,
  checkWithLlhttp,
  chunkedCaseArb,
  compare,
  describe,
  type HttpCase,
  llhttpOutcome,
  ourOutcome,
  requestCaseArb,
  responseArb,
  sample,
} from "./http1_generators_testing.ts";
import { DIVERGENCES, divergenceTableMarkdown } from "./http1_divergences.ts";
import { LlhttpOracle } from "./llhttp_oracle_testing.ts";
import { HyperOracle } from "./hyper_oracle_testing.ts";

const SEED = 0x5eed;
/** Cases per llhttp property (the oracle answers thousands a second). */
const LLHTTP_RUNS = 3000;
/** Cases for hyper (a loopback connection each). */
const HYPER_RUNS = 400;

// One Node process for the whole file; it exits when this process closes its stdin.
const llhttp = LlhttpOracle.start();

function assertAgreement(r: BatchResult): void {
  if (r.disagreements.length === 0) return;
  const shown = r.disagreements.slice(0, 5).map(describe).join("\n\n");
  assert.fail(
    `${r.disagreements.length} of ${r.cases} cases disagree and no divergence entry explains ` +
      `them (make each a corpus case under testdata/http1_corpus/):\n\n${shown}`,
  );
}

Deno.test("oracle: generated requests read the same by our parser and llhttp", async () => {
  const r = await checkWithLlhttp(llhttp, sample(requestCaseArb, SEED, LLHTTP_RUNS));
  assert.equal(r.cases, LLHTTP_RUNS);
  assertAgreement(r);
});

Deno.test("oracle: generated responses read the same by our parser and llhttp", async () => {
  const r = await checkWithLlhttp(llhttp, sample(responseArb, SEED + 1, LLHTTP_RUNS));
  assertAgreement(r);
});

Deno.test("oracle: generated chunked bodies read the same by our scanner and llhttp", async () => {
  const r = await checkWithLlhttp(llhttp, sample(chunkedCaseArb, SEED + 2, LLHTTP_RUNS));
  assertAgreement(r);
});

Deno.test("oracle: generated requests read the same by our parser and hyper", async () => {
  const hyper = HyperOracle.start();
  try {
    const cases = [
      ...sample(requestCaseArb, SEED + 3, HYPER_RUNS),
      ...sample(chunkedCaseArb, SEED + 4, HYPER_RUNS / 4),
    ];
    const r = await checkWithHyper(hyper, cases);
    // GET and HEAD requests with a body are left out (Deno does not show it); most remain.
    assert.ok(r.cases > cases.length * 0.8, `only ${r.cases} of ${cases.length} compared`);
    assertAgreement(r);
  } finally {
    await hyper.close();
  }
});

Deno.test("oracle: the comparison fails on a disagreement no entry explains", async () => {
  // TE.CL: a parser that took Content-Length here would differ in body and length.
  const c: HttpCase = {
    kind: "request",
    bytes: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
  };
  const [answer] = await llhttp.run([{ kind: "request", bytes: c.bytes }]);
  const theirs = llhttpOutcome(c, answer!);
  assert.equal(compare(c, "llhttp", ourOutcome(c), theirs).disagreement, null);
  const wrong = { ...ourOutcome(c), body: "3\r\nabc", consumed: 64 };
  const d = compare(c, "llhttp", wrong, theirs).disagreement;
  assert.deepEqual(d?.unexplained.map((x) => x.field), ["body", "consumed"]);
  // A rejection llhttp does not share, with no entry for it.
  const rejected = compare(c, "llhttp", { verdict: "reject", status: 400 }, theirs);
  assert.deepEqual(rejected.disagreement?.unexplained.map((x) => x.field), ["verdict"]);
});

Deno.test("oracle: llhttp answers as Node does", async () => {
  const [ok, smuggled, bareLf, te] = await llhttp.run([
    { kind: "request", bytes: "GET /a HTTP/1.1\r\nHost: a\r\nX:  v \r\n\r\nGET /b HTTP/1.1\r\n" },
    {
      kind: "request",
      bytes:
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
    },
    { kind: "request", bytes: "GET / HTTP/1.1\nHost: a\n\n" },
    {
      kind: "response",
      method: "GET",
      eof: true,
      bytes: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nT: 1\r\n\r\n",
    },
  ]);
  assert.equal(ok!.outcome, "accept");
  assert.deepEqual(ok!.headers, [["Host", "a"], ["X", "v"]]);
  assert.equal(ok!.url, "/a");
  assert.equal(ok!.consumed, 36);
  assert.equal(smuggled!.outcome, "error");
  assert.equal(bareLf!.outcome, "error");
  assert.equal(te!.body, "hi");
  assert.deepEqual(te!.trailers, [["T", "1"]]);
});

Deno.test("oracle: divergence entries are complete and their ids unique", () => {
  const ids = new Set<string>();
  for (const d of DIVERGENCES) {
    assert.ok(!ids.has(d.id), `duplicate id ${d.id}`);
    ids.add(d.id);
    for (const k of ["when", "ours", "theirs", "rfc", "why"] as const) {
      assert.ok(d[k].length > 0, `${d.id}: ${k} is empty`);
    }
    assert.match(d.rfc, /RFC 91(10|12)/, d.id);
  }
});

Deno.test("oracle: the README's divergence table is the one in http1_divergences.ts", () => {
  const readme = Deno.readTextFileSync(new URL("./README.md", import.meta.url));
  const start = readme.indexOf("<!-- divergences:start -->");
  const end = readme.indexOf("<!-- divergences:end -->");
  assert.ok(start >= 0 && end > start, "README.md lacks the divergences markers");
  // deno fmt pads table cells: compare cell by cell.
  const rows = (md: string) =>
    md.split("\n").filter((l) => l.startsWith("|") && !/^\|[\s|-]+\|$/.test(l)).map((l) =>
      l.split(/(?<!\\)\|/).map((c) => c.trim()).join("|")
    );
  assert.deepEqual(
    rows(readme.slice(start, end)),
    rows(divergenceTableMarkdown()),
    "regenerate the table with divergenceTableMarkdown() and paste it between the markers",
  );
});
