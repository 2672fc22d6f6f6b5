/**
 * The scaler's parts, built from its configuration: the HTTPScaledObject
 * and InterceptorRoute indexes, the queue aggregator, the interceptor
 * fleet, the gRPC server, the HTTP server and readiness. main.ts adds the
 * Kubernetes informers and runs the members; tests build the same parts
 * around their own stores.
 */
import type { ScalerConfig } from "../shared/config.ts";
import type { Logger } from "../shared/log.ts";
import { Dashboard } from "./dashboard.ts";
import { ExternalScalerServer } from "./external_scaler.ts";
import { serveScalerHttp } from "./http_server.ts";
import { HTTPScaledObjectIndex } from "./httpso_index.ts";
import { InterceptorFleet } from "./interceptor_fleet.ts";
import { QueueAggregator } from "./queue_aggregator.ts";
import { Readiness } from "./readiness.ts";
import { InterceptorRouteIndex, rateConfigOf } from "./route_index.ts";
import { ScalerMetrics } from "./scaler_metrics.ts";
import type { Tracing } from "../shared/tracing.ts";
import { ScalingAnswers } from "./scaling_answers.ts";
import { servePrometheus } from "../shared/prometheus_server.ts";

export const HTTPSOS_LISTED = "HTTPScaledObjects listed";
export const ROUTES_LISTED = "InterceptorRoutes listed";
export const ENDPOINTS_LISTED = "interceptor endpoints listed";
export const POLLED_ONCE = "interceptors polled once";
/** Live readiness check: with interceptor pods known, one of them must answer. */
export const INTERCEPTOR_ANSWERING =
  "an interceptor answering /queue (none answered its last poll)";

export interface ScalerParts {
  readiness: Readiness;
  httpsos: HTTPScaledObjectIndex;
  routes: InterceptorRouteIndex;
  aggregator: QueueAggregator;
  metrics: ScalerMetrics;
  fleet: InterceptorFleet;
  grpc: ExternalScalerServer;
  /** The live dashboard on the HTTP port (/dashboard). */
  dashboard: Dashboard;
  /**
   * Lifetime members: the interceptor fleet, the gRPC server, the HTTP
   * server, the dashboard's feed, and the Prometheus port unless OTEL_PROM_EXPORTER_ENABLED=false.
   */
  members: Array<[string, (signal: AbortSignal) => Promise<void>]>;
  /** Call once the interceptor endpoints are known: polls them all, then marks readiness. */
  endpointsListed(): Promise<void>;
}

export interface ScalerDeps {
  /** "namespace/name" → raw HTTPScaledObject, e.g. an Informer's store. */
  httpsoStore: ReadonlyMap<string, unknown>;
  /** "namespace/name" → raw InterceptorRoute, e.g. an Informer's store. */
  routeStore: ReadonlyMap<string, unknown>;
  log: Logger;
  /** Hold a /queue/watch stream per interceptor (default true). */
  watch?: boolean;
  /** Host to bind both servers to (default 0.0.0.0). */
  hostname?: string;
  /** OpenTelemetry traces (shared/tracing.ts), when enabled. */
  tracing?: Tracing | null;
}

export function buildScaler(config: ScalerConfig, deps: ScalerDeps): ScalerParts {
  const { log } = deps;
  const readiness = new Readiness([
    HTTPSOS_LISTED,
    ROUTES_LISTED,
    ENDPOINTS_LISTED,
    POLLED_ONCE,
  ]);
  const httpsos = new HTTPScaledObjectIndex(deps.httpsoStore);
  const routes = new InterceptorRouteIndex(deps.routeStore);
  const aggregator = new QueueAggregator({
    staleTtlMs: config.staleCountsTtlMs,
    rateConfigOf: (key) => rateConfigOf(key, routes, httpsos),
    log,
  });
  const metrics = new ScalerMetrics();
  metrics.attach(aggregator, httpsos, routes);
  const fleet = new InterceptorFleet({
    aggregator,
    tickMs: config.queueTickMs,
    fetchTimeoutMs: config.fetchTimeoutMs,
    watch: deps.watch,
    log: log.with({ part: "fleet" }),
    metrics,
    tracing: deps.tracing ?? null,
  });
  // Not ready while every known interceptor fails: its counts are guesses.
  // No interceptor at all is a fresh install (or scaled to zero), not a fault.
  readiness.addCheck(INTERCEPTOR_ANSWERING, () => fleet.size === 0 || fleet.anyAnswering);
  const grpc = new ExternalScalerServer({
    answers: new ScalingAnswers({
      lookup: (namespace, name) => httpsos.lookup(namespace, name),
      lookupRoute: (namespace, name) => routes.lookup(namespace, name),
      aggregator,
      watchNamespace: config.watchNamespace,
    }),
    readiness,
    streamIntervalMs: config.streamIntervalMs,
    log: log.with({ part: "grpc" }),
    metrics,
    tracing: deps.tracing ?? null,
  });
  const wakes = grpc.answers.wakes;
  metrics.setWakes(() => wakes.list());
  const dashboard = new Dashboard({
    aggregator,
    answers: grpc.answers,
    httpsoStore: deps.httpsoStore,
    routeStore: deps.routeStore,
    log: log.with({ part: "dashboard" }),
    fetchTimeoutMs: config.fetchTimeoutMs,
  });
  return {
    readiness,
    httpsos,
    routes,
    aggregator,
    metrics,
    fleet,
    grpc,
    dashboard,
    members: [
      ["interceptor fleet", (s) => fleet.run(s)],
      ["dashboard", (s) => dashboard.run(s)],
      ["grpc server", grpc.serve(config.grpcPort, deps.hostname)],
      [
        "http server",
        serveScalerHttp({
          aggregator,
          fleet,
          readiness,
          metrics,
          log,
          grpc,
          dashboard,
          wakeToken: config.wakeToken,
          port: config.httpPort,
          hostname: deps.hostname,
        }),
      ],
      ...prometheusMember(config, metrics, deps),
    ],
    async endpointsListed() {
      if (readiness.started) return;
      readiness.done(ENDPOINTS_LISTED);
      await fleet.pingAll();
      readiness.done(POLLED_ONCE);
    },
  };
}

/** Go's Prometheus port (OTEL_PROM_EXPORTER_*): the same text as the HTTP port's /metrics. */
function prometheusMember(
  config: ScalerConfig,
  metrics: ScalerMetrics,
  deps: ScalerDeps,
): Array<[string, (signal: AbortSignal) => Promise<void>]> {
  if (!config.prometheus.enabled) return [];
  return [[
    "prometheus",
    servePrometheus({
      port: config.prometheus.port,
      hostname: deps.hostname,
      render: () => metrics.render(),
      log: deps.log,
    }),
  ]];
}
