/**
 * The operator's admin HTTP server: /routing_table (the routing table built
 * from every HTTPScaledObject in the cache, the same JSON the interceptor
 * serves), /livez and /healthz (the Go operator's name), /readyz (ready
 * once the watch caches have listed; a standby replica is ready too, so a
 * rollout does not wait on leadership), and /metrics. Also the probe server
 * of the Go operator's --health-probe-bind-address: /healthz and /readyz
 * alone, with the same answers.
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

function readyz(o: Pick<AdminOptions, "ready" | "info">): Response {
  const r = o.ready();
  return json({ ready: r.ready, detail: r.detail, ...(o.info?.() ?? {}) }, r.ready ? 200 : 503);
}

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
      case "/healthz":
        return new Response("ok\n");
      case "/readyz":
        return readyz(o);
      case "/metrics":
        return new Response(o.metrics(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      default:
        return new Response(
          "not found: the operator serves /routing_table, /livez, /healthz, /readyz and /metrics\n",
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

export type ProbeOptions = Pick<
  AdminOptions,
  "port" | "hostname" | "log" | "ready" | "info" | "onListen"
>;

/** The probe server's answers: /healthz (alive) and /readyz, as on the admin port. */
export function probeHandler(o: ProbeOptions): (req: Request) => Response {
  return (req) => {
    const path = new URL(req.url).pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("only GET is served here\n", { status: 405, headers: { allow: "GET" } });
    }
    if (path === "/healthz" || path === "/livez") return new Response("ok\n");
    if (path === "/readyz") return readyz(o);
    return new Response("not found: the probe port serves /healthz and /readyz\n", {
      status: 404,
    });
  };
}

/** The probe server (--health-probe-bind-address) as a lifetime member. */
export function serveProbes(o: ProbeOptions): Member {
  return async (signal) => {
    const handler = probeHandler(o);
    const server = Deno.serve({
      port: o.port,
      hostname: o.hostname || "0.0.0.0",
      signal,
      onListen: ({ port }) => {
        o.log.info("probe server listening", { port });
        o.onListen?.(port);
      },
    }, handler);
    await server.finished;
  };
}
