/**
 * The operator's Prometheus metrics, rendered in the text exposition format
 * (version 0.0.4) on /metrics by the shared registry.
 */
import { type Counter, Registry, type Summary, targetInfoLines } from "../shared/prometheus.ts";

/**
 * The operator's service.name in target_info. Ours: the Go operator has no
 * OpenTelemetry metrics (it serves controller-runtime's on
 * --metrics-bind-address).
 */
export const OPERATOR_SERVICE_NAME = "keda-http-operator";

export interface GaugeSources {
  queueDepth: () => number;
  leader: () => boolean;
  httpScaledObjects: () => number;
  interceptorRoutes: () => number;
  informersSynced: () => boolean;
}

/** The gauge each source feeds (booleans as 1 and 0), in the order they are rendered. */
const GAUGES: Record<keyof GaugeSources, [name: string, help: string]> = {
  queueDepth: ["keda_http_operator_workqueue_depth", "Keys waiting in the work queue."],
  leader: ["keda_http_operator_is_leader", "1 when this process holds the leader lease."],
  httpScaledObjects: ["keda_http_operator_httpscaledobjects", "HTTPScaledObjects in the cache."],
  interceptorRoutes: ["keda_http_operator_interceptorroutes", "InterceptorRoutes in the cache."],
  informersSynced: ["keda_http_operator_informers_synced", "1 once every watch cache has listed."],
};

export class OperatorMetrics {
  readonly #registry = new Registry();
  readonly reconciles: Counter = this.#registry.counter(
    "keda_http_operator_reconcile_total",
    "Reconciles of HTTPScaledObjects, by result (success, error).",
  );
  readonly routeReconciles: Counter = this.#registry.counter(
    "keda_http_operator_interceptorroute_reconcile_total",
    "Reconciles of InterceptorRoutes, by result (success, error).",
  );
  readonly errors: Counter = this.#registry.counter(
    "keda_http_operator_reconcile_errors_total",
    "Reconciles (of either kind) that failed and were retried with backoff.",
  );
  /** API writes by resource and verb; a restart that finds everything right adds none. */
  readonly writes: Counter = this.#registry.counter(
    "keda_http_operator_api_writes_total",
    "Write requests the operator sent to the API server, by resource and verb.",
  );
  readonly leaderTransitions: Counter = this.#registry.counter(
    "keda_http_operator_leader_transitions_total",
    "Times this process became or stopped being the leader.",
  );
  readonly #reconcileSeconds: Summary = this.#registry.summary(
    "keda_http_operator_reconcile_duration_seconds",
    "Time spent per reconcile.",
  );
  #sources?: GaugeSources;

  /**
   * The gauges read from live state at scrape time. Until this is called
   * they are not rendered at all (the controller does not exist yet); a
   * second call replaces the sources.
   */
  setSources(sources: GaugeSources): void {
    const first = !this.#sources;
    this.#sources = sources;
    if (!first) return;
    for (const [source, [name, help]] of Object.entries(GAUGES)) {
      const read = () => Number(this.#sources![source as keyof GaugeSources]());
      this.#registry.collect(name, help, () => [[{}, read()]]);
    }
  }

  observeReconcile(seconds: number): void {
    this.#reconcileSeconds.observe(seconds);
  }

  /** The text exposition: the same on the Prometheus port and on the admin port's /metrics. */
  render(): string {
    return this.#registry.render() + targetInfoLines(OPERATOR_SERVICE_NAME).join("\n") + "\n";
  }
}
