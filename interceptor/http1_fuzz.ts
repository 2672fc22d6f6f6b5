/**
 * `deno task fuzz [--seconds=60] [--seed=S] [--hyper=1]`: the oracle tests'
 * generators without a bound on the number of cases. Prints the seed first,
 * then every disagreement no divergence entry explains, as a corpus file
 * ready to save under interceptor/testdata/http1_corpus/ (check its
 * "expect": it is what the oracle did), and at the end the number of cases
 * per property. Exits 1 when it found a disagreement.
 */
import fc from "fast-check";
import {
  checkWithHyper,
  checkWithLlhttp,
  chunkedCaseArb,
  corpusCaseOf,
  type Disagreement,
  type HttpCase,
  requestCaseArb,
  responseArb,
  sample,
} from "./http1_generators_testing.ts";
import { LlhttpOracle } from "./llhttp_oracle_testing.ts";
import { HyperOracle } from "./hyper_oracle_testing.ts";

const enc = new TextEncoder();
function out(line: string): void {
  const bytes = enc.encode(line + "\n");
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

function arg(name: string): string | undefined {
  const prefix = `--${name}=`;
  return Deno.args.find((a) => a.startsWith(prefix))?.slice(prefix.length);
}

const seconds = Number(arg("seconds") ?? 60);
const seed = Number(arg("seed") ?? Math.floor(Math.random() * 2 ** 31));
const hyperEvery = Number(arg("hyper") ?? 1);
if (!Number.isFinite(seconds) || !Number.isInteger(seed)) {
  out("usage: deno task fuzz [--seconds=N] [--seed=S] [--hyper=0|1]");
  Deno.exit(2);
}
out(`seed ${seed}`);

const BATCH = 500;
const HYPER_BATCH = 20;
const properties: Array<[string, fc.Arbitrary<HttpCase>]> = [
  ["request/llhttp", requestCaseArb],
  ["response/llhttp", responseArb],
  ["chunked/llhttp", chunkedCaseArb],
];
const counts = new Map<string, number>();
const seen = new Set<string>();
/** How often each divergence entry explained a difference. */
const explained = new Map<string, number>();
function tally(m: Map<string, number>): void {
  for (const [id, n] of m) explained.set(id, (explained.get(id) ?? 0) + n);
}
let found = 0;

function report(d: Disagreement): void {
  const key = `${d.oracle} ${d.case.kind} ${d.case.method ?? ""} ${
    d.case.eof ?? ""
  } ${d.case.bytes}`;
  if (seen.has(key)) return;
  seen.add(key);
  found++;
  const name = `fuzz-${d.oracle}-${d.case.kind}-${seed}-${found}`;
  out(JSON.stringify(corpusCaseOf(d, name), null, 2));
}

const llhttp = LlhttpOracle.start();
const hyper = hyperEvery > 0 ? HyperOracle.start() : null;
const deadline = Date.now() + seconds * 1000;
try {
  for (let round = 0; Date.now() < deadline; round++) {
    for (const [i, [name, arb]] of properties.entries()) {
      const cases = sample(arb, (seed + round * 7919 + i * 104729) | 0, BATCH);
      const r = await checkWithLlhttp(llhttp, cases);
      counts.set(name, (counts.get(name) ?? 0) + r.cases);
      r.disagreements.forEach(report);
      tally(r.explained);
    }
    if (hyper !== null) {
      const cases = [
        ...sample(requestCaseArb, (seed + round * 7919 + 31) | 0, HYPER_BATCH),
        ...sample(chunkedCaseArb, (seed + round * 7919 + 37) | 0, HYPER_BATCH / 2),
      ];
      const r = await checkWithHyper(hyper, cases);
      counts.set("request/hyper", (counts.get("request/hyper") ?? 0) + r.cases);
      r.disagreements.forEach(report);
      tally(r.explained);
    }
  }
} finally {
  await hyper?.close();
  await llhttp.close();
}
for (const [name, n] of counts) out(`${name}: ${n} cases`);
for (const [id, n] of [...explained].sort((a, b) => b[1] - a[1])) {
  out(`  explained by ${id}: ${n}`);
}
out(`${found} disagreement(s) not in the divergence table`);
Deno.exit(found > 0 ? 1 : 0);
