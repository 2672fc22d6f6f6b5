/**
 * Go-style durations ("300ms", "1m30s", "1.5h"), the format the Go add-on and
 * KEDA use in env vars and in metav1.Duration fields.
 */

// Nanoseconds per unit; summing in ns keeps sub-millisecond values exact.
const UNIT_NS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  "\u00b5s": 1e3,
  "\u03bcs": 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

const PART = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/;

/** Parses a Go duration into milliseconds; throws with an example when malformed. */
export function parseDuration(input: string): number {
  const text = input.trim();
  if (text === "0") return 0;
  let rest = text;
  let sign = 1;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    sign = rest.startsWith("-") ? -1 : 1;
    rest = rest.slice(1);
  }
  if (rest === "") {
    throw new Error(
      `"${input}" is not a duration: use a number with a unit, e.g. 500ms, 30s, 1m30s`,
    );
  }
  let total = 0;
  while (rest.length > 0) {
    const m = PART.exec(rest);
    if (!m) {
      throw new Error(
        `"${input}" is not a duration: use a number with a unit (ns, us, ms, s, m, h), e.g. 500ms, 30s, 1m30s`,
      );
    }
    total += Number(m[1]) * UNIT_NS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return (sign * total) / 1e6;
}

/** Formats milliseconds the way Go prints a time.Duration (e.g. 1m30s, 500ms). */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  const neg = ms < 0;
  let rest = Math.abs(ms);
  if (rest < 1000) return `${neg ? "-" : ""}${+rest.toFixed(3)}ms`;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = +(rest / 1000).toFixed(3);
  return `${neg ? "-" : ""}${h ? `${h}h` : ""}${h || m ? `${m}m` : ""}${s}s`;
}
