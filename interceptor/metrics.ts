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
} from "../shared/prometheus.ts";

/** Histogram bucket upper bounds, in seconds. */
export const DURATION_BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
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

/** Unknown methods share one label value so a client cannot blow up cardinality. */
export function methodLabel(method: string): string {
  return METHODS.has(method) ? method : "OTHER";
}

export interface MetricsSnapshot {
  /** [routeKey, method, code, count] */
  counts: Array<[string, string, number, number]>;
  /** [routeKey, bucket counts (cumulative is computed on render)..., sum, count] */
  durations: Array<[string, number[]]>;
}

const METHOD_LIST = [...METHODS, "OTHER"];
const METHOD_INDEX = new Map(METHOD_LIST.map((m, i) => [m, i]));

export class RequestMetrics {
  /** routeKey -> (method index x 1000 + status code) -> count; numbers, so no string per request. */
  readonly #counts = new Map<string, Map<number, number>>();
  readonly #durations = new Map<string, Float64Array>();

  /** `routeKey` is "namespace/name", or "" for requests that matched no route. */
  record(routeKey: string, method: string, code: number, seconds: number): void {
    let byRoute = this.#counts.get(routeKey);
    if (!byRoute) this.#counts.set(routeKey, byRoute = new Map());
    const k = (METHOD_INDEX.get(method) ?? METHOD_LIST.length - 1) * 1000 + code;
    byRoute.set(k, (byRoute.get(k) ?? 0) + 1);
    let h = this.#durations.get(routeKey);
    if (!h) {
      this.#durations.set(routeKey, h = new Float64Array(DURATION_BUCKETS.length + 3));
    }
    let b = 0;
    while (b < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[b]!) b++;
    h[b]!++;
    h[DURATION_BUCKETS.length + 1]! += seconds;
    h[DURATION_BUCKETS.length + 2]!++;
  }

  /** Forgets routes that no longer exist (their series disappear). */
  retain(keys: Set<string>): void {
    for (const k of this.#counts.keys()) if (k !== "" && !keys.has(k)) this.#counts.delete(k);
    for (const k of this.#durations.keys()) if (k !== "" && !keys.has(k)) this.#durations.delete(k);
  }

  snapshot(): MetricsSnapshot {
    const counts: MetricsSnapshot["counts"] = [];
    for (const [route, m] of this.#counts) {
      for (const [k, n] of m) {
        counts.push([route, METHOD_LIST[Math.floor(k / 1000)]!, k % 1000, n]);
      }
    }
    const durations: MetricsSnapshot["durations"] = [];
    for (const [route, h] of this.#durations) durations.push([route, [...h]]);
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

/** Float sums pick up noise (0.1 + 0.2); twelve digits are plenty for seconds. */
function roundSum(v: number): number {
  return Number.isInteger(v) ? v : +v.toPrecision(12);
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

/** Merges isolate snapshots and renders the Prometheus text exposition format. */
export function renderMetrics(snapshots: MetricsSnapshot[], gauges: Gauges): string {
  const counts = new Map<string, number>();
  for (const s of snapshots) {
    for (const [route, method, code, n] of s.counts) {
      const k = labelPairs({ code: String(code), method, ...routeLabels(route) });
      counts.set(k, (counts.get(k) ?? 0) + n);
    }
  }
  const width = DURATION_BUCKETS.length + 3;
  const durations = new Map<string, number[]>();
  for (const s of snapshots) {
    for (const [route, h] of s.durations) {
      let acc = durations.get(route);
      if (!acc) durations.set(route, acc = new Array(width).fill(0));
      for (let i = 0; i < width; i++) acc[i]! += h[i] ?? 0;
    }
  }
  const sorted = [...gauges.routes].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const parts = [
    familyLines(
      "interceptor_request_count_total",
      "Requests answered by the interceptor, by status code, method and route.",
      "counter",
      [...counts.keys()].sort().map((k) => [k, counts.get(k)!]),
    ),
    familyHeader(
      "interceptor_request_duration_seconds",
      "Time from the request head to the end of the response, held time included.",
      "histogram",
    ),
    ...[...durations.keys()].sort().map((route) => {
      const h = durations.get(route)!;
      return histogramLines(
        "interceptor_request_duration_seconds",
        routePairs(route),
        DURATION_BUCKETS,
        h,
        roundSum(h[DURATION_BUCKETS.length + 1]!),
        h[width - 1]!,
      );
    }),
    familyLines(
      "interceptor_request_concurrency",
      "Requests in flight per route, held ones included.",
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
  return parts.map((lines) => lines.join("\n")).join("\n") + "\n";
}
