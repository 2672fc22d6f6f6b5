/**
 * The wake book: apps woken ahead of traffic through the scaler's
 * `POST /wake`, each active until its end time. Pure logic with the clock
 * and the timers injected; the HTTP side (scaler/http_server.ts) parses
 * requests into `WakeRequest`s, ScalingAnswers.isActive reads `isAwake`, and
 * the gRPC server (scaler/external_scaler.ts) subscribes to the changes and
 * pushes them on StreamIsActive at once, as it does for queue changes.
 *
 * A wake names an object by kind, namespace and name. A ScaledObject whose
 * trigger names an InterceptorRoute is woken by a wake of kind
 * InterceptorRoute, one naming an HTTPScaledObject by a wake of kind
 * HTTPScaledObject; both read the queue key "namespace/name", which is what
 * `WakeChange.key` carries.
 *
 * Wakes live in memory: a scaler restart forgets them.
 *
 * Timers only drive the notifications: `isAwake` compares the clock with the
 * end time itself, so a late timer never extends a wake, and after `close()`
 * (no more timers) the answers stay right; only the push of `false` at the
 * end is gone.
 */
import { formatDuration, parseDuration } from "../shared/duration.ts";

export const WAKE_KINDS = ["InterceptorRoute", "HTTPScaledObject"] as const;
export type WakeKind = typeof WAKE_KINDS[number];

/** Bounds of a wake's duration (`for`). */
export const MIN_WAKE_MS = 1_000;
export const MAX_WAKE_MS = 24 * 3_600_000;

export interface Wake {
  kind: WakeKind;
  namespace: string;
  name: string;
  /** The queue key, "namespace/name". */
  key: string;
  /** When it was woken (or last re-woken), ms since the epoch. */
  since: number;
  /** When it ends, ms since the epoch. */
  until: number;
}

export interface WakeChange {
  kind: WakeKind;
  key: string;
  /** woken: new; renewed: its end moved; ended: DELETE; expired: its time ran out. */
  reason: "woken" | "renewed" | "ended" | "expired";
  wake: Wake;
}

export interface WakeClock {
  /** Wall-clock ms since the epoch (end times are reported as RFC 3339). */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: WakeClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as number),
};

export interface WakeBookOptions {
  clock?: WakeClock;
}

/** Parses and bounds a wake duration; throws saying what to send. */
export function parseWakeDuration(text: string): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (e) {
    throw new Error(`"for": ${(e as Error).message}`);
  }
  if (!(ms >= MIN_WAKE_MS && ms <= MAX_WAKE_MS)) {
    throw new Error(
      `"for": ${JSON.stringify(text)} is out of range: a wake lasts from 1s to 24h, e.g. "10m"`,
    );
  }
  return ms;
}

/** Kinds as users may spell them (any case); undefined if it is neither. */
export function parseWakeKind(text: string): WakeKind | undefined {
  const t = text.trim().toLowerCase();
  return WAKE_KINDS.find((k) => k.toLowerCase() === t);
}

const idOf = (kind: WakeKind, key: string) => `${kind}\u0000${key}`;

export class WakeBook {
  readonly #clock: WakeClock;
  readonly #wakes = new Map<string, Wake>();
  readonly #timers = new Map<string, unknown>();
  readonly #listeners = new Set<(change: WakeChange) => void>();
  #closed = false;

  constructor(options: WakeBookOptions = {}) {
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Wakes an object for `forMs` from now. Waking one that is already awake
   * replaces its end time (longer or shorter): `created` tells them apart.
   */
  wake(kind: WakeKind, namespace: string, name: string, forMs: number): {
    wake: Wake;
    created: boolean;
  } {
    if (!(forMs >= MIN_WAKE_MS && forMs <= MAX_WAKE_MS)) {
      throw new RangeError(`a wake lasts from ${MIN_WAKE_MS} to ${MAX_WAKE_MS} ms, not ${forMs}`);
    }
    const key = `${namespace}/${name}`;
    const id = idOf(kind, key);
    const now = this.#clock.now();
    const created = this.#live(id, now) === undefined;
    const wake: Wake = { kind, namespace, name, key, since: now, until: now + forMs };
    this.#wakes.set(id, wake);
    this.#schedule(id);
    this.#emit({ kind, key, reason: created ? "woken" : "renewed", wake });
    return { wake, created };
  }

  /** Ends a wake now; undefined when there was none (or it had already run out). */
  end(kind: WakeKind, namespace: string, name: string): Wake | undefined {
    const key = `${namespace}/${name}`;
    const id = idOf(kind, key);
    const wake = this.#live(id, this.#clock.now());
    this.#drop(id);
    if (wake) this.#emit({ kind, key, reason: "ended", wake });
    return wake;
  }

  /** Whether a wake of this kind is in force for the key ("namespace/name"). */
  isAwake(kind: WakeKind, key: string): boolean {
    return this.#live(idOf(kind, key), this.#clock.now()) !== undefined;
  }

  /** The latest end time of the wakes in force for a key, of either kind. */
  untilOf(key: string): number | undefined {
    let until: number | undefined;
    for (const kind of WAKE_KINDS) {
      const w = this.#live(idOf(kind, key), this.#clock.now());
      if (w && (until === undefined || w.until > until)) until = w.until;
    }
    return until;
  }

  /** The wakes in force, by key then kind. */
  list(): Wake[] {
    const now = this.#clock.now();
    return [...this.#wakes.values()].filter((w) => w.until > now)
      .sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : a.kind < b.kind ? -1 : 1);
  }

  /** The book's clock, ms since the epoch. */
  now(): number {
    return this.#clock.now();
  }

  get size(): number {
    return this.list().length;
  }

  /** Calls `listener` synchronously on every change; returns the unsubscribe function. */
  subscribe(listener: (change: WakeChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Stops every timer, now and for later wakes (at shutdown, or when a test
   * ends). Wakes keep answering by the clock; no `expired` change is emitted.
   */
  close(): void {
    this.#closed = true;
    for (const t of this.#timers.values()) this.#clock.clearTimeout(t);
    this.#timers.clear();
  }

  #live(id: string, now: number): Wake | undefined {
    const w = this.#wakes.get(id);
    return w && w.until > now ? w : undefined;
  }

  #drop(id: string): void {
    this.#wakes.delete(id);
    const t = this.#timers.get(id);
    if (t !== undefined) this.#clock.clearTimeout(t);
    this.#timers.delete(id);
  }

  #schedule(id: string): void {
    const old = this.#timers.get(id);
    if (old !== undefined) this.#clock.clearTimeout(old);
    this.#timers.delete(id);
    const wake = this.#wakes.get(id);
    if (!wake || this.#closed) return;
    const fire = () => {
      this.#timers.delete(id);
      if (this.#wakes.get(id) !== wake) return;
      // A timer may fire a little early against the wall clock: wait out the rest.
      if (this.#clock.now() < wake.until) {
        this.#schedule(id);
        return;
      }
      this.#wakes.delete(id);
      this.#emit({ kind: wake.kind, key: wake.key, reason: "expired", wake });
    };
    this.#timers.set(id, this.#clock.setTimeout(fire, Math.max(0, wake.until - this.#clock.now())));
  }

  #emit(change: WakeChange): void {
    for (const l of [...this.#listeners]) l(change);
  }
}

/** A wake as JSON: end and start in RFC 3339 (UTC), and what remains. */
export function wakeJson(wake: Wake, now: number): Record<string, unknown> {
  return {
    kind: wake.kind,
    namespace: wake.namespace,
    name: wake.name,
    route: wake.key,
    since: new Date(wake.since).toISOString(),
    until: new Date(wake.until).toISOString(),
    remaining: formatDuration(Math.max(0, Math.round((wake.until - now) / 1000) * 1000)),
  };
}
