/**
 * The Prometheus project's own text-format parser (github.com/prometheus/
 * common/expfmt), as a small Go helper (tests/tools/promparse/main.go) built
 * into ~/.cache/keda-http-deno when its sources change, never into the
 * checkout. parseExposition() feeds it a scrape and returns the families it
 * read, or throws with the parser's error.
 */

import { buildGoTool } from "./go_tool.ts";

const SRC_DIR = new URL("./promparse/", import.meta.url).pathname;

/** One metric family as the parser read it. */
export interface ParsedFamily {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string;
  /** Label names over all its series, sorted, without le and quantile. */
  labels: string[];
  /** A histogram's bucket upper bounds, without +Inf. */
  buckets?: number[];
  series: number;
}

let built: Promise<string> | undefined;

/** The helper binary, built (once per process, and only when its sources changed). */
export function buildPromparse(): Promise<string> {
  return built ??= build();
}

function build(): Promise<string> {
  return buildGoTool({
    name: "promparse",
    srcDir: SRC_DIR,
    what: "tests/tools/promparse",
    needs: "github.com/prometheus/common",
  });
}

/** Parses a text exposition with expfmt; throws with the parser's message when it is invalid. */
export async function parseExposition(text: string): Promise<ParsedFamily[]> {
  const bin = await buildPromparse();
  const child = new Deno.Command(bin, { stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  if (!out.success) {
    throw new Error(
      `expfmt rejected the exposition: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
  return JSON.parse(new TextDecoder().decode(out.stdout)) as ParsedFamily[];
}
