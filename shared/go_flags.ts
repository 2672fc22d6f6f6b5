/**
 * Command-line flags as Go's `flag` package reads them, so the Go add-on's
 * Helm chart can start our programs with the arguments it passes to the Go
 * binaries: `-name` or `--name`, a value as `--name=value` or `--name value`,
 * a bool as `--name` (true) or `--name=false` (never `--name false`), `--`
 * ends the flags, the last of a repeated flag wins. Pure: the arguments in,
 * typed values or a FlagError out.
 *
 * Also the zap flags of controller-runtime (--zap-log-level, ...), which the
 * chart passes to every program, mapped onto our logger's settings.
 */
import type { Level, LogFormat, LogSettings, TimeEncoding } from "./log.ts";
import { parseFormat, TIME_ENCODINGS } from "./log.ts";

export interface FlagSpec {
  /** Without dashes, e.g. "leader-elect". */
  name: string;
  bool?: boolean;
  /** One line for the list of accepted flags. */
  help: string;
}

export class FlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FlagError";
  }
}

const TRUE = new Set(["1", "t", "T", "TRUE", "true", "True"]);
const FALSE = new Set(["0", "f", "F", "FALSE", "false", "False"]);

/** The accepted flags, one per line, for error messages and --help. */
export function describeFlags(specs: readonly FlagSpec[]): string {
  return specs.map((s) => `  --${s.name}${s.bool ? "[=true|false]" : "=<value>"}  ${s.help}`)
    .join("\n");
}

/**
 * Reads `args` against `specs`. Returns the raw value of each flag given
 * ("true"/"false" for bools), keyed by name. Throws FlagError naming the
 * flag for an unknown flag (listing the accepted ones), a missing value, a
 * bad bool or a stray argument. `-h`/`--help` returns { help: "true" }.
 */
export function parseGoFlags(
  args: readonly string[],
  specs: readonly FlagSpec[],
): Record<string, string> {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      if (i + 1 < args.length) {
        throw new FlagError(
          `unexpected argument "${args[i + 1]}" after "--": this program takes flags only`,
        );
      }
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      throw new FlagError(
        `unexpected argument "${arg}": this program takes flags only (--name=value); accepted:\n${
          describeFlags(specs)
        }`,
      );
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    if (name === "h" || name === "help") {
      out.help = "true";
      continue;
    }
    const spec = byName.get(name);
    if (!spec) {
      throw new FlagError(`unknown flag --${name}; accepted flags:\n${describeFlags(specs)}`);
    }
    if (spec.bool) {
      const raw = eq < 0 ? "true" : body.slice(eq + 1);
      if (TRUE.has(raw)) out[name] = "true";
      else if (FALSE.has(raw)) out[name] = "false";
      else {
        throw new FlagError(
          `flag --${name}: "${raw}" is not a boolean; use --${name}, --${name}=true or --${name}=false`,
        );
      }
      continue;
    }
    if (eq >= 0) out[name] = body.slice(eq + 1);
    else if (i + 1 < args.length) out[name] = args[++i]!;
    else throw new FlagError(`flag --${name} needs a value: --${name}=<value>`);
  }
  return out;
}

// ---------------------------------------------------------------------------
// zap (sigs.k8s.io/controller-runtime/pkg/log/zap)

export const ZAP_FLAGS: readonly FlagSpec[] = [
  {
    name: "zap-devel",
    bool: true,
    help: "development defaults: console format, debug level (other --zap-* flags still win)",
  },
  { name: "zap-encoder", help: "log format: json or console" },
  {
    name: "zap-log-level",
    help: "debug, info, error, panic, or an integer > 0 (more verbose: our debug)",
  },
  {
    name: "zap-stacktrace-level",
    help: "info, error or panic; accepted, no effect (our lines carry no Go stack traces)",
  },
  { name: "zap-time-encoding", help: `time format: ${TIME_ENCODINGS.join(", ")}` },
];

/** What the zap flags given ask of our logger, plus notes to log once it exists. */
export interface ZapSettings {
  log: LogSettings;
  notes: string[];
}

function zapLevel(raw: string): Level {
  const v = raw.trim().toLowerCase();
  if (v === "debug" || v === "info" || v === "error") return v;
  // Nothing of ours logs at panic; error lines stay, since they say why a program stops.
  if (v === "panic") return "error";
  // An integer n > 0 is zap's V(n) verbosity: more than info, i.e. our debug.
  if (/^\d+$/.test(v) && Number(v) > 0) return "debug";
  throw new FlagError(
    `flag --zap-log-level: "${raw}" is not a level; use debug, info, error, panic or an integer > 0`,
  );
}

/** Maps the zap flags found by parseGoFlags onto our logger; throws FlagError on a bad value. */
export function zapSettings(flags: Record<string, string>): ZapSettings {
  const log: LogSettings = {};
  const notes: string[] = [];
  if (flags["zap-devel"] === "true") {
    log.level = "debug";
    log.format = "console";
  }
  const level = flags["zap-log-level"];
  if (level !== undefined) {
    log.level = zapLevel(level);
    if (level.trim().toLowerCase() === "panic") {
      notes.push(
        "--zap-log-level=panic: nothing here logs at panic; only error lines are written",
      );
    }
  }
  const encoder = flags["zap-encoder"];
  if (encoder !== undefined) {
    try {
      log.format = parseFormat(encoder) as LogFormat;
    } catch {
      throw new FlagError(`flag --zap-encoder: "${encoder}" is not one of json, console`);
    }
  }
  const time = flags["zap-time-encoding"];
  if (time !== undefined) {
    if (!(TIME_ENCODINGS as readonly string[]).includes(time)) {
      throw new FlagError(
        `flag --zap-time-encoding: "${time}" is not one of ${TIME_ENCODINGS.join(", ")}`,
      );
    }
    log.timeEncoding = time as TimeEncoding;
  }
  const stack = flags["zap-stacktrace-level"];
  if (stack !== undefined) {
    if (!["info", "error", "panic"].includes(stack.trim().toLowerCase())) {
      throw new FlagError(
        `flag --zap-stacktrace-level: "${stack}" is not one of info, error, panic`,
      );
    }
    notes.push(
      `--zap-stacktrace-level=${stack} ignored: our log lines carry the error's message, not Go stack traces`,
    );
  }
  return { log, notes };
}

// ---------------------------------------------------------------------------
// Variables a Go install sets that a program accepts without using

export interface IgnoredVar {
  /** Why it is not used, and what to use instead. */
  why: string;
  /** Whether the value asks for something (then a warn line); default: not off/false/0/empty. */
  asks?: (value: string, env: Record<string, string | undefined>) => boolean;
}

/** Values that ask for nothing, so ignoring them is only worth an info line. */
const OFF = new Set(["", "0", "f", "false"]);

export const isOn = (v: string | undefined): boolean => !OFF.has((v ?? "").trim().toLowerCase());

/** One line per ignored variable that is set: warn when it asks for something we do not do. */
export function ignoredEnvLines(
  table: Record<string, IgnoredVar>,
  env: Record<string, string | undefined>,
): Array<{ level: "info" | "warn"; msg: string }> {
  const out: Array<{ level: "info" | "warn"; msg: string }> = [];
  for (const [name, { why, asks }] of Object.entries(table)) {
    const v = env[name];
    if (v === undefined) continue;
    const level = (asks ? asks(v, env) : isOn(v)) ? "warn" : "info";
    out.push({ level, msg: `${name}="${v}" ignored: ${why}` });
  }
  return out;
}
