/**
 * The Prometheus text → OTLP bridge: our reading of the text checked against
 * the Prometheus project's own parser (expfmt, tests/tools/promparse) on
 * generated families, and the data points it makes; then a real scaler's
 * metrics through the OTLP exporters into a real collector (Jaeger v2, whose
 * Prometheus exporter shows what it received).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { DataPointType, type HistogramMetricData } from "@opentelemetry/sdk-metrics";
import { familyHeader, histogramLines, labelPairs, sampleLine } from "./prometheus.ts";
import { metricDataOf, parsePrometheusText } from "./otlp_metrics_sdk.ts";
import { parseExposition } from "../tests/tools/promparse.ts";
import { startJaeger } from "../tests/tools/jaeger.ts";
import { createLogger } from "./log.ts";
import { parseConfig, scalerEnvSchema } from "./config.ts";
import { startOtlpMetrics } from "./otlp_metrics.ts";
import { httpsoObject, startTestScaler } from "../scaler/testing/harness.ts";
import { QueueServer } from "../scaler/testing/queue_server.ts";

const name = fc.stringMatching(/^[a-z][a-z0-9_]{0,12}$/).map((s) => `t_${s}`);
const labelName = fc.stringMatching(/^[a-z][a-z0-9_]{0,6}$/).filter((s) => s !== "le");
// Values with the characters the format escapes, and others.
const labelValue = fc.string({
  unit: fc.constantFrom("a", "Z", "0", " ", "\\", '"', "\n", "{", "}", ",", "=", "-"),
  maxLength: 8,
});
const labels = fc.dictionary(labelName, labelValue, { maxKeys: 3 });
const value = fc.oneof(
  fc.integer({ min: 0, max: 1e9 }),
  fc.double({ min: 0, max: 1e6, noNaN: true }),
);
const bounds = fc.uniqueArray(fc.double({ min: 0.001, max: 1000, noNaN: true }), {
  minLength: 1,
  maxLength: 6,
}).map((b) => b.sort((x, y) => x - y));

interface Gen {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  series: Array<{ labels: Record<string, string>; value: number; counts: number[] }>;
  bounds: number[];
}

const family: fc.Arbitrary<Gen> = fc.record({
  name,
  help: fc.string({ unit: fc.constantFrom("a", " ", "\\", "\n", "x", "9"), maxLength: 12 }),
  type: fc.constantFrom("counter" as const, "gauge" as const, "histogram" as const),
  bounds,
  series: fc.array(
    fc.record({
      labels,
      value,
      counts: fc.array(fc.integer({ min: 0, max: 1000 }), { minLength: 7, maxLength: 7 }),
    }),
    { minLength: 1, maxLength: 3 },
  ),
}).map((f) => {
  // One series per label set, as a registry has.
  const seen = new Set<string>();
  const series = f.series.filter((s) => {
    const k = labelPairs(s.labels);
    return !seen.has(k) && (seen.add(k), true);
  });
  return { ...f, name: f.type === "counter" ? `${f.name}_total` : f.name, series };
});

function render(families: Gen[]): string {
  const out: string[] = [];
  for (const f of families) {
    out.push(...familyHeader(f.name, f.help, f.type));
    for (const s of f.series) {
      const pairs = labelPairs(s.labels);
      if (f.type === "histogram") {
        const counts = s.counts.slice(0, f.bounds.length + 1);
        const count = counts.reduce((a, b) => a + b, 0);
        out.push(...histogramLines(f.name, pairs, f.bounds, counts, s.value, count));
      } else out.push(sampleLine(f.name, pairs, s.value));
    }
  }
  return out.join("\n") + "\n";
}

// The reference lists families by name.
const byName = (a: { name: string }, b: { name: string }) =>
  a.name < b.name ? -1 : a.name > b.name ? 1 : 0;

const uniqueNames = fc.uniqueArray(family, { minLength: 1, maxLength: 4, selector: (f) => f.name });

Deno.test("our reading of the text exposition agrees with expfmt on generated families", async () => {
  await fc.assert(
    fc.asyncProperty(uniqueNames, async (families) => {
      const text = render(families);
      const ref = await parseExposition(text);
      const ours = parsePrometheusText(text);
      assert.deepEqual(
        ours.map((f) => {
          const labelNames = new Set<string>();
          for (const s of f.samples) {
            for (const k of Object.keys(s.labels)) if (k !== "le") labelNames.add(k);
          }
          const buckets = f.type === "histogram"
            ? [...new Set(f.samples.map((s) => s.labels.le).filter((le) => le && le !== "+Inf"))]
              .map(Number).sort((a, b) => a - b)
            : undefined;
          const series = new Set(f.samples.map((s) => {
            const { le: _le, ...rest } = s.labels;
            return labelPairs(rest);
          })).size;
          return {
            name: f.name,
            type: f.type,
            help: f.help,
            labels: [...labelNames].sort(),
            ...(buckets ? { buckets } : {}),
            series,
          };
        }).sort(byName),
        ref.map((f) => ({ ...f, labels: [...f.labels].sort() })).sort(byName),
        text,
      );
      // The label values themselves, escapes undone.
      for (const [i, f] of families.entries()) {
        const got = ours[i]!.samples.filter((s) => s.name === f.name || s.name === `${f.name}_sum`);
        assert.deepEqual(got.map((s) => s.labels), f.series.map((s) => ({ ...s.labels })), text);
      }
    }),
    { numRuns: 60 },
  );
});

Deno.test("HELP text with a backslash or a line feed is escaped (found by the property above)", async () => {
  const lines = familyHeader("x", "a\\b\nc", "gauge");
  assert.equal(lines[0], "# HELP x a\\\\b\\nc");
  const [ref] = await parseExposition([...lines, "x 1", ""].join("\n"));
  assert.equal(ref!.help, "a\\b\nc");
  assert.equal(parsePrometheusText([...lines, "x 1", ""].join("\n"))[0]!.help, "a\\b\nc");
});

Deno.test("OTLP data points: counters as sums without _total, histograms per bucket, summaries", () => {
  const text = [
    "# HELP requests_total Requests.",
    "# TYPE requests_total counter",
    'requests_total{code="200"} 7',
    'requests_total{code="503"} 1',
    "# HELP inflight In flight.",
    "# TYPE inflight gauge",
    "inflight 3",
    "# HELP latency_seconds Latency.",
    "# TYPE latency_seconds histogram",
    'latency_seconds_bucket{route="a",le="0.1"} 2',
    'latency_seconds_bucket{route="a",le="1"} 5',
    'latency_seconds_bucket{route="a",le="+Inf"} 6',
    'latency_seconds_sum{route="a"} 4.5',
    'latency_seconds_count{route="a"} 6',
    "# HELP gc_seconds GC.",
    "# TYPE gc_seconds summary",
    "gc_seconds_sum 0.25",
    "gc_seconds_count 4",
    'target_info{service_name="x"} 1',
    "",
  ].join("\n");
  const data = metricDataOf(parsePrometheusText(text), [1, 0], [2, 0]);
  assert.deepEqual(data.map((d) => [d.descriptor.name, d.dataPointType]), [
    ["requests", DataPointType.SUM],
    ["inflight", DataPointType.GAUGE],
    ["latency_seconds", DataPointType.HISTOGRAM],
    ["gc_seconds", DataPointType.HISTOGRAM],
  ]);
  assert.deepEqual(data[0]!.dataPoints.map((p) => [p.attributes, p.value]), [
    [{ code: "200" }, 7],
    [{ code: "503" }, 1],
  ]);
  assert.equal(data[0]!.dataPointType === DataPointType.SUM && data[0]!.isMonotonic, true);
  const h = (data[2] as HistogramMetricData).dataPoints[0]!;
  assert.deepEqual(h.attributes, { route: "a" });
  assert.deepEqual(h.value, {
    buckets: { boundaries: [0.1, 1], counts: [2, 3, 1] },
    sum: 4.5,
    count: 6,
  });
  assert.deepEqual(h.startTime, [1, 0]);
  const s = (data[3] as HistogramMetricData).dataPoints[0]!;
  assert.deepEqual(s.value, { buckets: { boundaries: [], counts: [4] }, sum: 0.25, count: 4 });
});

function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    // The collector names a counter with _total whatever we called it.
    out.set(m[2] === "counter" ? m[1]!.replace(/_total$/, "") : m[1]!, m[2]!);
  }
  return out;
}

for (const protocol of ["grpc", "http/protobuf"] as const) {
  Deno.test({
    name: `a scaler's metrics reach a real collector over OTLP (${protocol})`,
    sanitizeOps: false,
    sanitizeResources: false,
  }, async () => {
    await using jaeger = await startJaeger();
    // The exporters read the SDK's standard variables, as in a pod.
    const endpoint = protocol === "grpc"
      ? `http://${jaeger.otlpGrpcEndpoint}`
      : `${jaeger.otlpHttpEndpoint}/v1/metrics`;
    Deno.env.set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint);
    const interceptor = new QueueServer();
    await using scaler = await startTestScaler({
      httpsos: [httpsoObject("apps", "shop", { hosts: ["shop.test"] })],
      interceptors: [interceptor],
    });
    const stop = new AbortController();
    let running: Promise<void> | undefined;
    try {
      const config = parseConfig("scaler", scalerEnvSchema(), {
        KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: "keda",
        KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: "interceptor-admin",
        OTEL_EXPORTER_OTLP_METRICS_ENABLED: "true",
        OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: protocol,
        OTEL_METRIC_EXPORT_INTERVAL: "200",
      });
      const lines: string[] = [];
      const log = createLogger({ level: "info", sink: (l) => lines.push(l) });
      const render = () => scaler.parts.metrics.render();
      const otlp = await startOtlpMetrics(config.otlpMetrics, { render, log });
      assert.ok(otlp, "enabled");
      running = otlp.run(stop.signal);
      const text = await render();
      // Every family that has samples (the collector drops empty ones), with
      // its type; our target_info is the OTLP resource there (job, instance).
      const ours = [...families(text)].filter(([n]) =>
        n !== "target_info" && new RegExp(`^${n}(_total|_bucket|_sum)?[{ ]`, "m").test(text)
      );
      assert.ok(ours.length > 5, `the scaler renders its families: ${ours}`);
      let got = new Map<string, string>();
      let body = "";
      const end = Date.now() + 20_000;
      while (Date.now() < end) {
        body = await (await fetch(jaeger.metricsUrl)).text();
        got = families(body);
        if (ours.every(([n]) => got.has(n))) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      for (const [n, type] of ours) {
        assert.equal(got.get(n), type, `${n} (${type}) at the collector:\n${body.slice(0, 3000)}`);
      }
      assert.match(body, /job="keda-http-external-scaler"/, "the service name as the job");
      assert.ok(!lines.some((l) => l.includes("export failed")), lines.join("\n"));
    } finally {
      stop.abort();
      await running;
      Deno.env.delete("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
    }
  });
}
