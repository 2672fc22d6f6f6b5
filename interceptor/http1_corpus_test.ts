/**
 * The smuggling corpus (testdata/http1_corpus/*.json): one test per case,
 * named after it. Each case is a message (its bytes are the char codes of a
 * JSON string), what our parser must do with it, and why. Disagreements the
 * oracle tests or `deno task fuzz` find are saved here, so they stay fixed.
 */
import assert from "node:assert/strict";
import { type CorpusCase, judge, unmet } from "./http1_generators_testing.ts";

const DIR = new URL("./testdata/http1_corpus/", import.meta.url);
const KINDS = new Set(["request", "response", "chunked"]);
const ACCEPT_KEYS = new Set([
  "method",
  "path",
  "host",
  "contentLength",
  "chunked",
  "body",
  "simple",
]);

function load(file: string): CorpusCase {
  const c = JSON.parse(Deno.readTextFileSync(new URL(file, DIR))) as CorpusCase;
  // A malformed case would pass or fail for the wrong reason: check its shape first.
  assert.equal(`${c.name}.json`, file, "a case's file is named after it");
  assert.ok(typeof c.why === "string" && c.why.length > 0 && !c.why.includes("\n"), "why");
  assert.ok(KINDS.has(c.kind), `kind ${c.kind}`);
  assert.ok(typeof c.bytes === "string" && [...c.bytes].every((ch) => ch.charCodeAt(0) < 256));
  if ("reject" in c.expect) assert.ok(Number.isInteger(c.expect.reject), "expect.reject");
  else {
    assert.ok(typeof c.expect.accept === "object", "expect: reject or accept");
    for (const k of Object.keys(c.expect.accept)) {
      assert.ok(ACCEPT_KEYS.has(k), `expect.accept.${k}`);
    }
  }
  return c;
}

const files = [...Deno.readDirSync(DIR)]
  .filter((e) => e.isFile && e.name.endsWith(".json"))
  .map((e) => e.name)
  .sort();

Deno.test("corpus: the smuggling corpus has its classic cases", () => {
  assert.ok(files.length >= 40, `only ${files.length} cases`);
});

for (const file of files) {
  Deno.test(`corpus: ${file.replace(/\.json$/, "")}`, () => {
    const c = load(file);
    const why = unmet(c, judge(c));
    if (why !== null) {
      assert.fail(`${c.name} (${c.why}): ${why}\n  bytes ${JSON.stringify(c.bytes)}`);
    }
  });
}
