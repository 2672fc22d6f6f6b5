/**
 * What every benchmark entry point shares: numeric flags from the command
 * line, and result lines written to stdout (the figures are the output).
 */
const enc = new TextEncoder();

/** One result line on stdout. */
export const out = (s = ""): void => {
  Deno.stdout.writeSync(enc.encode(s + "\n"));
};

/** `--name=N` (a positive number), `--name` alone (def, or 1), or def when absent. */
export function flag(name: string, def: number): number;
export function flag(name: string, def: undefined): number | undefined;
export function flag(name: string, def: number | undefined): number | undefined {
  for (const a of Deno.args) {
    if (a === `--${name}`) return def ?? 1;
    if (a.startsWith(`--${name}=`)) {
      const v = Number(a.slice(name.length + 3));
      if (!Number.isFinite(v) || v <= 0) {
        throw new Error(`--${name} must be a positive number, got "${a}"`);
      }
      return v;
    }
  }
  return def;
}
