/**
 * The operator's admin HTTP server: /routing_table (the routing table built
 * from every HTTPScaledObject in the cache, the same JSON the interceptor
 * serves), /livez, /readyz (ready once the watch caches have listed; a
 * standby replica is ready too, so a rollout does not wait on leadership),
 * and /metrics.
 */
import type { Logger } from "../shared/log.ts";
import type { Member } from "../shared/lifetime.ts";

export interface AdminOptions {
  port: number;
  hostname?: string;
  log: Logger;
  /** The routing table's JSON text (routingTableToJSON of every HTTPScaledObject). */
  routingTable: () => string;
  ready: () => { ready: boolean; detail: string };
  metrics: () => string;
  /** Extra fields for /readyz and the log (leader, identity). */
  info?: () => Record<string, unknown>;
  /** Called with the bound port once listening. */
  onListen?: (port: number) => void;
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });

export function adminHandler(o: AdminOptions): (req: Request) => Response {
  return (req) => {
    const url = new URL(req.url);
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("only GET is served here\n", { status: 405, headers: { allow: "GET" } });
    }
    switch (url.pathname) {
      case "/routing_table":
        return new Response(o.routingTable(), {
          headers: { "content-type": "application/json" },
        });
      case "/livez":
        return new Response("ok\n");
      case "/readyz": {
        const r = o.ready();
        return json(
          { ready: r.ready, detail: r.detail, ...(o.info?.() ?? {}) },
          r.ready ? 200 : 503,
        );
      }
      case "/metrics":
        return new Response(o.metrics(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      default:
        return new Response(
          "not found: the operator serves /routing_table, /livez, /readyz and /metrics\n",
          { status: 404 },
        );
    }
  };
}

/** The admin server as a lifetime member. */
export function serveAdmin(o: AdminOptions): Member {
  return async (signal) => {
    const handler = adminHandler(o);
    const server = Deno.serve({
      port: o.port,
      hostname: o.hostname ?? "0.0.0.0",
      signal,
      onListen: ({ port }) => {
        o.log.info("admin server listening", { port });
        o.onListen?.(port);
      },
    }, (req) => {
      try {
        return handler(req);
      } catch (e) {
        o.log.error("admin request failed", { path: new URL(req.url).pathname, error: e });
        return new Response("internal error; see the operator log\n", { status: 500 });
      }
    });
    await server.finished;
  };
}
