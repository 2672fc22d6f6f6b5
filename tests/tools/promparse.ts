/**
 * The Prometheus project's own text-format parser (github.com/prometheus/
 * common/expfmt), as a small Go helper (tests/tools/promparse/main.go) built
 * into ~/.cache/keda-http-deno when its sources change, never into the
 * checkout. parseExposition() feeds it a scrape and returns the families it
 * read, or throws with the parser's error.
 */

const SRC_DIR = new URL("./promparse/", import.meta.url).pathname;
const CACHE_DIR = `${Deno.env.get("HOME") ?? "/root"}/.cache/keda-http-deno`;

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

async function goBinary(): Promise<string> {
  const out = await new Deno.Command("sh", { args: ["-c", "command -v go"], stdout: "piped" })
    .output();
  const p = new TextDecoder().decode(out.stdout).trim();
  return out.success && p ? p : "/usr/local/go/bin/go";
}

let built: Promise<string> | undefined;

/** The helper binary, built (once per process, and only when its sources changed). */
export function buildPromparse(): Promise<string> {
  return built ??= build();
}

async function build(): Promise<string> {
  const bin = `${CACHE_DIR}/promparse`;
  const stamp = `${bin}.sha256`;
  const parts: Uint8Array[] = [];
  for (const f of ["go.mod", "go.sum", "main.go"]) {
    parts.push(new TextEncoder().encode(`${f}\n`), await Deno.readFile(SRC_DIR + f));
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) all.set(p, (at += p.length) - p.length);
  const hash = [...new Uint8Array(await crypto.subtle.digest("SHA-256", all))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const have = await Deno.readTextFile(stamp).catch(() => "");
  const exists = await Deno.stat(bin).then(() => true, () => false);
  if (have.trim() === hash && exists) return bin;
  await Deno.mkdir(CACHE_DIR, { recursive: true });
  const go = await goBinary();
  const tmp = `${bin}.${Deno.pid}.tmp`;
  const r = await new Deno.Command(go, {
    args: ["build", "-o", tmp, "."],
    cwd: SRC_DIR,
    env: { CGO_ENABLED: "0", GOFLAGS: "-mod=mod" },
    stdout: "piped",
    stderr: "piped",
  }).output().catch((e) => {
    throw new Error(
      `cannot run ${go} to build tests/tools/promparse (${e}): install Go >= 1.24 or put go on PATH`,
    );
  });
  if (!r.success) {
    throw new Error(
      `building tests/tools/promparse with ${go} failed (it needs github.com/prometheus/common from the module proxy):\n${
        new TextDecoder().decode(r.stderr)
      }`,
    );
  }
  await Deno.rename(tmp, bin);
  await Deno.writeTextFile(stamp, hash + "\n");
  return bin;
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
