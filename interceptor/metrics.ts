/**
 * Prometheus metrics. Each data-plane isolate records into its own
 * RequestMetrics (plain Maps, no locking); the main isolate merges their
 * snapshots on a scrape and renders the text format (shared/prometheus.ts).
 */
import {
  familyHeader,
  familyLines,
  histogramLines,
  labelPairs,
  type Labels,
  roundSum,
  targetInfoLines,
} from "../shared/prometheus.ts";

/**
 * Histogram bucket upper bounds, in seconds: Go HEAD's (OTel HTTP semantic
 * conventions; interceptor/metrics/instruments.go).
 */
export const DURATION_BUCKETS = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.075,
  0.1,
  0.25,
  0.5,
  0.75,
  1,
  2.5,
  5,
  7.5,
  10,
];

const METHODS = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "DELETE",
  "CONNECT",
  "OPTIONS",
  "TRACE",
  "PATCH",
]);

/** Go's label for every non-standard method (the OTel convention for synthetic values). */
export const METHOD_OTHER = "_OTHER";

/** Unknown methods share one label value so a client cannot blow up cardinality. */
export function methodLabel(method: string): string {
  return METHODS.has(method) ? method : METHOD_OTHER;
}

export interface MetricsSnapshot {
  /** [routeKey, method, code, count] */
  counts: Array<[string, string, number, number]>;
  /** [routeKey, method, code, [bucket counts (not cumulative)..., sum, count]] */
  durations: Array<[string, string, number, number[]]>;
}

const METHOD_LIST = [...METHODS, METHOD_OTHER];
const METHOD_INDEX = new Map(METHOD_LIST.map((m, i) => [m, i]));
/** Per series: a count per bucket and above the last, then the sum, then the count. */
const WIDTH = DURATION_BUCKETS.length + 3;

export class RequestMetrics {
  /**
   * routeKey -> (method index x 1000 + status code) -> histogram; numbers,
   * so no string per request. The count of a series is its histogram's.
   */
  readonly #series = new Map<string, Map<number, Float64Array>>();

  /** `routeKey` is "namespace/name", or "" for requests that matched no route. */
  record(routeKey: string, method: string, code: number, seconds: number): void {
    let byRoute = this.#series.get(routeKey);
    if (!byRoute) this.#series.set(routeKey, byRoute = new Map());
    const k = (METHOD_INDEX.get(method) ?? METHOD_LIST.length - 1) * 1000 + code;
    let h = byRoute.get(k);
    if (!h) byRoute.set(k, h = new Float64Array(WIDTH));
    let b = 0;
    while (b < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[b]!) b++;
    h[b]!++;
    h[WIDTH - 2]! += seconds;
    h[WIDTH - 1]!++;
  }

  /** Forgets routes that no longer exist (their series disappear). */
  retain(keys: Set<string>): void {
    for (const k of this.#series.keys()) if (k !== "" && !keys.has(k)) this.#series.delete(k);
  }

  snapshot(): MetricsSnapshot {
    const counts: MetricsSnapshot["counts"] = [];
    const durations: MetricsSnapshot["durations"] = [];
    for (const [route, m] of this.#series) {
      for (const [k, h] of m) {
        const method = METHOD_LIST[Math.floor(k / 1000)]!;
        counts.push([route, method, k % 1000, h[WIDTH - 1]!]);
        durations.push([route, method, k % 1000, [...h]]);
      }
    }
    return { counts, durations };
  }
}

function routeLabels(key: string): Labels {
  const slash = key.indexOf("/");
  return {
    route_name: slash >= 0 ? key.slice(slash + 1) : key,
    route_namespace: slash >= 0 ? key.slice(0, slash) : "",
  };
}

function routePairs(key: string): string {
  return labelPairs(routeLabels(key));
}

export interface Gauges {
  /** routeKey -> [concurrency, held] */
  routes: Array<[string, number, number]>;
  /** Open client connections across isolates. */
  connections: number;
  /** Resident memory of the whole process (all isolates). */
  rssBytes?: number;
  /** Data-plane isolates running now. */
  isolates?: number;
}

/** Go's service.name of the interceptor (interceptor/metrics/instruments.go), in target_info. */
export const INTERCEPTOR_SERVICE_NAME = "keda-http-interceptor";

/** Merges isolate snapshots and renders the Prometheus text exposition format. */
export function renderMetrics(snapshots: MetricsSnapshot[], gauges: Gauges): string {
  const counts = new Map<string, number>();
  for (const s of snapshots) {
    for (const [route, method, code, n] of s.counts) {
      const k = labelPairs({ code: String(code), method, ...routeLabels(route) });
      counts.set(k, (counts.get(k) ?? 0) + n);
    }
  }
  const durations = new Map<string, number[]>();
  for (const s of snapshots) {
    for (const [route, method, code, h] of s.durations) {
      const k = labelPairs({ code: String(code), method, ...routeLabels(route) });
      let acc = durations.get(k);
      if (!acc) durations.set(k, acc = new Array(WIDTH).fill(0));
      for (let i = 0; i < WIDTH; i++) acc[i]! += h[i] ?? 0;
    }
  }
  const sorted = [...gauges.routes].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const parts = [
    familyLines(
      "interceptor_request_count_total",
      "Total requests processed by the interceptor proxy",
      "counter",
      [...counts.keys()].sort().map((k) => [k, counts.get(k)!]),
    ),
    familyHeader(
      "interceptor_request_duration_seconds",
      "Time from request received to response written",
      "histogram",
    ),
    ...[...durations.keys()].sort().map((pairs) => {
      const h = durations.get(pairs)!;
      return histogramLines(
        "interceptor_request_duration_seconds",
        pairs,
        DURATION_BUCKETS,
        h,
        roundSum(h[WIDTH - 2]!),
        h[WIDTH - 1]!,
      );
    }),
    familyLines(
      "interceptor_request_concurrency",
      "Concurrent requests at the interceptor proxy",
      "gauge",
      sorted.map(([route, concurrency]) => [routePairs(route), concurrency]),
    ),
    familyLines(
      "interceptor_pending_request_count",
      "Requests held per route, waiting for a ready endpoint.",
      "gauge",
      sorted.map(([route, , held]) => [routePairs(route), held]),
    ),
    familyLines(
      "interceptor_open_connections",
      "Client connections open on the proxy ports.",
      "gauge",
      [["", gauges.connections]],
    ),
  ];
  if (gauges.isolates !== undefined) {
    parts.push(familyLines(
      "interceptor_dataplane_isolates",
      "Data-plane isolates sharing the proxy port (they follow the load unless KEDA_HTTP_PROXY_WORKERS pins them).",
      "gauge",
      [["", gauges.isolates]],
    ));
  }
  if (gauges.rssBytes !== undefined) {
    parts.push(familyLines(
      "process_resident_memory_bytes",
      "Resident memory size in bytes.",
      "gauge",
      [["", gauges.rssBytes]],
    ));
  }
  parts.push(targetInfoLines(INTERCEPTOR_SERVICE_NAME));
  return parts.map((lines) => lines.join("\n")).join("\n") + "\n";
}
