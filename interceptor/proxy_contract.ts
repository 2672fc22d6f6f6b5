/**
 * What the data plane is given: its settings, the routes and the endpoint
 * updates the control side sends. A leaf module (types and one mapping), so
 * the control side, the isolate protocol and every data-plane module can
 * share it without importing the proxy.
 */
import type { RouteEntry } from "../shared/routing_table.ts";

export interface ProxyConfig {
  /** Readiness wait when the route sets no conditionWait (resolved from env by deadlines.ts). */
  readinessTimeoutMs: number;
  /** Bound on hold + connect + waiting for the response head; 0 = none. */
  requestTimeoutMs: number;
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
}

/**
 * A route as the data plane sees it: what matching and forwarding need from
 * the table entry (kept small: every table change is copied to each worker),
 * plus its counter slot and target keys.
 */
export interface LiveRoute
  extends Pick<RouteEntry, "key" | "hosts" | "pathPrefixes" | "headers" | "timeouts"> {
  slot: number;
  targetKey: string;
  fallbackKey?: string;
  fallback?: { service: string; timeoutMs: number };
}

/** The data plane's view of a table entry. */
export function liveRouteOf(
  e: RouteEntry,
  slot: number,
  targetKey: string,
  fallbackKey?: string,
): LiveRoute {
  const r: LiveRoute = {
    key: e.key,
    hosts: e.hosts,
    pathPrefixes: e.pathPrefixes,
    headers: e.headers,
    timeouts: e.timeouts,
    slot,
    targetKey,
  };
  if (e.fallback && fallbackKey !== undefined) {
    r.fallbackKey = fallbackKey;
    r.fallback = { service: e.fallback.service, timeoutMs: e.fallback.timeoutMs };
  }
  return r;
}

export interface EndpointUpdate {
  ip: string;
  port: number;
  /** Pod counter slot (shared in-flight count). */
  slot: number;
}

export interface TargetUpdate {
  key: string;
  endpoints: EndpointUpdate[];
  h2c: boolean;
}
