/**
 * The OpenTelemetry JS metrics SDK behind shared/otlp_metrics.ts, imported
 * only when OTLP metrics are enabled. A MetricProducer turns the program's
 * own Prometheus text into OTLP data points at each export: counters become
 * cumulative monotonic sums (named without `_total`, which Prometheus-side
 * converters add back), gauges gauges, histograms histograms with the same
 * bounds, summaries histograms of one bucket (sum and count). The exporters
 * read the SDK's OTEL_EXPORTER_OTLP_* endpoint and header variables.
 */
import { type Attributes, type HrTime, ValueType } from "@opentelemetry/api";
import { type ExportResult, ExportResultCode, millisToHrTime } from "@opentelemetry/core";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  AggregationTemporality,
  type CollectionResult,
  DataPointType,
  MeterProvider,
  type MetricData,
  type MetricProducer,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
  type ResourceMetrics,
} from "@opentelemetry/sdk-metrics";
import type { OtlpMetricsConfig } from "./config.ts";
import type { Logger } from "./log.ts";
import { SERVICE_VERSION } from "./prometheus.ts";

export interface TextSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface TextFamily {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  samples: TextSample[];
}

const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(s: string): number {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  return Number(s);
}

/** `name{a="b",c="d"} value [timestamp]`, or undefined for a line that is not one. */
function parseSample(line: string): TextSample | undefined {
  let i = 0;
  while (i < line.length && line[i] !== "{" && line[i] !== " ") i++;
  const name = line.slice(0, i);
  const labels: Record<string, string> = {};
  if (line[i] === "{") {
    i++;
    while (i < line.length && line[i] !== "}") {
      const eq = line.indexOf("=", i);
      if (eq < 0 || line[eq + 1] !== '"') return undefined;
      const key = line.slice(i, eq).trim();
      let v = "";
      let j = eq + 2;
      for (; j < line.length && line[j] !== '"'; j++) {
        if (line[j] === "\\" && j + 1 < line.length) {
          j++;
          v += line[j] === "n" ? "\n" : line[j];
        } else v += line[j];
      }
      if (j >= line.length) return undefined;
      labels[key] = v;
      i = j + 1;
      if (line[i] === ",") i++;
    }
    if (line[i] !== "}") return undefined;
    i++;
  }
  const value = parseValue(line.slice(i).trim().split(/\s+/)[0] ?? "");
  if (!name || Number.isNaN(value) && !/\bNaN\b/.test(line.slice(i))) return undefined;
  return { name, labels, value };
}

/** The families of Prometheus text format 0.0.4 as our programs write it. */
export function parsePrometheusText(text: string): TextFamily[] {
  const families: TextFamily[] = [];
  const byName = new Map<string, TextFamily>();
  const family = (name: string): TextFamily => {
    let f = byName.get(name);
    if (!f) {
      f = { name, help: "", type: "untyped", samples: [] };
      byName.set(name, f);
      families.push(f);
    }
    return f;
  };
  let current: TextFamily | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    // HELP text is read from the raw line: its own spaces are part of it.
    const meta = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(raw.trimStart());
    if (meta) {
      const f = current = family(meta[2]!);
      if (meta[1] === "HELP") {
        f.help = (meta[3] ?? "").replace(/\\(\\|n)/g, (_, c: string) => (c === "n" ? "\n" : "\\"));
      } else if (TYPES.has((meta[3] ?? "").trim())) {
        f.type = (meta[3] ?? "").trim() as TextFamily["type"];
      }
      continue;
    }
    if (line.startsWith("#")) continue;
    const s = parseSample(line);
    if (!s) continue;
    // A sample belongs to the family above it when its name is the family's
    // or one of its suffixed series; otherwise it is a family of its own.
    const owner = current && belongsTo(s.name, current) ? current : family(s.name);
    owner.samples.push(s);
  }
  return families;
}

function belongsTo(sample: string, f: TextFamily): boolean {
  if (sample === f.name) return true;
  const suffixes = f.type === "histogram"
    ? ["_bucket", "_sum", "_count"]
    : f.type === "summary"
    ? ["_sum", "_count"]
    : f.type === "counter"
    ? ["_total"]
    : [];
  return suffixes.some((x) => sample === f.name + x);
}

function seriesKey(labels: Record<string, string>): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** OTLP metric data of the families, cumulative from `start`, observed at `end`. */
export function metricDataOf(families: TextFamily[], start: HrTime, end: HrTime): MetricData[] {
  const out: MetricData[] = [];
  const point = <T>(attributes: Attributes, value: T) => ({
    startTime: start,
    endTime: end,
    attributes,
    value,
  });
  for (const f of families) {
    // The SDK's Prometheus-side resource line, not a metric of ours.
    if (f.name === "target_info" || f.samples.length === 0) continue;
    const base = { description: f.help, unit: "", valueType: ValueType.DOUBLE };
    if (f.type === "counter") {
      out.push({
        descriptor: { ...base, name: f.name.replace(/_total$/, "") },
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.SUM,
        isMonotonic: true,
        dataPoints: f.samples.map((s) => point(s.labels, s.value)),
      });
    } else if (f.type === "histogram" || f.type === "summary") {
      const series = new Map<
        string,
        { labels: Attributes; le: Array<[number, number]>; sum: number; count: number }
      >();
      for (const s of f.samples) {
        const { le, ...labels } = s.labels;
        const key = seriesKey(labels);
        let x = series.get(key);
        if (!x) series.set(key, x = { labels, le: [], sum: 0, count: 0 });
        if (s.name === `${f.name}_bucket` && le !== undefined) x.le.push([parseValue(le), s.value]);
        else if (s.name === `${f.name}_sum`) x.sum = s.value;
        else if (s.name === `${f.name}_count`) x.count = s.value;
      }
      out.push({
        descriptor: { ...base, name: f.name },
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.HISTOGRAM,
        dataPoints: [...series.values()].map((x) => {
          const finite = x.le.filter(([b]) => Number.isFinite(b)).sort(([a], [b]) => a - b);
          const boundaries = finite.map(([b]) => b);
          // Cumulative `le` counts to per-bucket counts; the last bucket is above the last bound.
          const counts: number[] = [];
          let below = 0;
          for (const [, c] of finite) {
            counts.push(Math.max(0, c - below));
            below = c;
          }
          counts.push(Math.max(0, x.count - below));
          return point(x.labels, { buckets: { boundaries, counts }, sum: x.sum, count: x.count });
        }),
      });
    } else {
      out.push({
        descriptor: { ...base, name: f.name },
        aggregationTemporality: AggregationTemporality.CUMULATIVE,
        dataPointType: DataPointType.GAUGE,
        dataPoints: f.samples.map((s) => point(s.labels, s.value)),
      });
    }
  }
  return out;
}

/** Reads the program's text at each collection. */
class TextProducer implements MetricProducer {
  readonly #start = millisToHrTime(performance.timeOrigin);
  constructor(readonly render: () => Promise<string> | string) {}

  async collect(): Promise<CollectionResult> {
    const text = await this.render();
    const metrics = metricDataOf(
      parsePrometheusText(text),
      this.#start,
      millisToHrTime(Date.now()),
    );
    return {
      // The reader keeps its MeterProvider's resource and takes only the scope metrics.
      resourceMetrics: {
        resource: defaultResource(),
        scopeMetrics: [{ scope: { name: "keda-http-add-on" }, metrics }],
      },
      errors: [],
    };
  }
}

/** The OTLP exporter, saying when an export fails (at most once a minute). */
class LoggedExporter implements PushMetricExporter {
  #lastWarn = 0;
  constructor(
    readonly inner: PushMetricExporter,
    readonly log: Logger,
    readonly protocol: string,
  ) {}

  export(metrics: ResourceMetrics, done: (result: ExportResult) => void): void {
    this.inner.export(metrics, (result) => {
      if (result.code !== ExportResultCode.SUCCESS && Date.now() - this.#lastWarn > 60_000) {
        this.#lastWarn = Date.now();
        this.log.warn(
          "OTLP metrics export failed: check OTEL_EXPORTER_OTLP_METRICS_ENDPOINT (or OTEL_EXPORTER_OTLP_ENDPOINT) and that the collector is up",
          { protocol: this.protocol, error: result.error?.message ?? "unknown" },
        );
      }
      done(result);
    });
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  selectAggregationTemporality = () => AggregationTemporality.CUMULATIVE;
}

async function exporterOf(cfg: OtlpMetricsConfig): Promise<PushMetricExporter> {
  if (cfg.protocol === "grpc") {
    const m = await import("@opentelemetry/exporter-metrics-otlp-grpc");
    return new m.OTLPMetricExporter();
  }
  const m = await import("@opentelemetry/exporter-metrics-otlp-proto");
  return new m.OTLPMetricExporter();
}

export async function createOtlpMetrics(
  cfg: OtlpMetricsConfig,
  opts: { render: () => Promise<string> | string; log: Logger },
): Promise<{ run(signal: AbortSignal): Promise<void> }> {
  const exporter = new LoggedExporter(await exporterOf(cfg), opts.log, cfg.protocol);
  const provider = new MeterProvider({
    resource: defaultResource().merge(
      resourceFromAttributes({
        "service.name": cfg.serviceName,
        "service.version": SERVICE_VERSION,
      }),
    ),
    readers: [
      new PeriodicExportingMetricReader({
        exporter,
        exportIntervalMillis: cfg.intervalMs,
        exportTimeoutMillis: Math.min(cfg.intervalMs, 30_000),
        metricProducers: [new TextProducer(opts.render)],
      }),
    ],
  });
  opts.log.info("exporting OTLP metrics", {
    protocol: cfg.protocol,
    intervalMs: cfg.intervalMs,
    serviceName: cfg.serviceName,
  });
  return {
    async run(signal: AbortSignal): Promise<void> {
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener("abort", () => resolve(), { once: true });
      });
      // The last values go out before the process ends.
      await provider.shutdown().catch((e) =>
        opts.log.warn("could not export the last OTLP metrics", { error: e })
      );
    },
  };
}
