/**
 * The scaler's /metrics: instruments updated by the gRPC server and the
 * interceptor fleet, and gauges read from live state at scrape time.
 */
import {
  type Counter,
  type Gauge,
  type Histogram,
  Registry,
  targetInfoLines,
} from "../shared/prometheus.ts";
import type { PodHealth, QueueAggregator } from "./queue_aggregator.ts";

/** What /metrics counts of a kind of object. */
export interface ObjectCounts {
  size: number;
  invalidCount(): number;
}

/** Go's service.name of the scaler (scaler/metrics/instruments.go), in target_info. */
export const SCALER_SERVICE_NAME = "keda-http-external-scaler";

/** Go HEAD's buckets of scaler_pinger_fetch_duration_seconds (scaler/metrics/instruments.go). */
export const FETCH_DURATION_BUCKETS = [
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
];

/** What the Go-named pinger gauges read at scrape time. */
export interface PingerSources {
  /** Interceptor endpoints being polled. */
  endpoints(): number;
  /** Of those, the ones whose last poll failed. */
  unreachable(): number;
}

export class ScalerMetrics {
  readonly registry = new Registry();
  /**
   * Go's scaler_pinger_fetch_duration_seconds. Go fetches every pod in one
   * cycle; here each pod is polled on its own tick, so one observation is
   * one pod's /queue poll.
   */
  readonly pingerFetchDuration: Histogram = this.registry.histogram(
    "scaler_pinger_fetch_duration_seconds",
    "Duration of a queue pinger fetch cycle across all interceptor pods",
    FETCH_DURATION_BUCKETS,
  );
  /** Go's: failed fetch cycles, i.e. polls that failed while no interceptor pod answered. */
  readonly pingerFetchErrors: Counter = this.registry.counter(
    "scaler_pinger_fetch_errors_total",
    "Total failed queue pinger fetch cycles",
  );
  readonly grpcRequests: Counter = this.registry.counter(
    "keda_http_scaler_grpc_requests_total",
    "gRPC calls answered, by method and status code.",
  );
  readonly streamsOpen: Gauge = this.registry.gauge(
    "keda_http_scaler_streams_open",
    "StreamIsActive streams currently open (KEDA holds one per ScaledObject).",
  );
  readonly streamActivations: Counter = this.registry.counter(
    "keda_http_scaler_stream_activations_total",
    "true messages pushed on a stream because its route became active (0 to more than 0 in flight, or a placeholder route served a request).",
  );
  readonly polls: Counter = this.registry.counter(
    "keda_http_scaler_interceptor_polls_total",
    "Polls of interceptor /queue, by result (ok, error).",
  );
  readonly watchReconnects: Counter = this.registry.counter(
    "keda_http_scaler_interceptor_watch_reconnects_total",
    "Times a /queue/watch stream to an interceptor ended and was reopened.",
  );

  /**
   * Gauges computed at scrape time from the aggregator and the
   * HTTPScaledObject and InterceptorRoute counts.
   */
  #pinger?: PingerSources;
  #wakes?: () => Array<{ kind: string }>;

  constructor() {
    // Rendered at 0 from the start, so rate() over it never sees a gap.
    this.pingerFetchErrors.inc({}, 0);
  }

  /**
   * Go's scaler_pinger_endpoints and scaler_pinger_unreachable_pods, read
   * from the interceptor fleet at scrape time (0 until this is called).
   */
  setPinger(sources: PingerSources): void {
    this.#pinger = sources;
  }

  /** keda_http_scaler_wakes reads the wakes in force from here (0 until this is called). */
  setWakes(list: () => Array<{ kind: string }>): void {
    this.#wakes = list;
  }

  /** The text exposition: the same on the Prometheus port and on the HTTP port's /metrics. */
  render(): string {
    return this.registry.render();
  }

  attach(
    aggregator: QueueAggregator,
    httpsos?: ObjectCounts,
    routes?: ObjectCounts,
  ): void {
    this.registry.collect(
      "scaler_pinger_unreachable_pods",
      "Number of interceptor pods that were unreachable in the last fetch cycle",
      () => [[{}, this.#pinger?.unreachable() ?? 0]],
    );
    this.registry.collect(
      "scaler_pinger_endpoints",
      "Number of interceptor endpoints the scaler is polling",
      () => [[{}, this.#pinger?.endpoints() ?? 0]],
    );
    this.registry.collect(
      "keda_http_scaler_interceptor_pods",
      "Interceptor pods known from the EndpointSlices, by health (pending, ok, stale, down).",
      () => {
        const counts: Record<PodHealth, number> = { pending: 0, ok: 0, stale: 0, down: 0 };
        for (const p of aggregator.podStatuses()) counts[p.health]++;
        return Object.entries(counts).map(([health, n]) => [{ health }, n]);
      },
    );
    this.registry.collect(
      "keda_http_scaler_interceptor_up",
      "1 when the interceptor pod answered its last poll, else 0.",
      () => aggregator.podStatuses().map((p) => [{ pod: p.name }, p.health === "ok" ? 1 : 0]),
    );
    this.registry.collect(
      "keda_http_scaler_interceptor_last_seen_seconds",
      "Seconds since the interceptor pod last answered (poll or watch line).",
      () =>
        aggregator.podStatuses().filter((p) => p.lastSeenAgeMs !== undefined).map((
          p,
        ) => [{ pod: p.name }, (p.lastSeenAgeMs ?? 0) / 1000]),
    );
    this.registry.collect(
      "keda_http_scaler_route_concurrency",
      "Requests in flight per route, summed over interceptor pods.",
      () => Object.entries(aggregator.snapshot()).map(([route, t]) => [{ route }, t.Concurrency]),
    );
    this.registry.collect(
      "keda_http_scaler_route_request_rate",
      "Requests per second per route over the route's window.",
      () => Object.entries(aggregator.snapshot()).map(([route, t]) => [{ route }, t.RPS]),
    );
    this.registry.collect(
      "keda_http_scaler_wakes",
      "Apps woken through POST /wake whose time has not run out, by kind (this scaler replica's).",
      () => {
        const counts: Record<string, number> = { HTTPScaledObject: 0, InterceptorRoute: 0 };
        for (const w of this.#wakes?.() ?? []) counts[w.kind] = (counts[w.kind] ?? 0) + 1;
        return Object.entries(counts).map(([kind, n]) => [{ kind }, n]);
      },
    );
    const byValidity = (name: string, help: string, objects: ObjectCounts) =>
      this.registry.collect(name, help, () => {
        const invalid = objects.invalidCount();
        return [[{ valid: "true" }, objects.size - invalid], [{ valid: "false" }, invalid]];
      });
    if (httpsos) {
      byValidity(
        "keda_http_scaler_httpscaledobjects",
        "HTTPScaledObjects the scaler knows, by validity.",
        httpsos,
      );
    }
    if (routes) {
      byValidity(
        "keda_http_scaler_interceptorroutes",
        "InterceptorRoutes the scaler knows, by validity.",
        routes,
      );
    }
    this.registry.lines(() => targetInfoLines(SCALER_SERVICE_NAME));
  }
}
