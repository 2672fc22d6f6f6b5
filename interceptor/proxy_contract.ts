/**
 * What the data plane is given: its settings, the routes and the endpoint
 * updates the control side sends. A leaf module (types and one mapping), so
 * the control side, the isolate protocol and every data-plane module can
 * share it without importing the proxy.
 */
import type { ResponseSpec, RouteEntry, RouteRule } from "../shared/routing_table.ts";

export interface ProxyConfig {
  /** Readiness wait when the route sets none; 0 = bounded only by the request timeout. */
  readinessTimeoutMs: number;
  /** Bound on hold + connect + waiting for the response head; 0 = none. */
  requestTimeoutMs: number;
  /** KEDA_HTTP_LOG_REQUESTS: one access-log line per request. */
  logRequests?: boolean;
  responseHeaderTimeoutMs: number;
  connectTimeoutMs: number;
  coldStartHeader: boolean;
  maxHeldRequests: number;
  /** In-flight requests per pod; 0 = no cap. */
  podConcurrencyLimit: number;
  /** Idle keep-alive connections and stalled bodies are closed after this. */
  idleTimeoutMs: number;
  /** A request head must arrive within this once its first byte has. */
  headTimeoutMs: number;
  /** Retry-After seconds on the 503 answered when too many requests are held. */
  retryAfterSeconds: number;
  /** How HTTPS apps are verified; absent = Deno's roots only. */
  upstreamTls?: UpstreamTlsConfig;
}

/** Trust for connections to HTTPS apps (upstream_tls.ts loads it at start). */
export interface UpstreamTlsConfig {
  /** PEM certificates trusted besides Deno's roots. */
  caCerts: string[];
  /** KEDA_HTTP_PROXY_TLS_SKIP_VERIFY: no verification at all. */
  skipVerify: boolean;
  /** Where caCerts came from, and files skipped, for the start log. */
  notes: string[];
}

/**
 * A static response ready to write: status and headers as configured, the
 * body resolved from the route or its ConfigMap. Framing is generated when
 * it is written (http1_response.ts).
 */
export interface LiveResponse {
  status: number;
  headers: Array<[string, string]>;
  /** Whether headers set Content-Type (then none is derived from a ConfigMap key). */
  hasContentType: boolean;
  /** A fixed body: inline, or the ConfigMap key the route names. */
  body?: Uint8Array;
  /** Content-Type derived from the fixed key's extension. */
  contentType?: string;
  /** Key from the request path: the ConfigMap's entries by key. */
  files?: Map<string, Uint8Array>;
  /** Where files come from ("ConfigMap ns/name"), for error messages. */
  source?: string;
  /** Why the body cannot be served: answered 500 with this text. */
  problem?: string;
}

export interface LiveStaticRoute {
  rules: RouteRule[];
  /** Always: never contacts the app. WhenUnavailable: forwards while the app has a ready endpoint. */
  always: boolean;
  response: LiveResponse;
}

/**
 * A route as the data plane sees it: what matching and forwarding need from
 * the table entry (kept small: every table change is copied to each worker),
 * plus its counter slot, target keys and tie-break rank.
 */
export interface LiveRoute extends Pick<RouteEntry, "key" | "kind" | "rules" | "timeouts"> {
  slot: number;
  /** Among otherwise equal matches the lower rank wins: the creationTimestamp, so older first. */
  rank: string;
  targetKey: string;
  fallbackKey?: string;
  fallback?: { service: string; timeoutMs?: number };
  placeholder?: LiveResponse;
  staticRoutes: LiveStaticRoute[];
}

/** Resolves a configured static response (ConfigMap bodies included) for the data plane. */
export type ResponseResolver = (spec: ResponseSpec, defaultStatus: number) => LiveResponse;

/** The data plane's view of a table entry. */
export function liveRouteOf(
  e: RouteEntry,
  slot: number,
  targetKey: string,
  fallbackKey: string | undefined,
  opts: { rank: string; resolve: ResponseResolver },
): LiveRoute {
  const r: LiveRoute = {
    key: e.key,
    kind: e.kind,
    rules: e.rules,
    timeouts: e.timeouts,
    slot,
    rank: opts.rank,
    targetKey,
    staticRoutes: e.staticRoutes.map((s) => ({
      rules: s.rules,
      always: s.mode === "Always",
      response: opts.resolve(s.response, 200),
    })),
  };
  if (e.fallback && fallbackKey !== undefined) {
    r.fallbackKey = fallbackKey;
    r.fallback = { service: e.fallback.service };
    if (e.fallback.timeoutMs !== undefined) r.fallback.timeoutMs = e.fallback.timeoutMs;
  }
  if (e.placeholder) r.placeholder = opts.resolve(e.placeholder, 503);
  return r;
}

export interface EndpointUpdate {
  ip: string;
  port: number;
  /** Pod counter slot (shared in-flight count). */
  slot: number;
  /** A starting pod that passed its own readiness check, not yet ready by the kubelet. */
  early?: true;
}

export interface TargetUpdate {
  key: string;
  endpoints: EndpointUpdate[];
  h2c: boolean;
  /** The Service port's appProtocol is https: connections to it use TLS. */
  tls: boolean;
}
