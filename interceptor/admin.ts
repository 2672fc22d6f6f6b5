/**
 * The admin server's handler: /queue and /queue/watch for the scaler, the
 * routing table, endpoints per target, held requests and cold starts per
 * route (/route_status, for the scaler's dashboard), health, and Prometheus
 * metrics.
 */
import type { QueueCounts, RouteStatus } from "../shared/queue_counts.ts";
import {
  QUEUE_PATH,
  QUEUE_WATCH_PATH,
  queueResponse,
  queueWatchResponse,
  ROUTE_STATUS_PATH,
  routeStatusResponse,
} from "../shared/queue_counts.ts";
import { type RoutingTable, routingTableToJSON } from "../shared/routing_table.ts";
import type { Logger } from "../shared/log.ts";
import type { DeploymentInfo } from "./control.ts";

export interface AdminDeps {
  queueCounts(): QueueCounts;
  watchQueue(send: (changed: QueueCounts) => void): () => void;
  routingTable(): RoutingTable;
  routingPing(): Promise<RoutingTable>;
  deployments(): Record<string, DeploymentInfo>;
  /** Held requests and pods per route, recent cold starts: the scaler's dashboard reads it. */
  routeStatus(): RouteStatus;
  /** The first routing table has been synced. */
  ready(): boolean;
  draining(): boolean;
  metrics(): Promise<string>;
  log: Logger;
  /** Ends /queue/watch streams (at shutdown). */
  signal?: AbortSignal;
  /** Heartbeat interval of /queue/watch. */
  heartbeatMs?: number;
}

const ENDPOINTS = [
  "/queue",
  "/queue/watch",
  "/routing_table",
  "/routing_ping",
  "/deployments",
  "/route_status",
  "/livez",
  "/readyz",
  "/metrics",
];

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}

function text(body: string, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

export function adminHandler(deps: AdminDeps): (req: Request) => Promise<Response> {
  return async (req) => {
    const path = new URL(req.url).pathname.replace(/\/+$/, "") || "/";
    const method = req.method;
    const readOnly = method === "GET" || method === "HEAD";
    try {
      switch (path) {
        case QUEUE_PATH:
          if (!readOnly) break;
          return queueResponse(deps.queueCounts());
        case QUEUE_WATCH_PATH:
          if (!readOnly) break;
          return queueWatchResponse(() => deps.queueCounts(), (send) => deps.watchQueue(send), {
            ...(deps.signal ? { signal: deps.signal } : {}),
            ...(deps.heartbeatMs ? { heartbeatMs: deps.heartbeatMs } : {}),
          });
        case "/routing_table":
          if (!readOnly) break;
          return json(routingTableToJSON(deps.routingTable()));
        case "/routing_ping":
          if (!readOnly && method !== "POST") break;
          return json(routingTableToJSON(await deps.routingPing()));
        case "/deployments":
          if (!readOnly) break;
          return json(deps.deployments());
        case ROUTE_STATUS_PATH:
          if (!readOnly) break;
          return routeStatusResponse(deps.routeStatus());
        case "/livez":
        case "/healthz":
          if (!readOnly) break;
          return text("ok\n");
        case "/readyz":
          if (!readOnly) break;
          if (deps.draining()) return text("not ready: shutting down\n", 503);
          if (!deps.ready()) {
            return text("not ready: the routing table has not been synced yet\n", 503);
          }
          return text("ok\n");
        case "/metrics":
          if (!readOnly) break;
          return text(await deps.metrics(), 200, {
            "content-type": "text/plain; version=0.0.4; charset=utf-8",
          });
        default:
          return text(
            `no admin endpoint at ${path}; try one of ${ENDPOINTS.join(", ")}\n`,
            404,
          );
      }
      return text(`${method} is not allowed on ${path}\n`, 405, {
        allow: path === "/routing_ping" ? "GET, HEAD, POST" : "GET, HEAD",
      });
    } catch (e) {
      deps.log.error("admin request failed", { path, error: e });
      return text(`${path} failed: ${(e as Error).message}\n`, 500);
    }
  };
}
