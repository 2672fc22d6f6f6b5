/**
 * A coalescing work queue of object keys, with client-go's semantics: a key
 * is queued at most once however many events name it; a key being processed
 * is never handed to a second worker, and if it is added meanwhile it is
 * queued again when the worker calls done(). Failed keys come back after a
 * per-key exponential backoff with jitter.
 */
import { backoffMs } from "../shared/lifetime.ts";

export interface WorkQueueOptions {
  /** First retry delay after a failure (default 250 ms); doubles per failure. */
  baseDelayMs?: number;
  /** Longest retry delay (default 60 s). */
  maxDelayMs?: number;
}

export class WorkQueue {
  readonly #queue: string[] = [];
  /** Keys waiting to be processed (queued, or to be queued on done()). */
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #failures = new Map<string, number>();
  /** Delayed adds: key → [due time, timer]. Only the earliest is kept. */
  readonly #delayed = new Map<string, [number, ReturnType<typeof setTimeout>]>();
  #waiters: Array<(key: string | undefined) => void> = [];
  #shutDown = false;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;

  constructor(options: WorkQueueOptions = {}) {
    this.#baseDelayMs = options.baseDelayMs ?? 250;
    this.#maxDelayMs = options.maxDelayMs ?? 60_000;
  }

  /** Keys waiting to be handed out (not counting the ones being processed). */
  get length(): number {
    return this.#queue.length;
  }

  /** Keys scheduled for later (backoff or requeue-after). */
  get delayedCount(): number {
    return this.#delayed.size;
  }

  get processingCount(): number {
    return this.#processing.size;
  }

  add(key: string): void {
    if (this.#shutDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return;
    this.#push(key);
  }

  /** Adds the key after `ms`; an earlier pending delayed add wins. */
  addAfter(key: string, ms: number): void {
    if (this.#shutDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const due = Date.now() + ms;
    const pending = this.#delayed.get(key);
    if (pending && pending[0] <= due) return;
    if (pending) clearTimeout(pending[1]);
    const timer = setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, ms);
    this.#delayed.set(key, [due, timer]);
  }

  /** Re-adds a failed key after its backoff; returns the delay chosen. */
  addRateLimited(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    const delay = backoffMs(failures, this.#baseDelayMs, this.#maxDelayMs);
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears a key's failure count (call after it succeeded). */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /**
   * The next key to process; waits until there is one. Resolves undefined
   * once the queue is shut down or the signal aborts. Call done(key) after.
   */
  get(signal?: AbortSignal): Promise<string | undefined> {
    if (this.#shutDown || signal?.aborted) return Promise.resolve(undefined);
    const key = this.#queue.shift();
    if (key !== undefined) return Promise.resolve(this.#take(key));
    return new Promise((resolve) => {
      const waiter = (k: string | undefined) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(k === undefined ? undefined : this.#take(k));
      };
      const onAbort = () => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        resolve(undefined);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Marks a key finished; re-queues it when it was added while processing. */
  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key) && !this.#shutDown) this.#push(key);
  }

  /** Stops handing out keys and cancels every delayed add. */
  shutDown(): void {
    this.#shutDown = true;
    for (const [, timer] of this.#delayed.values()) clearTimeout(timer);
    this.#delayed.clear();
    for (const w of this.#waiters.splice(0)) w(undefined);
  }

  get isShutDown(): boolean {
    return this.#shutDown;
  }

  #take(key: string): string {
    this.#dirty.delete(key);
    this.#processing.add(key);
    return key;
  }

  #push(key: string) {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(key);
    else this.#queue.push(key);
  }
}
