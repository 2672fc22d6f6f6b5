/**
 * The scaler's HTTP server (KEDA_HTTP_SCALER_HTTP_PORT):
 *   GET /queue         aggregated counts, {"ns/name": {Concurrency, RequestCount, RPS}}
 *   GET /queue_ping    polls every interceptor now, then answers like /queue
 *   GET /interceptors  the interceptor pods and their health
 *   GET /livez         200 while the process runs
 *   GET /readyz        200 once ready, 503 with the reason otherwise
 *   GET /metrics       Prometheus text format
 */
import type { Logger } from "../shared/log.ts";
import type { InterceptorFleet } from "./interceptor_fleet.ts";
import type { QueueAggregator } from "./queue_aggregator.ts";
import type { Readiness } from "./readiness.ts";
import type { ScalerMetrics } from "./scaler_metrics.ts";

export interface ScalerHttpOptions {
  aggregator: QueueAggregator;
  fleet: InterceptorFleet;
  readiness: Readiness;
  metrics: ScalerMetrics;
  log: Logger;
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function text(body: string, status = 200): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

export function scalerHttpHandler(
  options: ScalerHttpOptions,
): (req: Request) => Promise<Response> {
  return async (req) => {
    const url = new URL(req.url);
    if (req.method !== "GET" && req.method !== "HEAD") {
      return text(`${req.method} is not supported here; use GET\n`, 405);
    }
    switch (url.pathname) {
      case "/queue":
        return json(options.aggregator.snapshot());
      case "/queue_ping":
        // Bounded by the fetch timeout; not tied to req.signal, which Deno aborts after success.
        await options.fleet.pingAll();
        return json(options.aggregator.snapshot());
      case "/interceptors":
        return json(options.aggregator.podStatuses());
      case "/livez":
      case "/healthz":
        return text("ok\n");
      case "/readyz":
        return options.readiness.ready
          ? text("ok\n")
          : text(`not ready: ${options.readiness.reason()}\n`, 503);
      case "/metrics":
        return new Response(options.metrics.registry.render(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      default:
        return text(
          `no such endpoint ${url.pathname}; try /queue, /queue_ping, /interceptors, /livez, /readyz, /metrics\n`,
          404,
        );
    }
  };
}

/** A lifetime member serving the handler on `port` until the signal aborts. */
export function serveScalerHttp(
  options: ScalerHttpOptions & { port: number; hostname?: string },
): (signal: AbortSignal) => Promise<void> {
  return async (signal) => {
    const handler = scalerHttpHandler(options);
    const server = Deno.serve({
      port: options.port,
      hostname: options.hostname ?? "0.0.0.0",
      signal,
      onListen: ({ port }) => options.log.info("HTTP server listening", { port }),
      onError: (e) => {
        options.log.error("HTTP handler failed", { error: e });
        return text("internal error\n", 500);
      },
    }, handler);
    await server.finished;
  };
}
