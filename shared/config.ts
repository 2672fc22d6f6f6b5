/**
 * Env config parsing: one zod schema per program over the raw environment.
 * Every missing or invalid variable is reported at once, by name, with what
 * is accepted. Booleans accept Go's strconv.ParseBool spellings only (never
 * z.coerce.boolean, which turns "false" into true).
 *
 * Each program's schema is built by a function, when that program parses its
 * config, not at module load: a program then pays only for its own schema
 * (the interceptor never needs the scaler's or the operator's), and the
 * schema is garbage once parsed.
 */
import { z } from "./zod.ts";
import { parseDuration } from "./duration.ts";
import {
  checkCipherSuites,
  checkCurves,
  checkVersions,
  TLS_VERSIONS,
  type TlsVersion,
} from "./tls_options.ts";

type Parse<T> = (raw: string) => T;

/** A variable with a default used when it is unset or empty. */
function envVar<T>(def: T | undefined, parse: Parse<T>) {
  return z.pipe(
    z.optional(z.string()),
    z.transform((raw: string | undefined, ctx): T => {
      // zod/mini's transform context has no addIssue (classic zod's adds one);
      // pushing the issue is what addIssue did.
      if (raw === undefined || raw.trim() === "") {
        if (def === undefined) {
          ctx.issues.push({ code: "custom", message: "is required but not set", input: raw });
          return z.NEVER;
        }
        return def;
      }
      try {
        return parse(raw.trim());
      } catch (e) {
        ctx.issues.push({ code: "custom", message: (e as Error).message, input: raw });
        return z.NEVER;
      }
    }),
  );
}

function parsePort(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > 65535) {
    throw new Error(`"${raw}" is not a port: use a whole number from 1 to 65535`);
  }
  return n;
}

function parseNonNegInt(raw: string): number {
  if (!/^\d+$/.test(raw)) throw new Error(`"${raw}" is not a whole number of 0 or more`);
  return Number(raw);
}

const TRUE = new Set(["1", "t", "T", "TRUE", "true", "True"]);
const FALSE = new Set(["0", "f", "F", "FALSE", "false", "False"]);

function parseBool(raw: string): boolean {
  if (TRUE.has(raw)) return true;
  if (FALSE.has(raw)) return false;
  throw new Error(`"${raw}" is not a boolean: use true or false`);
}

function parseNonNegDuration(raw: string): number {
  const ms = parseDuration(raw);
  if (ms < 0) throw new Error(`"${raw}" must not be negative`);
  return ms;
}

export const env = {
  port: (def?: number) => envVar(def, parsePort),
  int: (def?: number) => envVar(def, parseNonNegInt),
  bool: (def?: boolean) => envVar(def, parseBool),
  /** A Go duration, in milliseconds. */
  duration: (def?: string) =>
    envVar(def === undefined ? undefined : parseDuration(def), parseNonNegDuration),
  string: (def?: string) => envVar(def, (s) => s),
  /** Comma-separated list, empty items dropped. */
  list: (def: string[] = []) =>
    envVar(def, (s) => s.split(",").map((x) => x.trim()).filter((x) => x !== "")),
  enumOf: <T extends string>(values: readonly T[], def?: T) =>
    envVar<T>(def, (s) => {
      if (!(values as readonly string[]).includes(s)) {
        throw new Error(`"${s}" is not one of ${values.join(", ")}`);
      }
      return s as T;
    }),
};

/** "" when unset; otherwise a version Go HEAD accepts. */
function tlsVersion() {
  return envVar<TlsVersion | "">("", (s) => {
    if (!(TLS_VERSIONS as readonly string[]).includes(s)) {
      throw new Error(`"${s}" is not a TLS version: use ${TLS_VERSIONS.join(" or ")}`);
    }
    return s as TlsVersion;
  });
}

/** Go HEAD's default certificate, used when the path variables are unset. */
export const DEFAULT_TLS_CERT_PATH = "/certs/tls.crt";
export const DEFAULT_TLS_KEY_PATH = "/certs/tls.key";

function fileProblem(path: string): string | null {
  try {
    if (!Deno.statSync(path).isFile) return `${path} is not a file`;
    return null;
  } catch (e) {
    return `cannot read ${path}: ${(e as Error).message}`;
  }
}

/**
 * The default certificate's files. Unset variables mean Go's defaults; when
 * those files are missing the cert store alone serves (Go would fail to
 * start), and with no store either that is the start error.
 */
function resolveCertPaths(certRaw: string, keyRaw: string, storePaths: string[]): {
  certPath: string;
  keyPath: string;
  problems: Array<[string, string]>;
} {
  const certPath = certRaw || DEFAULT_TLS_CERT_PATH;
  const keyPath = keyRaw || DEFAULT_TLS_KEY_PATH;
  const problems: Array<[string, string]> = [];
  const certProblem = fileProblem(certPath);
  const keyProblem = fileProblem(keyPath);
  if (certRaw !== "" || keyRaw !== "") {
    if (certProblem) problems.push(["KEDA_HTTP_PROXY_TLS_CERT_PATH", certProblem]);
    if (keyProblem) problems.push(["KEDA_HTTP_PROXY_TLS_KEY_PATH", keyProblem]);
    return { certPath, keyPath, problems };
  }
  if (!certProblem && !keyProblem) return { certPath, keyPath, problems };
  if (storePaths.length > 0) return { certPath: "", keyPath: "", problems };
  problems.push([
    "KEDA_HTTP_PROXY_TLS_ENABLED",
    `TLS is enabled but no certificate is configured: the default ${DEFAULT_TLS_CERT_PATH} and ${DEFAULT_TLS_KEY_PATH} are missing (${
      certProblem ?? keyProblem
    }); mount them there, set KEDA_HTTP_PROXY_TLS_CERT_PATH and KEDA_HTTP_PROXY_TLS_KEY_PATH, or set KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS`,
  ]);
  return { certPath: "", keyPath: "", problems };
}

function certPathsOf(enabled: boolean, e: {
  KEDA_HTTP_PROXY_TLS_CERT_PATH: string;
  KEDA_HTTP_PROXY_TLS_KEY_PATH: string;
  KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS: string[];
}): { certPath: string; keyPath: string } {
  if (!enabled) return { certPath: "", keyPath: "" };
  const { certPath, keyPath } = resolveCertPaths(
    e.KEDA_HTTP_PROXY_TLS_CERT_PATH,
    e.KEDA_HTTP_PROXY_TLS_KEY_PATH,
    e.KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS,
  );
  return { certPath, keyPath };
}

/**
 * Go's Prometheus exporter settings (pkg/observability/config.go), the same
 * in all three programs: enabled by default, on its own port 2223, path
 * /metrics.
 */
function promExporterEnv() {
  return {
    OTEL_PROM_EXPORTER_ENABLED: env.bool(true),
    OTEL_PROM_EXPORTER_PORT: env.port(2223),
  };
}

interface PromExporterEnv {
  OTEL_PROM_EXPORTER_ENABLED: boolean;
  OTEL_PROM_EXPORTER_PORT: number;
}

/** The Prometheus port, when enabled, must differ from the program's other ports. */
function checkPromPort(
  e: PromExporterEnv,
  others: Record<string, number | undefined>,
  ctx: { addIssue(issue: { code: "custom"; path: string[]; message: string }): void },
): void {
  if (!e.OTEL_PROM_EXPORTER_ENABLED) return;
  for (const [name, port] of Object.entries(others)) {
    if (port !== e.OTEL_PROM_EXPORTER_PORT) continue;
    ctx.addIssue({
      code: "custom",
      path: ["OTEL_PROM_EXPORTER_PORT"],
      message:
        `must differ from ${name} (${port}): both would listen on it; set another port, or OTEL_PROM_EXPORTER_ENABLED=false`,
    });
  }
}

function promExporterOf(e: PromExporterEnv): { enabled: boolean; port: number } {
  return { enabled: e.OTEL_PROM_EXPORTER_ENABLED, port: e.OTEL_PROM_EXPORTER_PORT };
}

/**
 * OpenTelemetry traces (Go HEAD: pkg/observability/config.go), in the
 * interceptor and the scaler: off by default; the exporters read the SDK's
 * standard OTEL_EXPORTER_OTLP_* endpoint and header variables themselves.
 */
export const TRACES_PROTOCOLS = ["console", "http/protobuf", "grpc"] as const;
export const TRACES_SAMPLERS = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
] as const;

function tracingEnv() {
  return {
    OTEL_EXPORTER_OTLP_TRACES_ENABLED: env.bool(false),
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: env.enumOf(TRACES_PROTOCOLS, "console"),
    OTEL_TRACES_SAMPLER: env.enumOf(TRACES_SAMPLERS, "parentbased_always_on"),
    // -1: unset (a ratio sampler then keeps every trace).
    OTEL_TRACES_SAMPLER_ARG: envVar<number>(-1, (s) => {
      const n = Number(s);
      if (!Number.isFinite(n) || n < 0 || n > 1) {
        throw new Error(`"${s}" is not a sampling ratio: use a number from 0 to 1`);
      }
      return n;
    }),
    OTEL_SERVICE_NAME: env.string(""),
    // The SDK's batch delay (the spec's variable, in ms): spans are exported this often.
    OTEL_BSP_SCHEDULE_DELAY: env.int(5_000),
  };
}

interface TracingEnv {
  OTEL_EXPORTER_OTLP_TRACES_ENABLED: boolean;
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: typeof TRACES_PROTOCOLS[number];
  OTEL_TRACES_SAMPLER: typeof TRACES_SAMPLERS[number];
  OTEL_TRACES_SAMPLER_ARG: number;
  OTEL_SERVICE_NAME: string;
  OTEL_BSP_SCHEDULE_DELAY: number;
}

export interface TracingConfig {
  enabled: boolean;
  protocol: typeof TRACES_PROTOCOLS[number];
  sampler: typeof TRACES_SAMPLERS[number];
  /** The ratio of the traceidratio samplers (default 1). */
  ratio: number;
  serviceName: string;
  /** How often batched spans are exported, ms. */
  batchDelayMs: number;
}

/**
 * OTLP metrics (Go HEAD: OTEL_EXPORTER_OTLP_METRICS_ENABLED), in all three
 * programs: off by default; the exporters read the SDK's standard
 * OTEL_EXPORTER_OTLP_* endpoint and header variables themselves.
 */
export const METRICS_PROTOCOLS = ["http/protobuf", "grpc"] as const;

function otlpMetricsEnv() {
  return {
    OTEL_EXPORTER_OTLP_METRICS_ENABLED: env.bool(false),
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: env.enumOf(METRICS_PROTOCOLS, "http/protobuf"),
    // The spec's export interval, ms (its default: one minute).
    OTEL_METRIC_EXPORT_INTERVAL: env.int(60_000),
    OTEL_SERVICE_NAME: env.string(""),
  };
}

interface OtlpMetricsEnv {
  OTEL_EXPORTER_OTLP_METRICS_ENABLED: boolean;
  OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: typeof METRICS_PROTOCOLS[number];
  OTEL_METRIC_EXPORT_INTERVAL: number;
  OTEL_SERVICE_NAME: string;
}

export interface OtlpMetricsConfig {
  enabled: boolean;
  protocol: typeof METRICS_PROTOCOLS[number];
  /** How often the metrics are exported, ms. */
  intervalMs: number;
  serviceName: string;
}

function otlpMetricsOf(e: OtlpMetricsEnv, serviceName: string): OtlpMetricsConfig {
  return {
    enabled: e.OTEL_EXPORTER_OTLP_METRICS_ENABLED,
    protocol: e.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    intervalMs: Math.max(100, e.OTEL_METRIC_EXPORT_INTERVAL),
    serviceName: e.OTEL_SERVICE_NAME || serviceName,
  };
}

function tracingOf(e: TracingEnv, serviceName: string): TracingConfig {
  return {
    enabled: e.OTEL_EXPORTER_OTLP_TRACES_ENABLED,
    protocol: e.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    sampler: e.OTEL_TRACES_SAMPLER,
    ratio: e.OTEL_TRACES_SAMPLER_ARG < 0 ? 1 : e.OTEL_TRACES_SAMPLER_ARG,
    serviceName: e.OTEL_SERVICE_NAME || serviceName,
    batchDelayMs: Math.max(1, e.OTEL_BSP_SCHEDULE_DELAY),
  };
}

export class ConfigError extends Error {
  constructor(readonly program: string, readonly problems: string[]) {
    super(
      `${program}: invalid configuration (${problems.length} problem${
        problems.length === 1 ? "" : "s"
      }); fix these environment variables:\n` + problems.map((p) => `  - ${p}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

/**
 * Parses `source` (default: the process environment) with a program's schema.
 * Throws ConfigError listing every bad variable by name.
 */
export function parseConfig<S extends z.ZodMiniType>(
  program: string,
  schema: S,
  source: Record<string, string | undefined> = Deno.env.toObject(),
): z.output<S> {
  const r = schema.safeParse(source);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => {
    const name = i.path.length ? i.path.map(String).join(".") : "(config)";
    const raw = typeof i.path[0] === "string" ? source[i.path[0]] : undefined;
    return `${name}${raw !== undefined && raw !== "" ? `="${raw}"` : ""}: ${i.message}`;
  });
  throw new ConfigError(program, problems);
}

/**
 * Names the Go add-on has renamed: set, each still overrides its new name
 * (as in Go HEAD), with a warning that names the replacement.
 */
const DEPRECATED_ENV: Record<string, Record<string, string>> = {
  interceptor: {
    KEDA_CONDITION_WAIT_TIMEOUT: "KEDA_HTTP_READINESS_TIMEOUT",
    KEDA_RESPONSE_HEADER_TIMEOUT: "KEDA_HTTP_RESPONSE_HEADER_TIMEOUT",
  },
  operator: {
    KEDAHTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: "KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE",
    KEDAHTTP_OPERATOR_EXTERNAL_SCALER_PORT: "KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT",
  },
};

/** The environment with deprecated names applied, and one warning per name used. */
export function withDeprecatedEnv(
  program: "interceptor" | "scaler" | "operator",
  raw: Record<string, string | undefined>,
): { env: Record<string, string | undefined>; warnings: string[] } {
  const env = { ...raw };
  const warnings: string[] = [];
  for (const [old, current] of Object.entries(DEPRECATED_ENV[program] ?? {})) {
    const v = env[old];
    if (v === undefined || v.trim() === "") continue;
    const shadowed = (env[current] ?? "").trim() !== "" && env[current] !== v;
    env[current] = v;
    warnings.push(
      `${old} is deprecated: rename it to ${current}` +
        (shadowed ? ` (its value "${v}" overrides ${current}="${raw[current]}")` : ""),
    );
  }
  return { env, warnings };
}

// ---------------------------------------------------------------------------
// Interceptor

function buildInterceptorEnvSchema() {
  return z.pipe(
    z.object({
      ...tracingEnv(),
      KEDA_HTTP_PROXY_PORT: env.port(8080),
      KEDA_HTTP_ADMIN_PORT: env.port(9090),
      KEDA_HTTP_WATCH_NAMESPACE: env.string(""),
      KEDA_HTTP_REQUEST_TIMEOUT: env.duration("0s"),
      KEDA_HTTP_RESPONSE_HEADER_TIMEOUT: env.duration("300s"),
      KEDA_HTTP_READINESS_TIMEOUT: env.duration("0s"),
      KEDA_HTTP_CONNECT_TIMEOUT: env.duration("500ms"),
      KEDA_HTTP_DRAIN_TIMEOUT: env.duration("30s"),
      KEDA_HTTP_SHUTDOWN_DELAY: env.duration("5s"),
      KEDA_HTTP_ENABLE_COLD_START_HEADER: env.bool(true),
      /**
       * true (ours by default): to a ready pod, least in flight first; false
       * (Go's default): to the Service's cluster IP, for session affinity and
       * topology routing.
       */
      KEDA_HTTP_DIRECT_POD_ROUTING: env.bool(true),
      KEDA_HTTP_PROBE_STARTING_PODS: env.bool(true),
      /** One access-log line per request. */
      KEDA_HTTP_LOG_REQUESTS: env.bool(false),
      KEDA_HTTP_PROXY_TLS_ENABLED: env.bool(false),
      KEDA_HTTP_PROXY_TLS_CERT_PATH: env.string(""),
      KEDA_HTTP_PROXY_TLS_KEY_PATH: env.string(""),
      KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS: env.list(),
      KEDA_HTTP_PROXY_TLS_PORT: env.port(8443),
      /** Don't verify HTTPS apps' certificates. */
      KEDA_HTTP_PROXY_TLS_SKIP_VERIFY: env.bool(false),
      KEDA_HTTP_PROXY_TLS_MIN_VERSION: tlsVersion(),
      KEDA_HTTP_PROXY_TLS_MAX_VERSION: tlsVersion(),
      KEDA_HTTP_PROXY_TLS_CIPHER_SUITES: env.list(),
      KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES: env.list(),
      /** Ours: directory of PEM CA certificates trusted for HTTPS apps (Go has none). */
      KEDA_HTTP_UPSTREAM_CA_DIR: env.string(""),
      /** Ours: held (not yet forwarded) requests allowed per route before 503. */
      KEDA_HTTP_MAX_HELD_REQUESTS: env.int(10_000),
      /** Ours: in-flight requests allowed per pod; 0 = no cap. */
      KEDA_HTTP_POD_CONCURRENCY_LIMIT: env.int(0),
      /** Ours: data-plane isolates sharing the proxy port; 0 = one per CPU. */
      KEDA_HTTP_PROXY_WORKERS: env.int(0),
      /** Ours: address the proxy and admin servers listen on. */
      KEDA_HTTP_BIND_ADDRESS: env.string("0.0.0.0"),
      /** Ours: idle keep-alive client connections, and bodies with no progress, close after this. */
      KEDA_HTTP_IDLE_TIMEOUT: env.duration("90s"),
      /** Ours: a request head must be complete this long after its first byte. */
      KEDA_HTTP_REQUEST_HEAD_TIMEOUT: env.duration("10s"),
      ...promExporterEnv(),
      ...otlpMetricsEnv(),
    }).check(z.superRefine((e, ctx) => {
      checkPromPort(e, {
        KEDA_HTTP_PROXY_PORT: e.KEDA_HTTP_PROXY_PORT,
        KEDA_HTTP_ADMIN_PORT: e.KEDA_HTTP_ADMIN_PORT,
        KEDA_HTTP_PROXY_TLS_PORT: e.KEDA_HTTP_PROXY_TLS_ENABLED
          ? e.KEDA_HTTP_PROXY_TLS_PORT
          : undefined,
      }, ctx);
      if (e.KEDA_HTTP_PROXY_TLS_ENABLED) {
        const { problems } = resolveCertPaths(
          e.KEDA_HTTP_PROXY_TLS_CERT_PATH,
          e.KEDA_HTTP_PROXY_TLS_KEY_PATH,
          e.KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS,
        );
        for (const [name, message] of problems) {
          ctx.addIssue({ code: "custom", path: [name], message });
        }
      }
      const min = e.KEDA_HTTP_PROXY_TLS_MIN_VERSION;
      const max = e.KEDA_HTTP_PROXY_TLS_MAX_VERSION;
      const tlsChecks: Array<[string, () => void]> = [
        ["KEDA_HTTP_PROXY_TLS_MAX_VERSION", () => checkVersions(min, max)],
        [
          "KEDA_HTTP_PROXY_TLS_CIPHER_SUITES",
          () => checkCipherSuites(e.KEDA_HTTP_PROXY_TLS_CIPHER_SUITES, min, max),
        ],
        [
          "KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES",
          () => checkCurves(e.KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES, min, max),
        ],
      ];
      for (const [name, check] of tlsChecks) {
        try {
          check();
        } catch (err) {
          ctx.addIssue({ code: "custom", path: [name], message: (err as Error).message });
        }
      }
      const caDir = e.KEDA_HTTP_UPSTREAM_CA_DIR;
      if (caDir !== "") {
        let problem: string | null = null;
        try {
          if (!Deno.statSync(caDir).isDirectory) problem = "is not a directory";
        } catch (err) {
          problem = `cannot be read: ${(err as Error).message}`;
        }
        if (problem) {
          ctx.addIssue({
            code: "custom",
            path: ["KEDA_HTTP_UPSTREAM_CA_DIR"],
            message: `${problem}; set it to a directory of PEM CA certificates, or unset it`,
          });
        }
      }
      if (e.KEDA_HTTP_PROXY_PORT === e.KEDA_HTTP_ADMIN_PORT) {
        ctx.addIssue({
          code: "custom",
          path: ["KEDA_HTTP_ADMIN_PORT"],
          message: `must differ from KEDA_HTTP_PROXY_PORT (${e.KEDA_HTTP_PROXY_PORT})`,
        });
      }
    })),
    z.transform((e) => ({
      proxyPort: e.KEDA_HTTP_PROXY_PORT,
      adminPort: e.KEDA_HTTP_ADMIN_PORT,
      watchNamespace: e.KEDA_HTTP_WATCH_NAMESPACE,
      requestTimeoutMs: e.KEDA_HTTP_REQUEST_TIMEOUT,
      responseHeaderTimeoutMs: e.KEDA_HTTP_RESPONSE_HEADER_TIMEOUT,
      readinessTimeoutMs: e.KEDA_HTTP_READINESS_TIMEOUT,
      connectTimeoutMs: e.KEDA_HTTP_CONNECT_TIMEOUT,
      drainTimeoutMs: e.KEDA_HTTP_DRAIN_TIMEOUT,
      shutdownDelayMs: e.KEDA_HTTP_SHUTDOWN_DELAY,
      coldStartHeader: e.KEDA_HTTP_ENABLE_COLD_START_HEADER,
      directPodRouting: e.KEDA_HTTP_DIRECT_POD_ROUTING,
      probeStartingPods: e.KEDA_HTTP_PROBE_STARTING_PODS,
      logRequests: e.KEDA_HTTP_LOG_REQUESTS,
      tls: {
        enabled: e.KEDA_HTTP_PROXY_TLS_ENABLED,
        ...certPathsOf(e.KEDA_HTTP_PROXY_TLS_ENABLED, e),
        certStorePaths: e.KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS,
        port: e.KEDA_HTTP_PROXY_TLS_PORT,
        minVersion: e.KEDA_HTTP_PROXY_TLS_MIN_VERSION,
        maxVersion: e.KEDA_HTTP_PROXY_TLS_MAX_VERSION,
      },
      /** For HTTPS apps (appProtocol https, or requests that came over TLS). */
      upstreamTls: {
        skipVerify: e.KEDA_HTTP_PROXY_TLS_SKIP_VERIFY,
        caDir: e.KEDA_HTTP_UPSTREAM_CA_DIR,
      },
      maxHeldRequests: e.KEDA_HTTP_MAX_HELD_REQUESTS,
      podConcurrencyLimit: e.KEDA_HTTP_POD_CONCURRENCY_LIMIT,
      workers: e.KEDA_HTTP_PROXY_WORKERS,
      bindAddress: e.KEDA_HTTP_BIND_ADDRESS,
      idleTimeoutMs: e.KEDA_HTTP_IDLE_TIMEOUT,
      requestHeadTimeoutMs: e.KEDA_HTTP_REQUEST_HEAD_TIMEOUT,
      prometheus: promExporterOf(e),
      otlpMetrics: otlpMetricsOf(e, "keda-http-interceptor"),
      tracing: tracingOf(e, "keda-http-interceptor"),
    })),
  );
}
export type InterceptorConfig = z.output<ReturnType<typeof buildInterceptorEnvSchema>>;

/** The interceptor's env schema, for parseConfig; built anew on each call. */
export function interceptorEnvSchema(): z.ZodMiniType<InterceptorConfig> {
  return buildInterceptorEnvSchema();
}

// ---------------------------------------------------------------------------
// Scaler

function buildScalerEnvSchema() {
  return z.pipe(
    z.object({
      ...tracingEnv(),
      KEDA_HTTP_SCALER_PORT: env.port(9090),
      /** Ours: the HTTP server with /queue, /queue_ping, /livez, /readyz, /metrics. */
      KEDA_HTTP_SCALER_HTTP_PORT: env.port(9091),
      KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: env.string(),
      KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: env.string(),
      KEDA_HTTP_SCALER_TARGET_ADMIN_PORT: env.port(9090),
      KEDA_HTTP_QUEUE_TICK_DURATION: env.duration("500ms"),
      KEDA_HTTP_SCALER_STREAM_INTERVAL_MS: env.int(200),
      /** Ours: timeout of each /queue fetch. */
      KEDA_HTTP_SCALER_FETCH_TIMEOUT: env.duration("1s"),
      /** Ours: how long an unreachable interceptor's last counts are kept. */
      KEDA_HTTP_SCALER_STALE_COUNTS_TTL: env.duration("30s"),
      /** Ours: namespace whose HTTPScaledObjects the scaler reads; "" = all. */
      KEDA_HTTP_WATCH_NAMESPACE: env.string(""),
      /** Ours: bearer token POST and DELETE /wake need; "" = none, like the port's other endpoints. */
      KEDA_HTTP_SCALER_WAKE_TOKEN: env.string(""),
      ...promExporterEnv(),
      ...otlpMetricsEnv(),
    }).check(z.superRefine((e, ctx) => {
      if (!/^[!-~]*$/.test(e.KEDA_HTTP_SCALER_WAKE_TOKEN)) {
        ctx.addIssue({
          code: "custom",
          // Not the variable's name as the path: the message must not echo the secret.
          path: ["KEDA_HTTP_SCALER_WAKE_TOKEN (value not shown)"],
          message:
            "must be printable ASCII without spaces: it is sent as Authorization: Bearer <token>",
        });
      }
      checkPromPort(e, {
        KEDA_HTTP_SCALER_PORT: e.KEDA_HTTP_SCALER_PORT,
        KEDA_HTTP_SCALER_HTTP_PORT: e.KEDA_HTTP_SCALER_HTTP_PORT,
      }, ctx);
      if (e.KEDA_HTTP_SCALER_PORT === e.KEDA_HTTP_SCALER_HTTP_PORT) {
        ctx.addIssue({
          code: "custom",
          path: ["KEDA_HTTP_SCALER_HTTP_PORT"],
          message: `must differ from KEDA_HTTP_SCALER_PORT (${e.KEDA_HTTP_SCALER_PORT})`,
        });
      }
      if (e.KEDA_HTTP_QUEUE_TICK_DURATION <= 0) {
        ctx.addIssue({
          code: "custom",
          path: ["KEDA_HTTP_QUEUE_TICK_DURATION"],
          message: "must be greater than 0",
        });
      }
    })),
    z.transform((e) => ({
      grpcPort: e.KEDA_HTTP_SCALER_PORT,
      httpPort: e.KEDA_HTTP_SCALER_HTTP_PORT,
      targetAdmin: {
        namespace: e.KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE,
        service: e.KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE,
        port: e.KEDA_HTTP_SCALER_TARGET_ADMIN_PORT,
      },
      queueTickMs: e.KEDA_HTTP_QUEUE_TICK_DURATION,
      streamIntervalMs: e.KEDA_HTTP_SCALER_STREAM_INTERVAL_MS,
      fetchTimeoutMs: e.KEDA_HTTP_SCALER_FETCH_TIMEOUT,
      staleCountsTtlMs: e.KEDA_HTTP_SCALER_STALE_COUNTS_TTL,
      watchNamespace: e.KEDA_HTTP_WATCH_NAMESPACE,
      wakeToken: e.KEDA_HTTP_SCALER_WAKE_TOKEN,
      prometheus: promExporterOf(e),
      otlpMetrics: otlpMetricsOf(e, "keda-http-external-scaler"),
      tracing: tracingOf(e, "keda-http-external-scaler"),
    })),
  );
}
export type ScalerConfig = z.output<ReturnType<typeof buildScalerEnvSchema>>;

/** The scaler's env schema, for parseConfig; built anew on each call. */
export function scalerEnvSchema(): z.ZodMiniType<ScalerConfig> {
  return buildScalerEnvSchema();
}

// ---------------------------------------------------------------------------
// Operator

/**
 * The Go add-on's names for the leader-election durations (v0.15); each is
 * used when our shorter name is unset, so its manifests keep working. Apply
 * to the environment before parseConfig with operatorEnvSchema().
 */
const OPERATOR_ENV_ALIASES: Record<string, string> = {
  KEDA_HTTP_OPERATOR_LEADER_ELECTION_LEASE_DURATION: "KEDA_HTTP_OPERATOR_LEASE_DURATION",
  KEDA_HTTP_OPERATOR_LEADER_ELECTION_RENEW_DEADLINE: "KEDA_HTTP_OPERATOR_RENEW_DEADLINE",
  KEDA_HTTP_OPERATOR_LEADER_ELECTION_RETRY_PERIOD: "KEDA_HTTP_OPERATOR_RETRY_PERIOD",
};

export function withOperatorEnvAliases(
  raw: Record<string, string | undefined>,
): Record<string, string | undefined> {
  const env = { ...raw };
  for (const [goName, ours] of Object.entries(OPERATOR_ENV_ALIASES)) {
    const v = env[goName];
    if (v !== undefined && v.trim() !== "" && (env[ours] ?? "").trim() === "") env[ours] = v;
  }
  return env;
}

function buildOperatorEnvSchema() {
  return z.pipe(
    z.object({
      KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: env.string(),
      KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT: env.port(9090),
      KEDA_HTTP_OPERATOR_NAMESPACE: env.string(),
      KEDA_HTTP_OPERATOR_WATCH_NAMESPACE: env.string(""),
      /** Ours: admin server (/routing_table, /livez, /readyz, /metrics). */
      KEDA_HTTP_OPERATOR_ADMIN_PORT: env.port(8081),
      KEDA_HTTP_OPERATOR_LEADER_ELECTION: env.bool(true),
      /** The Go add-on's Lease name, so an old and a new operator never both lead. */
      KEDA_HTTP_OPERATOR_LEASE_NAME: env.string("http-add-on.keda.sh"),
      KEDA_HTTP_OPERATOR_LEASE_DURATION: env.duration("15s"),
      KEDA_HTTP_OPERATOR_RENEW_DEADLINE: env.duration("10s"),
      KEDA_HTTP_OPERATOR_RETRY_PERIOD: env.duration("2s"),
      KEDA_HTTP_OPERATOR_RESYNC_PERIOD: env.duration("5m"),
      /** Identity in the Lease; the Downward API sets it to the pod name. */
      POD_NAME: env.string(""),
      ...promExporterEnv(),
      ...otlpMetricsEnv(),
    }).check(z.superRefine((e, ctx) => {
      checkPromPort(e, { KEDA_HTTP_OPERATOR_ADMIN_PORT: e.KEDA_HTTP_OPERATOR_ADMIN_PORT }, ctx);
      if (e.KEDA_HTTP_OPERATOR_RENEW_DEADLINE >= e.KEDA_HTTP_OPERATOR_LEASE_DURATION) {
        ctx.addIssue({
          code: "custom",
          path: ["KEDA_HTTP_OPERATOR_RENEW_DEADLINE"],
          message: "must be shorter than KEDA_HTTP_OPERATOR_LEASE_DURATION",
        });
      }
    })),
    z.transform((e) => ({
      externalScaler: {
        service: e.KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE,
        port: e.KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT,
      },
      namespace: e.KEDA_HTTP_OPERATOR_NAMESPACE,
      watchNamespace: e.KEDA_HTTP_OPERATOR_WATCH_NAMESPACE,
      adminPort: e.KEDA_HTTP_OPERATOR_ADMIN_PORT,
      leaderElection: {
        enabled: e.KEDA_HTTP_OPERATOR_LEADER_ELECTION,
        leaseName: e.KEDA_HTTP_OPERATOR_LEASE_NAME,
        leaseDurationMs: e.KEDA_HTTP_OPERATOR_LEASE_DURATION,
        renewDeadlineMs: e.KEDA_HTTP_OPERATOR_RENEW_DEADLINE,
        retryPeriodMs: e.KEDA_HTTP_OPERATOR_RETRY_PERIOD,
      },
      resyncPeriodMs: e.KEDA_HTTP_OPERATOR_RESYNC_PERIOD,
      podName: e.POD_NAME,
      prometheus: promExporterOf(e),
      otlpMetrics: otlpMetricsOf(e, "keda-http-operator"),
    })),
  );
}
export type OperatorConfig = z.output<ReturnType<typeof buildOperatorEnvSchema>>;

/** The operator's env schema, for parseConfig; built anew on each call. */
export function operatorEnvSchema(): z.ZodMiniType<OperatorConfig> {
  return buildOperatorEnvSchema();
}
