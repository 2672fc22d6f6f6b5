/**
 * Structured logger. One line per record on stderr, by default a JSON object:
 * {"ts":"...","level":"info","component":"interceptor","msg":"...", ...fields};
 * with format "console" (zap's console encoder, which the Go add-on's Helm
 * chart selects) `ts<TAB>LEVEL<TAB>msg<TAB>{fields}`.
 *
 * std/log was removed from Deno's std in 2025; this is the project's only
 * place allowed to write to the console (deno.json lints no-console elsewhere).
 */

export type Level = "debug" | "info" | "warn" | "error";

const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

/** Where log lines go; tests swap it to capture output. */
export type Sink = (line: string) => void;

const encoder = new TextEncoder();
const stderrSink: Sink = (line) => {
  try {
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  } catch {
    // A closed stderr must never crash a program.
  }
};

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** A logger whose lines all carry these fields too. */
  with(fields: Fields): Logger;
  enabled(level: Level): boolean;
}

export type LogFormat = "json" | "console";

/** zap's time encodings (--zap-time-encoding); ours is iso8601 with milliseconds. */
export const TIME_ENCODINGS = [
  "epoch",
  "millis",
  "nano",
  "iso8601",
  "rfc3339",
  "rfc3339nano",
] as const;
export type TimeEncoding = typeof TIME_ENCODINGS[number];

export interface LoggerOptions {
  level?: Level;
  sink?: Sink;
  fields?: Fields;
  /** Default json. */
  format?: LogFormat;
  /** How "ts" is written; default iso8601 (UTC, milliseconds). */
  timeEncoding?: TimeEncoding;
}

/** The settings a program's flags or environment choose for its logger. */
export interface LogSettings {
  level?: Level;
  format?: LogFormat;
  timeEncoding?: TimeEncoding;
}

/** Parses a format name; throws with the accepted names when it is not one. */
export function parseFormat(value: string): LogFormat {
  const v = value.trim().toLowerCase();
  if (v === "json" || v === "console") return v;
  throw new Error(`log format "${value}" is not one of json, console`);
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** Local-time offset as zap writes it: Z for UTC, else +hh:mm. */
function offsetOf(d: Date): string {
  const m = -d.getTimezoneOffset();
  if (m === 0) return "Z";
  const a = Math.abs(m);
  return `${m > 0 ? "+" : "-"}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

function localStamp(d: Date, fraction: string): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${
    pad(d.getMinutes())
  }:${pad(d.getSeconds())}${fraction}${offsetOf(d)}`;
}

/** The "ts" value in a time encoding; numbers for the epoch ones, as zap writes them. */
export function encodeTime(d: Date, encoding: TimeEncoding = "iso8601"): string | number {
  const ms = d.getTime();
  switch (encoding) {
    case "epoch":
      return ms / 1000;
    case "millis":
      return ms;
    case "nano":
      // Only millisecond precision is known; the number keeps zap's unit.
      return ms * 1_000_000;
    case "rfc3339":
      return localStamp(d, "");
    case "rfc3339nano":
      return localStamp(d, `.${pad(d.getMilliseconds(), 3)}`.replace(/\.?0+$/, ""));
    case "iso8601":
      return d.toISOString();
  }
}

/** Parses a level name; throws with the accepted names when it is not one. */
export function parseLevel(value: string): Level {
  const v = value.trim().toLowerCase();
  if (v === "debug" || v === "info" || v === "warn" || v === "error") return v;
  throw new Error(`log level "${value}" is not one of debug, info, warn, error`);
}

function errorFields(value: unknown): unknown {
  if (value instanceof Error) {
    return {
      name: value.name,
      message: value.message,
      ...(value.cause ? { cause: String(value.cause) } : {}),
    };
  }
  return value;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const min = ORDER[options.level ?? "info"];
  const sink = options.sink ?? stderrSink;
  const base = options.fields ?? {};
  const format = options.format ?? "json";
  const emit = (level: Level, msg: string, fields?: Fields) => {
    if (ORDER[level] < min) return;
    const ts = encodeTime(new Date(), options.timeEncoding);
    const rest: Fields = { ...base };
    if (fields) { for (const [k, v] of Object.entries(fields)) rest[k] = errorFields(v); }
    let extra: string;
    try {
      extra = JSON.stringify(rest);
    } catch {
      extra = JSON.stringify({ ...base, note: "fields not serialisable" });
    }
    if (format === "console") {
      sink(`${ts}\t${level.toUpperCase()}\t${msg}${extra === "{}" ? "" : `\t${extra}`}`);
      return;
    }
    // JSON.stringify of a string or number cannot throw; "rest" was checked above.
    sink(
      `{"ts":${JSON.stringify(ts)},"level":"${level}","msg":${JSON.stringify(msg)}${
        extra === "{}" ? "" : `,${extra.slice(1, -1)}`
      }}`,
    );
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    with: (fields) => createLogger({ ...options, sink, fields: { ...base, ...fields } }),
    enabled: (level) => ORDER[level] >= min,
  };
}

/**
 * Logger for a component from LOG_LEVEL (default info) and LOG_FORMAT
 * (json or console, default json); `settings` (e.g. from --zap-* flags)
 * override both.
 */
export function loggerFromEnv(component: string, sink?: Sink, settings: LogSettings = {}): Logger {
  const bad: string[] = [];
  const fromEnv = <T>(name: string, parse: (raw: string) => T, def: T): T => {
    const raw = Deno.env.get(name);
    if (!raw) return def;
    try {
      return parse(raw);
    } catch (e) {
      bad.push(`${name} ignored: ${(e as Error).message}; using ${def}`);
      return def;
    }
  };
  const level = settings.level ?? fromEnv<Level>("LOG_LEVEL", parseLevel, "info");
  const format = settings.format ?? fromEnv<LogFormat>("LOG_FORMAT", parseFormat, "json");
  const log = createLogger({
    level,
    format,
    timeEncoding: settings.timeEncoding,
    sink,
    fields: { component },
  });
  for (const b of bad) log.warn(b);
  return log;
}
