/**
 * What the scaler reads besides its env schema, so the Go add-on's Helm
 * chart can start it unchanged: the zap flags the chart passes
 * (--zap-log-level, --zap-encoder, ...), and variables the chart sets that
 * we do not use, each logged once at start with the reason. Pure.
 */
import { FlagError, parseGoFlags, ZAP_FLAGS, zapSettings } from "../shared/go_flags.ts";
import type { LogSettings } from "../shared/log.ts";

export interface ScalerFlags {
  log: LogSettings;
  notes: string[];
}

/** The scaler's flags: zap's only. Throws FlagError naming the flag (and value) at fault. */
export function parseScalerFlags(args: readonly string[]): ScalerFlags {
  const raw = parseGoFlags(args, ZAP_FLAGS);
  if (raw.help) {
    throw new FlagError(
      "the scaler is configured by environment variables (see scaler/README.md); its only flags are --zap-*",
    );
  }
  return zapSettings(raw);
}

/** Variables the Go chart sets on the scaler that we accept without using, and why. */
const IGNORED: Record<string, string> = {
  KEDA_HTTP_SCALER_TARGET_ADMIN_DEPLOYMENT:
    "interceptor pods are found through the EndpointSlices of KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE, not the Deployment",
  OTEL_EXPORTER_OTLP_METRICS_ENABLED:
    "no OTLP metrics exporter here; metrics are on the Prometheus port (OTEL_PROM_EXPORTER_PORT)",
  OTEL_EXPORTER_OTLP_TRACES_ENABLED: "no OTLP trace exporter here; the scaler sends no spans",
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "no OTLP trace exporter here",
  PROFILING_BIND_ADDRESS: "there is no pprof endpoint in this scaler",
};

/** Values that ask for nothing, so ignoring them is only worth an info line. */
const OFF = new Set(["", "0", "f", "F", "false", "FALSE", "False"]);

/** One line per ignored variable that is set: warn when it asks for something we do not do. */
export function ignoredEnvNotes(
  env: Record<string, string | undefined>,
): Array<{ level: "info" | "warn"; msg: string }> {
  const out: Array<{ level: "info" | "warn"; msg: string }> = [];
  for (const [name, why] of Object.entries(IGNORED)) {
    const v = env[name];
    if (v === undefined) continue;
    // A protocol only matters when traces are on.
    const asks = name === "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
      ? !OFF.has((env.OTEL_EXPORTER_OTLP_TRACES_ENABLED ?? "").trim())
      : name === "KEDA_HTTP_SCALER_TARGET_ADMIN_DEPLOYMENT"
      ? false
      : !OFF.has(v.trim());
    out.push({ level: asks ? "warn" : "info", msg: `${name}="${v}" ignored: ${why}` });
  }
  return out;
}
