/**
 * What the interceptor reads besides its env schema, so the Go add-on's Helm
 * chart can start it unchanged: the zap flags the chart passes
 * (--zap-log-level, --zap-encoder, ...), and variables the chart sets that
 * we do not use, each logged once at start with what to use instead. Pure.
 */
import {
  FlagError,
  ignoredEnvLines,
  type IgnoredVar,
  parseGoFlags,
  ZAP_FLAGS,
  type ZapSettings,
  zapSettings,
} from "../shared/go_flags.ts";

/** The interceptor's flags: zap's only. Throws FlagError naming the flag (and value) at fault. */
export function parseInterceptorFlags(args: readonly string[]): ZapSettings {
  const raw = parseGoFlags(args, ZAP_FLAGS);
  if (raw.help) {
    throw new FlagError(
      "the interceptor is configured by environment variables (see the README); its only flags are --zap-*",
    );
  }
  return zapSettings(raw);
}

const TLS_NAME = (ours: string) =>
  `this chart name is read by neither Go HEAD nor us; set ${ours} (the interceptor's TLS variables are KEDA_HTTP_PROXY_TLS_*)`;

/** Variables the Go chart sets on the interceptor that we accept without using, and why. */
const IGNORED: Record<string, IgnoredVar> = {
  KEDA_HTTP_MAX_IDLE_CONNS: {
    why:
      "the upstream pool keeps idle connections per pod and closes them after KEDA_HTTP_IDLE_TIMEOUT; there is no total cap to set",
    asks: () => false,
  },
  KEDA_HTTP_MAX_IDLE_CONNS_PER_HOST: {
    why: "idle upstream connections are reused per pod without a count limit",
    asks: () => false,
  },
  KEDA_HTTP_TLS_CA_DIRS: { why: TLS_NAME("KEDA_HTTP_UPSTREAM_CA_DIR") },
  KEDA_HTTP_TLS_CIPHER_SUITES: { why: TLS_NAME("KEDA_HTTP_PROXY_TLS_CIPHER_SUITES") },
  KEDA_HTTP_TLS_CURVE_PREFERENCES: { why: TLS_NAME("KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES") },
  KEDA_HTTP_TLS_MAX_VERSION: { why: TLS_NAME("KEDA_HTTP_PROXY_TLS_MAX_VERSION") },
  KEDA_HTTP_TLS_MIN_VERSION: { why: TLS_NAME("KEDA_HTTP_PROXY_TLS_MIN_VERSION") },
  KEDA_HTTP_TLS_SKIP_VERIFY: { why: TLS_NAME("KEDA_HTTP_PROXY_TLS_SKIP_VERIFY") },
  PROFILING_BIND_ADDRESS: { why: "there is no pprof endpoint in this interceptor" },
};

/** One line per ignored variable that is set: warn when it asks for something we do not do. */
export function interceptorIgnoredEnv(
  env: Record<string, string | undefined>,
): Array<{ level: "info" | "warn"; msg: string }> {
  return ignoredEnvLines(IGNORED, env);
}

/**
 * The Go chart's KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS (held requests per
 * route and replica, 0 = no limit) is our KEDA_HTTP_MAX_HELD_REQUESTS; ours
 * wins when both are set, and 0 keeps our bound (unbounded held requests
 * would let one route exhaust memory).
 */
export function withChartAliases(
  env: Record<string, string | undefined>,
): { env: Record<string, string | undefined>; notes: string[] } {
  const v = env.KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS?.trim();
  if (v === undefined) return { env, notes: [] };
  if (env.KEDA_HTTP_MAX_HELD_REQUESTS !== undefined) {
    return {
      env,
      notes: [
        `KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS="${v}" ignored: KEDA_HTTP_MAX_HELD_REQUESTS is set and wins`,
      ],
    };
  }
  if (v === "0") {
    return {
      env,
      notes: [
        "KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS=0 (no limit) keeps the bound of KEDA_HTTP_MAX_HELD_REQUESTS (default 10000): held requests cost memory",
      ],
    };
  }
  // Handed on as is: the schema checks it and names KEDA_HTTP_MAX_HELD_REQUESTS if it is bad.
  return {
    env: { ...env, KEDA_HTTP_MAX_HELD_REQUESTS: v },
    notes: [`KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS="${v}" read as KEDA_HTTP_MAX_HELD_REQUESTS`],
  };
}
