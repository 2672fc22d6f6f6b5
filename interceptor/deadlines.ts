/**
 * Every time bound of the data plane, in one place: how long a request may
 * be held, keep trying to connect, wait for a response head, stall, or
 * linger; the defaults from the environment; the ticker's granularity. The
 * proxy, its upstream leg and the h2c path ask here and compute nothing of
 * their own.
 */
import type { LiveRoute, ProxyConfig } from "./proxy_contract.ts";

/** The readiness wait when neither KEDA_HTTP_READINESS_TIMEOUT nor KEDA_HTTP_REQUEST_TIMEOUT is set. */
const DEFAULT_READINESS_MS = 20_000;
const DEFAULT_CONNECT_MS = 500;

/** One ticker per isolate checks every connection's deadline this often. */
export const TICK_MS = 50;
/** Idle pooled upstream connections close after this. */
export const POOL_IDLE_MS = 60_000;
/** How long an early-answered client may go on sending its body before we close. */
export const LINGER_MS = 2_000;
/** With every endpoint at its per-pod cap, a held request looks again this often. */
export const CAPPED_RECHECK_MS = 20;

/** Readiness wait from env: KEDA_HTTP_READINESS_TIMEOUT, else KEDA_HTTP_REQUEST_TIMEOUT, else 20 s. */
export function defaultReadinessMs(readinessTimeoutMs: number, requestTimeoutMs: number): number {
  if (readinessTimeoutMs > 0) return readinessTimeoutMs;
  if (requestTimeoutMs > 0) return requestTimeoutMs;
  return DEFAULT_READINESS_MS;
}

/** Per connection attempt, from env (KEDA_HTTP_CONNECT_TIMEOUT), else 500 ms. */
export function connectTimeoutMsOf(configured: number): number {
  return configured > 0 ? configured : DEFAULT_CONNECT_MS;
}

/** Where the response head must have arrived by: hold + connect + head wait. Infinity = none. */
export function requestDeadline(cfg: ProxyConfig, t0: number): number {
  return cfg.requestTimeoutMs > 0 ? t0 + cfg.requestTimeoutMs : Infinity;
}

/** The readiness wait of a route: its conditionWait, else the configured default. */
export function readinessMs(cfg: ProxyConfig, route: LiveRoute): number {
  return route.timeouts.conditionWaitMs ?? cfg.readinessTimeoutMs;
}

/**
 * How long a request without a ready endpoint is held: the fallback's
 * timeout when the route has one, else the readiness wait.
 */
export function holdMs(cfg: ProxyConfig, route: LiveRoute): number {
  return route.fallback !== undefined && route.fallbackKey !== undefined
    ? route.fallback.timeoutMs
    : readinessMs(cfg, route);
}

/** The end of a hold, never past the request deadline. */
export function holdDeadline(
  cfg: ProxyConfig,
  route: LiveRoute,
  t0: number,
  request: number,
): number {
  return Math.min(t0 + holdMs(cfg, route), request);
}

/**
 * Until when failed connection attempts are retried: the readiness wait
 * (a pod that was just reported ready may not listen yet), but at least one
 * attempt's timeout from now, and never past the request deadline.
 */
export function connectDeadline(
  cfg: ProxyConfig,
  route: LiveRoute,
  t0: number,
  request: number,
  now: number,
): number {
  return Math.min(Math.max(t0 + readinessMs(cfg, route), now + cfg.connectTimeoutMs), request);
}

/** The pause before connection attempt `attempt + 1`: 10 ms doubling to 250 ms. */
export function connectBackoffMs(attempt: number): number {
  return Math.min(10 * 2 ** attempt, 250);
}

/** The response-head wait of a route: its responseHeader timeout, else the configured one. */
export function responseHeaderMs(cfg: ProxyConfig, route: LiveRoute): number {
  return route.timeouts.responseHeaderMs ?? cfg.responseHeaderTimeoutMs;
}

/** When the response head must have started, for a request sent now. */
export function responseHeaderDeadline(
  cfg: ProxyConfig,
  route: LiveRoute,
  request: number,
  now: number,
): number {
  return Math.min(now + responseHeaderMs(cfg, route), request);
}
