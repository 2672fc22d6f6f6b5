/**
 * Request rates from monotonic per-interceptor RequestCount counters.
 *
 * Each interceptor pod reports how many requests it has seen per route since
 * it started. The scaler samples those counters, turns consecutive samples
 * into increments (counterIncrement) and spreads each increment evenly over
 * the time between the two samples into a ring of buckets of `granularity`
 * (RateWindow). The rate is the sum of the buckets of the last `window`
 * divided by the time they cover. Spreading by time is what makes a
 * granularity finer than the poll tick (e.g. 100ms buckets with a 500ms tick)
 * give a steady rate instead of spikes and gaps; the Go add-on divided by zero
 * there.
 */

/** Upper bound of buckets per route, so a tiny granularity cannot exhaust memory. */
export const MAX_BUCKETS = 3600;

/**
 * The number of requests between two samples of one pod's counter.
 * `previous` undefined = the first sample of a pod: a baseline, not a burst.
 * A counter that went down means the interceptor restarted; everything it
 * counted since then is new.
 */
export function counterIncrement(previous: number | undefined, current: number): number {
  if (previous === undefined) return 0;
  if (current >= previous) return current - previous;
  return current;
}

export interface RateWindowOptions {
  windowMs: number;
  granularityMs: number;
  /** When tracking started: before it there is no data, so it is not averaged in. */
  startMs: number;
}

/** A sliding window of request counts in buckets of one granularity. */
export class RateWindow {
  readonly windowMs: number;
  readonly granularityMs: number;
  /** The bucket width actually used (granularity, coarsened to at most MAX_BUCKETS). */
  readonly bucketMs: number;
  /** One bucket more than the window holds, so the oldest one can be prorated. */
  readonly #buckets: Float64Array;
  readonly #startMs: number;
  /** Absolute index (time / bucketMs) of the newest bucket in the ring. */
  #head: number;

  constructor(options: RateWindowOptions) {
    const windowMs = options.windowMs;
    const granularityMs = options.granularityMs;
    if (!(windowMs > 0) || !(granularityMs > 0)) {
      throw new Error(
        `rate window needs window > 0 and granularity > 0 (got window ${windowMs} ms, granularity ${granularityMs} ms)`,
      );
    }
    this.windowMs = windowMs;
    this.granularityMs = granularityMs;
    this.bucketMs = Math.max(granularityMs, windowMs / MAX_BUCKETS);
    const n = Math.max(1, Math.ceil(windowMs / this.bucketMs - 1e-9));
    this.#buckets = new Float64Array(n + 1);
    this.#startMs = options.startMs;
    this.#head = Math.floor(options.startMs / this.bucketMs);
  }

  /** True when this window was made for the same window and granularity. */
  matches(windowMs: number, granularityMs: number): boolean {
    return this.windowMs === windowMs && this.granularityMs === granularityMs;
  }

  #slot(index: number): number {
    const n = this.#buckets.length;
    return ((index % n) + n) % n;
  }

  #advance(index: number): void {
    if (index <= this.#head) return;
    if (index - this.#head >= this.#buckets.length) this.#buckets.fill(0);
    else for (let i = this.#head + 1; i <= index; i++) this.#buckets[this.#slot(i)] = 0;
    this.#head = index;
  }

  #addToBucket(index: number, count: number): void {
    if (index <= this.#head - this.#buckets.length) return; // older than the ring
    this.#advance(index);
    const slot = this.#slot(index);
    this.#buckets[slot] = (this.#buckets[slot] ?? 0) + count;
  }

  /**
   * Adds `count` requests that happened between fromMs and toMs, spread
   * evenly over that interval. fromMs >= toMs puts them all at toMs.
   */
  add(fromMs: number, toMs: number, count: number): void {
    if (!(count > 0)) return;
    const b = this.bucketMs;
    if (!(toMs > fromMs)) {
      this.#addToBucket(Math.floor(toMs / b), count);
      return;
    }
    // The bucket holding the interval's last instant (toMs itself is excluded).
    const last = Math.ceil(toMs / b) - 1;
    // Only the part of the interval the ring can hold can matter.
    const ringStart = (last - this.#buckets.length + 1) * b;
    let from = fromMs;
    let c = count;
    if (from < ringStart) {
      c = count * (toMs - ringStart) / (toMs - fromMs);
      from = ringStart;
    }
    const span = toMs - from;
    for (let i = Math.floor(from / b); i <= last; i++) {
      const lo = Math.max(from, i * b);
      const hi = Math.min(toMs, (i + 1) * b);
      if (hi > lo) this.#addToBucket(i, c * (hi - lo) / span);
    }
  }

  /**
   * Requests per second over the window ending at nowMs. The oldest bucket
   * counts in proportion to its overlap with the window; before a full window
   * has passed since tracking began, only the time since then is averaged
   * (but at least one bucket, so a first request is not a huge spike).
   */
  rate(nowMs: number): number {
    const b = this.bucketMs;
    const nowBucket = Math.floor(nowMs / b);
    this.#advance(nowBucket);
    const from = nowMs - this.windowMs;
    let sum = 0;
    for (let i = nowBucket - this.#buckets.length + 1; i <= nowBucket; i++) {
      const v = this.#buckets[this.#slot(i)] ?? 0;
      if (v === 0) continue;
      const lo = i * b;
      const hi = lo + b;
      if (hi <= from) continue;
      sum += lo >= from ? v : v * (hi - from) / b;
    }
    const durationMs = Math.max(
      Math.min(this.windowMs, nowMs - this.#startMs),
      Math.min(this.windowMs, b),
    );
    const rate = sum / (durationMs / 1000);
    // Float noise from spreading must not turn "no requests" into 1e-15/s.
    return rate < 1e-9 ? 0 : rate;
  }
}
