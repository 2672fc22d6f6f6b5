/**
 * OTLP metrics (OTEL_EXPORTER_OTLP_METRICS_ENABLED), the same in all three
 * programs: every family of the program's Prometheus text, pushed to an
 * OTLP endpoint every OTEL_METRIC_EXPORT_INTERVAL ms. The text stays the one
 * owner of the values (no second set of instruments to keep in step); the
 * SDK (otlp_metrics_sdk.ts) is imported only when the export is enabled.
 */
import type { OtlpMetricsConfig } from "./config.ts";
import type { Logger } from "./log.ts";

export interface OtlpMetrics {
  /** Exports until `signal` aborts, then exports once more and stops. */
  run(signal: AbortSignal): Promise<void>;
}

/** Null when the export is off; else the SDK's periodic reader over `render`'s families. */
export async function startOtlpMetrics(
  cfg: OtlpMetricsConfig,
  opts: { render: () => Promise<string> | string; log: Logger },
): Promise<OtlpMetrics | null> {
  if (!cfg.enabled) return null;
  const sdk = await import("./otlp_metrics_sdk.ts");
  return sdk.createOtlpMetrics(cfg, opts);
}
