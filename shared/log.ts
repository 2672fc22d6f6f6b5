/**
 * Structured JSON-lines logger. One object per line on stderr:
 * {"ts":"...","level":"info","component":"interceptor","msg":"...", ...fields}.
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

export interface LoggerOptions {
  level?: Level;
  sink?: Sink;
  fields?: Fields;
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
  const emit = (level: Level, msg: string, fields?: Fields) => {
    if (ORDER[level] < min) return;
    const record: Fields = { ts: new Date().toISOString(), level, msg, ...base };
    if (fields) { for (const [k, v] of Object.entries(fields)) record[k] = errorFields(v); }
    let line: string;
    try {
      line = JSON.stringify(record);
    } catch {
      line = JSON.stringify({
        ts: record.ts,
        level,
        msg,
        ...base,
        note: "fields not serialisable",
      });
    }
    sink(line);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    with: (fields) => createLogger({ level: options.level, sink, fields: { ...base, ...fields } }),
    enabled: (level) => ORDER[level] >= min,
  };
}

/** Logger from LOG_LEVEL (default info) for a component. */
export function loggerFromEnv(component: string, sink?: Sink): Logger {
  const raw = Deno.env.get("LOG_LEVEL");
  let level: Level = "info";
  let bad: string | undefined;
  if (raw) {
    try {
      level = parseLevel(raw);
    } catch (e) {
      bad = (e as Error).message;
    }
  }
  const log = createLogger({ level, sink, fields: { component } });
  if (bad) log.warn(`LOG_LEVEL ignored: ${bad}; using info`);
  return log;
}
