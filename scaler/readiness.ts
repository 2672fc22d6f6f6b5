/**
 * Readiness as a set of named conditions still pending ("HTTPScaledObjects
 * listed", "interceptors polled once", ...). The scaler answers KEDA only
 * when every condition is met: a scaler that has not yet heard from the
 * interceptors would report 0 and let the HPA scale a busy app down.
 */
export class Readiness {
  readonly #pending: Set<string>;
  #stopping = false;
  #waiters: Array<() => void> = [];

  constructor(conditions: readonly string[]) {
    this.#pending = new Set(conditions);
  }

  /** Marks a condition as met. */
  done(condition: string): void {
    this.#pending.delete(condition);
    if (this.started) { for (const w of this.#waiters.splice(0)) w(); }
  }

  /** Marks the program as shutting down: not ready from now on. */
  stopping(): void {
    this.#stopping = true;
  }

  /** Every condition met (stays true while shutting down, so answers continue). */
  get started(): boolean {
    return this.#pending.size === 0;
  }

  /** Started and not shutting down: what /readyz reports. */
  get ready(): boolean {
    return !this.#stopping && this.started;
  }

  /** What is still missing, for /readyz and error messages. */
  reason(): string {
    if (this.#stopping) return "shutting down";
    if (this.#pending.size === 0) return "ready";
    return `waiting for: ${[...this.#pending].join(", ")}`;
  }

  /** Resolves true once started, or false after timeoutMs (or when the signal aborts). */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.started) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        const i = this.#waiters.indexOf(onReady);
        if (i >= 0) this.#waiters.splice(i, 1);
        resolve(ok);
      };
      const onReady = () => finish(this.started);
      const onAbort = () => finish(false);
      const timer = setTimeout(() => finish(this.started), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(onReady);
    });
  }
}
