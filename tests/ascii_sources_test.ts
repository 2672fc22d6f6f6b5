import assert from "node:assert/strict";

/**
 * V8 keeps each module's source (with Deno's inline source map) in memory, as
 * one byte per char only when all of it is Latin-1; one arrow in a comment
 * doubles it. For the interceptor's modules that was a measurable share of
 * its idle memory budget, so its runtime sources stay ASCII (write "->", "\u00b5").
 */
Deno.test("sources: the interceptor's runtime modules (interceptor/, shared/) are ASCII", async () => {
  const root = new URL("../", import.meta.url);
  const offending: string[] = [];
  for (const dir of ["interceptor", "shared"]) {
    for await (const e of Deno.readDir(new URL(`${dir}/`, root))) {
      if (!e.isFile || !e.name.endsWith(".ts")) continue;
      if (e.name.endsWith("_test.ts") || e.name.endsWith("_testing.ts")) continue;
      const text = await Deno.readTextFile(new URL(`${dir}/${e.name}`, root));
      text.split("\n").forEach((line, i) => {
        // deno-lint-ignore no-control-regex -- the range is the point
        const m = /[^\x00-\x7f]/.exec(line);
        if (m) offending.push(`${dir}/${e.name}:${i + 1}: ${JSON.stringify(m[0])}`);
      });
    }
  }
  assert.deepEqual(offending, [], "replace these characters with ASCII or \\u escapes");
});
