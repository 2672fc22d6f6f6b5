/**
 * What the scaler reads besides its env schema, so the Go add-on's Helm
 * chart can start it unchanged: the zap flags the chart passes
 * (--zap-log-level, --zap-encoder, ...), and variables the chart sets that
 * we do not use, each logged once at start with the reason. Pure.
 */
import {
  FlagError,
  ignoredEnvLines,
  type IgnoredVar,
  parseGoFlags,
  ZAP_FLAGS,
  zapSettings,
} from "../shared/go_flags.ts";
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
const IGNORED: Record<string, IgnoredVar> = {
  KEDA_HTTP_SCALER_TARGET_ADMIN_DEPLOYMENT: {
    why:
      "interceptor pods are found through the EndpointSlices of KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE, not the Deployment",
    asks: () => false,
  },
  PROFILING_BIND_ADDRESS: { why: "there is no pprof endpoint in this scaler" },
};

/** One line per ignored variable that is set: warn when it asks for something we do not do. */
export function ignoredEnvNotes(
  env: Record<string, string | undefined>,
): Array<{ level: "info" | "warn"; msg: string }> {
  return ignoredEnvLines(IGNORED, env);
}
