/**
 * The Prometheus port of all three programs, as in the Go add-on
 * (OTEL_PROM_EXPORTER_ENABLED, OTEL_PROM_EXPORTER_PORT = 2223): GET or HEAD
 * /metrics answers the program's text exposition; every other path is 404.
 * The admin ports keep /metrics as an alias that renders the same text.
 */
import type { Logger } from "./log.ts";

/** The content type of the text exposition format, as every /metrics of ours answers it. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export interface PrometheusServerOptions {
  port: number;
  /** Default 0.0.0.0, as Go binds it. */
  hostname?: string;
  /** The text exposition, rendered at each scrape. */
  render: () => string | Promise<string>;
  log: Logger;
  /** Called with the bound port once listening (tests pass port 0). */
  onListen?: (port: number) => void;
}

/** The request handler alone, for tests and for servers that mount it. */
export function prometheusHandler(
  render: PrometheusServerOptions["render"],
  log: Logger,
): (req: Request) => Promise<Response> {
  return async (req) => {
    const path = new URL(req.url).pathname;
    if (path !== "/metrics") {
      return new Response(`no endpoint at ${path}; metrics are at /metrics\n`, { status: 404 });
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response(`${req.method} is not allowed on /metrics\n`, {
        status: 405,
        headers: { allow: "GET, HEAD" },
      });
    }
    try {
      const body = await render();
      return new Response(req.method === "HEAD" ? null : body, {
        headers: { "content-type": METRICS_CONTENT_TYPE },
      });
    } catch (e) {
      log.error("rendering /metrics failed", { error: e });
      return new Response(`/metrics failed: ${(e as Error).message}\n`, { status: 500 });
    }
  };
}

/**
 * A lifetime member serving /metrics on its own port until the signal
 * aborts. A port that cannot be bound is a start failure (it rejects), as
 * in Go, where the metrics server's error stops the program.
 */
export function servePrometheus(
  options: PrometheusServerOptions,
): (signal: AbortSignal) => Promise<void> {
  return async (signal) => {
    let server: Deno.HttpServer;
    try {
      server = Deno.serve({
        hostname: options.hostname ?? "0.0.0.0",
        port: options.port,
        signal,
        onListen: (addr) => {
          options.log.info("prometheus metrics listening", { port: addr.port, path: "/metrics" });
          options.onListen?.(addr.port);
        },
      }, prometheusHandler(options.render, options.log));
    } catch (e) {
      throw new Error(
        `cannot listen on the Prometheus port ${options.port} (OTEL_PROM_EXPORTER_PORT): ${
          (e as Error).message
        }`,
      );
    }
    await server.finished;
  };
}
