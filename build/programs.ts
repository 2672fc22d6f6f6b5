/**
 * The three programs and their permissions, read from the run tasks in
 * deno.json so `deno task <program>`, `deno compile` and the node agent all
 * grant exactly the same permissions.
 */

export const PROGRAMS = ["interceptor", "scaler", "operator"] as const;
export type Program = typeof PROGRAMS[number];

export interface ProgramSpec {
  name: Program;
  entry: string;
  /** Permission (and --unstable-*) flags, e.g. ["--allow-net", "--allow-env", "--allow-read"]. */
  permissions: string[];
}

const ROOT = new URL("../", import.meta.url);

export function repoPath(rel: string): string {
  return new URL(rel, ROOT).pathname;
}

/** Parses `deno run <flags> <program>/main.ts` out of deno.json's tasks. */
export function programSpecs(): ProgramSpec[] {
  const config = JSON.parse(Deno.readTextFileSync(repoPath("deno.json"))) as {
    tasks?: Record<string, string>;
  };
  return PROGRAMS.map((name) => {
    const task = config.tasks?.[name];
    const entry = `${name}/main.ts`;
    if (!task || !task.includes(entry)) {
      throw new Error(
        `deno.json: task "${name}" must run ${entry} (deno run <permissions> ${entry})`,
      );
    }
    const words = task.slice(0, task.indexOf(entry)).trim().split(/\s+/);
    // Permission flags, the unstable APIs the program opts into, and memory
    // flags (the interceptor caps its young generation and skips the V8 code
    // cache, a database mapped into memory, to keep RSS low).
    const permissions = words.filter((w) =>
      w.startsWith("--allow-") || w.startsWith("--deny-") || w.startsWith("--unstable") ||
      w.startsWith("--v8-flags=") || w === "--no-code-cache"
    );
    if (permissions.some((p) => p === "--allow-all" || p === "-A")) {
      throw new Error(`deno.json: task "${name}" must list explicit permissions, not -A`);
    }
    return { name, entry, permissions };
  });
}
