/**
 * Sums the queue counts of every interceptor pod, per route, and turns their
 * RequestCount counters into request rates. Pure state: the interceptor fleet
 * feeds it poll results, poll failures and /queue/watch lines; time comes from
 * `now` so tests drive it directly.
 *
 * Two sources per pod, reconciled per route:
 *  - polls of /queue (every tick): authoritative Concurrency and RequestCount;
 *  - /queue/watch lines: Concurrency pushed the moment a route goes 0 → >0 or
 *    >0 → 0, so activation does not wait for the next tick.
 * A poll only overwrites a route's Concurrency when the poll was sent after
 * the last watch line for that route arrived; otherwise a poll answered just
 * before a request arrived could undo the pushed activation.
 *
 * An unreachable pod (poll failing) keeps its last counts for `staleTtlMs`
 * if it was ready, then drops out; a pod removed from the EndpointSlices
 * drops out at once.
 *
 * Change events: a route's summed Concurrency changed, or a route at 0 in
 * flight served new requests (its RequestCount rose in a poll or on a watch
 * line). The second kind is for routes answered at once while the app is at
 * zero (an InterceptorRoute placeholder): their Concurrency goes 0 → 1 → 0
 * faster than any sample sees, yet the request must wake the app.
 */
import type { Logger } from "../shared/log.ts";
import type { QueueCounts } from "../shared/queue_counts.ts";
import { counterIncrement, RateWindow } from "./request_rate.ts";

export interface InterceptorPod {
  /** Stable identity: the pod UID when the EndpointSlice names one. */
  id: string;
  /** For logs and metrics: the pod name, or the address. */
  name: string;
  /** Base URL of the admin server, e.g. http://10.244.0.7:9090. */
  url: string;
  /** The EndpointSlice's ready condition. */
  ready: boolean;
}

export interface RateConfig {
  windowMs: number;
  granularityMs: number;
}

/** The window the Go add-on defaults to, used for routes without requestRate. */
export const DEFAULT_RATE_CONFIG: RateConfig = { windowMs: 60_000, granularityMs: 1000 };

/**
 * One route in a change event. `concurrency === previous` when the route
 * stayed at 0 in flight but served new requests (see requestedRecently).
 */
export interface RouteChange {
  key: string;
  concurrency: number;
  previous: number;
}

/**
 * pending: no answer yet; ok: answering; stale: not answering, last counts
 * still used; down: not answering and its counts no longer used.
 */
export type PodHealth = "pending" | "ok" | "stale" | "down";

export interface PodStatus {
  id: string;
  name: string;
  url: string;
  ready: boolean;
  health: PodHealth;
  /** Milliseconds since the pod last answered (poll or watch line); undefined if never. */
  lastSeenAgeMs?: number;
  consecutiveFailures: number;
  lastError?: string;
}

export interface RouteTotals {
  Concurrency: number;
  RequestCount: number;
  /** Requests per second over the route's window (ours; not in the Go format). */
  RPS: number;
}

export interface QueueAggregatorOptions {
  /** How long a ready pod that stopped answering keeps its last counts. */
  staleTtlMs: number;
  /** Window and granularity of a route's rate (from its HTTPScaledObject). */
  rateConfigOf?: (key: string) => RateConfig;
  now?: () => number;
  log?: Logger;
}

interface RouteState {
  concurrency: number;
  /** When the concurrency was current: poll send time, or watch line arrival. */
  concurrencyAt: number;
  /** Last polled counter; undefined when the route was only seen on the watch. */
  requestCount?: number;
  /**
   * Highest RequestCount known from a poll not older than the last watch
   * line, or from a watch line: a watch line above it carries new requests.
   */
  seenCount?: number;
}

interface PodState {
  pod: InterceptorPod;
  routes: Map<string, RouteState>;
  /**
   * Last polled RequestCount per route, kept after a route leaves the answer:
   * the counter is monotonic per interceptor process, so a route that comes
   * back continues from it instead of counting its whole history again.
   */
  counters: Map<string, number>;
  /** Send time of the newest poll applied, so an older answer never wins. */
  lastPollStart: number;
  /** Arrival of the last successful poll: the start of the next rate interval. */
  lastSampleAt?: number;
  /** Arrival of the last poll answer or watch line. */
  lastSeenAt?: number;
  consecutiveFailures: number;
  lastError?: string;
}

export class QueueAggregator {
  readonly #pods = new Map<string, PodState>();
  readonly #totals = new Map<string, { concurrency: number; requestCount: number }>();
  readonly #rates = new Map<string, RateWindow>();
  /** When new requests of a route were last seen (poll increment or watch line). */
  readonly #requestedAt = new Map<string, number>();
  readonly #listeners = new Set<(changes: RouteChange[]) => void>();
  readonly #staleTtlMs: number;
  readonly #rateConfigOf: (key: string) => RateConfig;
  readonly #now: () => number;
  readonly #log?: Logger;

  constructor(options: QueueAggregatorOptions) {
    this.#staleTtlMs = options.staleTtlMs;
    this.#rateConfigOf = options.rateConfigOf ?? (() => DEFAULT_RATE_CONFIG);
    this.#now = options.now ?? (() => performance.now());
    this.#log = options.log;
  }

  /** Called with the routes whose total concurrency changed, after every update. */
  subscribe(listener: (changes: RouteChange[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Replaces the set of interceptor pods; pods not listed drop out at once. */
  setPods(pods: readonly InterceptorPod[]): void {
    const seen = new Set<string>();
    for (const pod of pods) {
      seen.add(pod.id);
      const state = this.#pods.get(pod.id);
      if (state) state.pod = pod;
      else {
        this.#pods.set(pod.id, {
          pod,
          routes: new Map(),
          counters: new Map(),
          lastPollStart: -Infinity,
          consecutiveFailures: 0,
        });
      }
    }
    for (const id of [...this.#pods.keys()]) if (!seen.has(id)) this.#pods.delete(id);
    this.#recompute();
  }

  /** A successful poll of /queue, sent at startedAt. */
  applyPoll(podId: string, startedAt: number, counts: QueueCounts): void {
    const state = this.#pods.get(podId);
    if (!state || startedAt < state.lastPollStart) return;
    const now = this.#now();
    const known = state.lastSampleAt !== undefined;
    const requested: string[] = [];
    for (const [key, count] of Object.entries(counts)) {
      let route = state.routes.get(key);
      if (!route) {
        route = { concurrency: count.Concurrency, concurrencyAt: startedAt };
        state.routes.set(key, route);
      } else if (startedAt >= route.concurrencyAt) {
        route.concurrency = count.Concurrency;
        route.concurrencyAt = startedAt;
      }
      // Not older than the last watch line: the counter as it is now.
      if (startedAt >= route.concurrencyAt) route.seenCount = count.RequestCount;
      // A route new on a pod we already sampled had 0 at the last sample.
      const previous = state.counters.get(key) ?? (known ? 0 : undefined);
      state.counters.set(key, count.RequestCount);
      const increment = counterIncrement(previous, count.RequestCount);
      route.requestCount = count.RequestCount;
      // The window starts at the route's first sample: quiet time counts as zero requests.
      const window = this.#rateWindow(key, state.lastSampleAt ?? now);
      if (increment > 0 && state.lastSampleAt !== undefined) {
        window.add(state.lastSampleAt, now, increment);
        this.#requestedAt.set(key, now);
        requested.push(key);
      }
    }
    for (const [key, route] of state.routes) {
      // Gone from the answer: the interceptor no longer serves the route.
      if (!(key in counts) && route.concurrencyAt <= startedAt) state.routes.delete(key);
    }
    state.lastPollStart = startedAt;
    state.lastSampleAt = now;
    state.lastSeenAt = now;
    state.consecutiveFailures = 0;
    state.lastError = undefined;
    this.#recompute(undefined, requested);
  }

  /** A failed poll; the pod keeps its last counts for staleTtlMs if it is ready. */
  applyPollError(podId: string, error: unknown): void {
    const state = this.#pods.get(podId);
    if (!state) return;
    state.consecutiveFailures++;
    state.lastError = error instanceof Error ? error.message : String(error);
    this.#recompute();
  }

  /**
   * A /queue/watch line: the routes it carries (all of them when `snapshot`).
   * `{}` (a heartbeat) only proves the pod is alive.
   */
  applyWatch(podId: string, counts: QueueCounts, snapshot: boolean): void {
    const state = this.#pods.get(podId);
    if (!state) return;
    const now = this.#now();
    state.lastSeenAt = now;
    const keys: string[] = [];
    const requested: string[] = [];
    for (const [key, count] of Object.entries(counts)) {
      let route = state.routes.get(key);
      if (route) {
        route.concurrency = count.Concurrency;
        route.concurrencyAt = now;
      } else {
        route = { concurrency: count.Concurrency, concurrencyAt: now };
        state.routes.set(key, route);
      }
      // New requests since the last count known: they show before any poll
      // does (the rate follows with the next poll). Without a baseline (a pod
      // never polled) nothing can be told; a lower count (a restart) is the
      // new baseline.
      const before = route.seenCount ?? state.counters.get(key) ??
        (state.lastSampleAt !== undefined ? 0 : undefined);
      if (before !== undefined && count.RequestCount > before) {
        this.#requestedAt.set(key, now);
        requested.push(key);
      }
      route.seenCount = count.RequestCount;
      keys.push(key);
    }
    if (snapshot) {
      for (const [key, route] of state.routes) {
        if (!(key in counts) && route.concurrency !== 0) {
          route.concurrency = 0;
          route.concurrencyAt = now;
          keys.push(key);
        }
      }
    }
    if (keys.length > 0) this.#recompute(keys, requested);
  }

  #contributes(state: PodState, now: number): boolean {
    if (state.lastSeenAt === undefined) return false;
    if (state.consecutiveFailures === 0) return true;
    // A pod that is not ready (starting or terminating) and does not answer has nothing to add.
    if (!state.pod.ready) return false;
    return now - state.lastSeenAt <= this.#staleTtlMs;
  }

  /**
   * Re-sums the routes (`onlyKeys`, or all) and emits their changes:
   * Concurrency changed, or `requested` (new requests seen) while at 0.
   */
  #recompute(onlyKeys?: readonly string[], requested: readonly string[] = []): void {
    const now = this.#now();
    const live = [...this.#pods.values()].filter((s) => this.#contributes(s, now));
    const next = new Map<string, { concurrency: number; requestCount: number }>();
    const keys = onlyKeys ?? null;
    for (const state of live) {
      for (const [key, route] of state.routes) {
        if (keys && !keys.includes(key)) continue;
        const t = next.get(key) ?? { concurrency: 0, requestCount: 0 };
        t.concurrency += route.concurrency;
        t.requestCount += route.requestCount ?? 0;
        next.set(key, t);
      }
    }
    const changes: RouteChange[] = [];
    const considered = keys ?? [...new Set([...this.#totals.keys(), ...next.keys()])];
    for (const key of considered) {
      const previous = this.#totals.get(key)?.concurrency ?? 0;
      const t = next.get(key);
      if (t) this.#totals.set(key, t);
      else this.#totals.delete(key);
      const concurrency = t?.concurrency ?? 0;
      if (concurrency !== previous) changes.push({ key, concurrency, previous });
    }
    // At 0 in flight yet serving (e.g. a placeholder answered at once): an
    // event of its own. Above 0 the route is active anyway.
    if (requested.length > 0) {
      const changed = new Set(changes.map((c) => c.key));
      for (const key of requested) {
        if (changed.has(key) || (this.#totals.get(key)?.concurrency ?? 0) !== 0) continue;
        changed.add(key);
        changes.push({ key, concurrency: 0, previous: 0 });
      }
    }
    if (!keys) {
      // Forget rate windows of routes no pod serves any more, once they read zero.
      for (const [key, w] of this.#rates) {
        if (!this.#totals.has(key) && w.rate(now) === 0) this.#rates.delete(key);
      }
      for (const key of this.#requestedAt.keys()) {
        if (!this.#totals.has(key) && !this.#rates.has(key)) this.#requestedAt.delete(key);
      }
    }
    if (changes.length === 0) return;
    for (const listener of this.#listeners) {
      try {
        listener(changes);
      } catch (e) {
        this.#log?.error("queue change listener failed", { error: e });
      }
    }
  }

  /** Re-evaluates stale pods against the clock (call periodically). */
  expire(): void {
    this.#recompute();
  }

  #rateWindow(key: string, startMs: number): RateWindow {
    const config = this.#rateConfigOf(key);
    let w = this.#rates.get(key);
    if (!w || !w.matches(config.windowMs, config.granularityMs)) {
      // A changed window starts afresh: old buckets have the wrong width.
      w = new RateWindow({ ...config, startMs });
      this.#rates.set(key, w);
    }
    return w;
  }

  /** Total requests in flight for a route, over every live pod. */
  concurrency(key: string): number {
    return this.#totals.get(key)?.concurrency ?? 0;
  }

  /** Total requests in flight over every route and pod. */
  totalConcurrency(): number {
    let sum = 0;
    for (const t of this.#totals.values()) sum += t.concurrency;
    return sum;
  }

  /** Requests per second for a route, over its configured window. */
  rate(key: string): number {
    const w = this.#rates.get(key);
    if (!w) return 0;
    const config = this.#rateConfigOf(key);
    if (!w.matches(config.windowMs, config.granularityMs)) return 0;
    return w.rate(this.#now());
  }

  /**
   * True while the route served requests within its rate window: its rate
   * is above 0, or a watch line showed new requests the rate (measured from
   * polls) does not hold yet.
   */
  requestedRecently(key: string): boolean {
    const at = this.#requestedAt.get(key);
    if (at !== undefined && this.#now() - at < this.#rateConfigOf(key).windowMs) return true;
    return this.rate(key) > 0;
  }

  /** Aggregated counts in the /queue format, with RPS added. */
  snapshot(): Record<string, RouteTotals> {
    const out: Record<string, RouteTotals> = {};
    const keys = new Set([...this.#totals.keys(), ...this.#rates.keys()]);
    for (const key of [...keys].sort()) {
      const t = this.#totals.get(key);
      out[key] = {
        Concurrency: t?.concurrency ?? 0,
        RequestCount: t?.requestCount ?? 0,
        RPS: this.rate(key),
      };
    }
    return out;
  }

  podStatuses(): PodStatus[] {
    const now = this.#now();
    return [...this.#pods.values()].map((s) => {
      let health: PodHealth;
      if (s.consecutiveFailures === 0) health = s.lastSeenAt === undefined ? "pending" : "ok";
      else health = this.#contributes(s, now) ? "stale" : "down";
      return {
        id: s.pod.id,
        name: s.pod.name,
        url: s.pod.url,
        ready: s.pod.ready,
        health,
        ...(s.lastSeenAt !== undefined ? { lastSeenAgeMs: now - s.lastSeenAt } : {}),
        consecutiveFailures: s.consecutiveFailures,
        ...(s.lastError !== undefined ? { lastError: s.lastError } : {}),
      };
    });
  }
}
