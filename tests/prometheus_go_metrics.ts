/**
 * The Prometheus families the Go add-on (HEAD) serves on :2223/metrics, as
 * test data; read from its source, not copied:
 *  - interceptor/metrics/instruments.go: instrument names, attributes
 *    (code, method, route_name, route_namespace), the duration buckets;
 *    interceptor/metrics/prometheus_test.go: the names after the OTel
 *    Prometheus exporter's translation (`_total` on counters, `_seconds`
 *    from unit "s", UpDownCounter as gauge).
 *  - scaler/metrics/instruments.go and scaler/metrics/prometheus_test.go:
 *    the scaler's pinger metrics and the fetch-duration buckets.
 *  - pkg/observability/metrics.go: the exporter runs WithoutScopeInfo (no
 *    otel_scope_* labels) and its resource has service.name and
 *    service.version, which the exporter writes as target_info.
 *  - client_golang's default registry (promhttp.Handler() in
 *    interceptor/main.go and scaler/main.go) adds process_* and go_*
 *    families; of those we serve process_resident_memory_bytes only.
 * The Go operator has no OpenTelemetry metrics (operator/main.go serves
 * controller-runtime's on --metrics-bind-address), so its Go list is empty.
 *
 * OURS lists our extra families (documented in README.md), by name and type.
 */
import type { ParsedFamily } from "./tools/promparse.ts";

export type GoFamily = Pick<ParsedFamily, "name" | "type" | "labels"> & { buckets?: number[] };

const ROUTE = ["route_name", "route_namespace"];
const REQUEST = ["code", "method", ...ROUTE];
const TARGET_INFO: GoFamily = {
  name: "target_info",
  type: "gauge",
  labels: ["service_name", "service_version"],
};

export const GO_FAMILIES: Record<"interceptor" | "scaler" | "operator", GoFamily[]> = {
  interceptor: [
    { name: "interceptor_request_count_total", type: "counter", labels: REQUEST },
    {
      name: "interceptor_request_duration_seconds",
      type: "histogram",
      labels: REQUEST,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
    },
    { name: "interceptor_request_concurrency", type: "gauge", labels: ROUTE },
    { name: "process_resident_memory_bytes", type: "gauge", labels: [] },
    TARGET_INFO,
  ],
  scaler: [
    {
      name: "scaler_pinger_fetch_duration_seconds",
      type: "histogram",
      labels: [],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5],
    },
    { name: "scaler_pinger_fetch_errors_total", type: "counter", labels: [] },
    { name: "scaler_pinger_unreachable_pods", type: "gauge", labels: [] },
    { name: "scaler_pinger_endpoints", type: "gauge", labels: [] },
    TARGET_INFO,
  ],
  operator: [],
};

/** Our extra families: [name, type]. */
export const OURS: Record<"interceptor" | "scaler" | "operator", Array<[string, string]>> = {
  interceptor: [
    ["interceptor_pending_request_count", "gauge"],
    ["interceptor_open_connections", "gauge"],
    ["interceptor_dataplane_isolates", "gauge"],
  ],
  scaler: [
    ["keda_http_scaler_grpc_requests_total", "counter"],
    ["keda_http_scaler_streams_open", "gauge"],
    ["keda_http_scaler_stream_activations_total", "counter"],
    ["keda_http_scaler_interceptor_polls_total", "counter"],
    ["keda_http_scaler_interceptor_watch_reconnects_total", "counter"],
    ["keda_http_scaler_interceptor_pods", "gauge"],
    ["keda_http_scaler_interceptor_up", "gauge"],
    ["keda_http_scaler_interceptor_last_seen_seconds", "gauge"],
    ["keda_http_scaler_route_concurrency", "gauge"],
    ["keda_http_scaler_route_request_rate", "gauge"],
    ["keda_http_scaler_httpscaledobjects", "gauge"],
    ["keda_http_scaler_interceptorroutes", "gauge"],
    ["keda_http_scaler_wakes", "gauge"],
  ],
  operator: [
    ["keda_http_operator_reconcile_total", "counter"],
    ["keda_http_operator_interceptorroute_reconcile_total", "counter"],
    ["keda_http_operator_reconcile_errors_total", "counter"],
    ["keda_http_operator_api_writes_total", "counter"],
    ["keda_http_operator_leader_transitions_total", "counter"],
    ["keda_http_operator_reconcile_duration_seconds", "summary"],
    ["keda_http_operator_workqueue_depth", "gauge"],
    ["keda_http_operator_is_leader", "gauge"],
    ["keda_http_operator_httpscaledobjects", "gauge"],
    ["keda_http_operator_interceptorroutes", "gauge"],
    ["keda_http_operator_informers_synced", "gauge"],
    ["target_info", "gauge"],
  ],
};
