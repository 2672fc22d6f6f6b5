/**
 * `deno task check` step: fails when the modules of the three programs (and
 * any extra entry points given as arguments) import each other in a cycle,
 * type-only imports included. A cycle means two modules share one rule's
 * ownership; move the shared part into a leaf module instead.
 */
import { PROGRAMS, repoPath } from "./programs.ts";

interface InfoModule {
  specifier: string;
  dependencies?: Array<{ code?: { specifier?: string }; type?: { specifier?: string } }>;
}

/** Local (file:) module graph as `deno info --json` reports it. */
async function graphOf(entry: string): Promise<Map<string, string[]>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno info ${entry} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: InfoModule[] };
  const graph = new Map<string, string[]>();
  for (const m of info.modules) {
    if (!m.specifier.startsWith("file:")) continue;
    const deps: string[] = [];
    for (const d of m.dependencies ?? []) {
      for (const s of [d.code?.specifier, d.type?.specifier]) {
        if (s?.startsWith("file:") && !deps.includes(s)) deps.push(s);
      }
    }
    graph.set(m.specifier, deps);
  }
  return graph;
}

/** Every cycle found by a depth-first walk, each as the modules along it. */
export function cyclesOf(graph: Map<string, string[]>): string[][] {
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (u: string) => {
    state.set(u, 1);
    stack.push(u);
    for (const v of graph.get(u) ?? []) {
      if (state.get(v) === 1) cycles.push([...stack.slice(stack.indexOf(v)), v]);
      else if (!state.has(v)) visit(v);
    }
    stack.pop();
    state.set(u, 2);
  };
  for (const u of graph.keys()) if (!state.has(u)) visit(u);
  return cycles;
}

if (import.meta.main) {
  const entries = [...PROGRAMS.map((p) => repoPath(`${p}/main.ts`)), ...Deno.args];
  const root = repoPath("");
  const seen = new Set<string>();
  let found = 0;
  for (const entry of entries) {
    for (const cycle of cyclesOf(await graphOf(entry))) {
      const text = cycle.map((s) => new URL(s).pathname.replace(root, "")).join(" -> ");
      if (seen.has(text)) continue;
      seen.add(text);
      found++;
      Deno.stderr.writeSync(new TextEncoder().encode(`import cycle: ${text}\n`));
    }
  }
  if (found > 0) {
    Deno.stderr.writeSync(
      new TextEncoder().encode(
        `${found} import cycle(s); move what both modules need into a leaf module\n`,
      ),
    );
    Deno.exit(1);
  }
}
