/**
 * Every time bound of the data plane, in one place: how long a request may
 * be held, keep trying to connect, wait for a response head, stall, or
 * linger; the defaults from the environment; the ticker's granularity. The
 * proxy, its upstream leg and the h2c path ask here and compute nothing of
 * their own.
 */
import type { LiveRoute, ProxyConfig } from "./proxy_contract.ts";

const DEFAULT_CONNECT_MS = 500;
/**
 * How long connection attempts to a just-ready pod are retried when neither
 * a readiness nor a request timeout bounds them.
 */
const UNBOUNDED_CONNECT_RETRY_MS = 20_000;
/** With a fallback and no readiness timeout, the wait before falling back (Go: 30 s). */
const FALLBACK_WAIT_MS = 30_000;

/** One ticker per isolate checks every connection's deadline this often. */
export const TICK_MS = 50;
/** Idle pooled upstream connections close after this. */
export const POOL_IDLE_MS = 60_000;
/** How long an early-answered client may go on sending its body before we close. */
export const LINGER_MS = 2_000;
/** With every endpoint at its per-pod cap, a held request looks again this often. */
export const CAPPED_RECHECK_MS = 20;

/** Per connection attempt, from env (KEDA_HTTP_CONNECT_TIMEOUT), else 500 ms. */
export function connectTimeoutMsOf(configured: number): number {
  return configured > 0 ? configured : DEFAULT_CONNECT_MS;
}

/** `ms` from `from`, where 0 means no bound (Infinity). */
function after(from: number, ms: number): number {
  return ms > 0 ? from + ms : Infinity;
}

/** The request timeout of a route: its own when set (0 = none), else KEDA_HTTP_REQUEST_TIMEOUT. */
export function requestMs(cfg: ProxyConfig, route: LiveRoute): number {
  return route.timeouts.requestMs ?? cfg.requestTimeoutMs;
}

/** Where the response head must have arrived by: hold + connect + head wait. Infinity = none. */
export function requestDeadline(cfg: ProxyConfig, route: LiveRoute, t0: number): number {
  return after(t0, requestMs(cfg, route));
}

/**
 * The readiness wait of a route: its own when set (0 = none), else
 * KEDA_HTTP_READINESS_TIMEOUT (0 = none: bounded only by the request timeout).
 */
export function readinessMs(cfg: ProxyConfig, route: LiveRoute): number {
  return route.timeouts.readinessMs ?? cfg.readinessTimeoutMs;
}

/**
 * How long a request without a ready endpoint is held (Infinity = until the
 * request deadline): with a fallback, the HTTPScaledObject's timeoutSeconds,
 * or the readiness wait, or 30 s when that is off; else the readiness wait.
 */
export function holdMs(cfg: ProxyConfig, route: LiveRoute): number {
  const ready = readinessMs(cfg, route);
  if (route.fallback !== undefined && route.fallbackKey !== undefined) {
    return route.fallback.timeoutMs ?? (ready > 0 ? ready : FALLBACK_WAIT_MS);
  }
  return ready > 0 ? ready : Infinity;
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
  const ready = readinessMs(cfg, route);
  const until = t0 + (ready > 0 ? ready : UNBOUNDED_CONNECT_RETRY_MS);
  return Math.min(Math.max(until, now + cfg.connectTimeoutMs), request);
}

/** The pause before connection attempt `attempt + 1`: 10 ms doubling to 250 ms. */
export function connectBackoffMs(attempt: number): number {
  return Math.min(10 * 2 ** attempt, 250);
}

/** The response-head wait of a route: its responseHeader timeout, else the configured one; 0 = none. */
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
  return Math.min(after(now, responseHeaderMs(cfg, route)), request);
}
