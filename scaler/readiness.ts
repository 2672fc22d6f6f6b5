/**
 * Readiness as a set of named conditions still pending ("HTTPScaledObjects
 * listed", "interceptors polled once", ...). The scaler answers KEDA only
 * when every condition is met: a scaler that has not yet heard from the
 * interceptors would report 0 and let the HPA scale a busy app down.
 *
 * Besides those start conditions, checks that are read each time (e.g. "an
 * interceptor answers") decide `ready` without holding back the answers:
 * this class is the one place that says whether the scaler is ready, for
 * /readyz and for the gRPC health service alike.
 */
export class Readiness {
  readonly #pending: Set<string>;
  readonly #checks: Array<{ name: string; ok: () => boolean }> = [];
  readonly #listeners = new Set<() => void>();
  #stopping = false;
  #waiters: Array<() => void> = [];

  constructor(conditions: readonly string[]) {
    this.#pending = new Set(conditions);
  }

  /** Marks a condition as met. */
  done(condition: string): void {
    this.#pending.delete(condition);
    if (this.started) { for (const w of this.#waiters.splice(0)) w(); }
    this.#changed();
  }

  /** Marks the program as shutting down: not ready from now on. */
  stopping(): void {
    this.#stopping = true;
    this.#changed();
  }

  /**
   * A condition read at every question, named in reason() while false; it
   * affects `ready` only, never `started` (answers keep flowing meanwhile).
   */
  addCheck(name: string, ok: () => boolean): void {
    this.#checks.push({ name, ok });
  }

  /**
   * Called when a start condition is met or shutdown begins (checks are not
   * watched: callers that follow `ready` re-read it on their own clock too).
   * Returns the unsubscribe function.
   */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #changed(): void {
    for (const l of [...this.#listeners]) l();
  }

  #failing(): string[] {
    return this.#checks.filter((c) => !c.ok()).map((c) => c.name);
  }

  /** Every condition met (stays true while shutting down, so answers continue). */
  get started(): boolean {
    return this.#pending.size === 0;
  }

  /** Started, every check passing, and not shutting down: /readyz and gRPC "readiness". */
  get ready(): boolean {
    return !this.#stopping && this.started && this.#failing().length === 0;
  }

  /** What is still missing, for /readyz and error messages. */
  reason(): string {
    if (this.#stopping) return "shutting down";
    const missing = [...this.#pending, ...this.#failing()];
    if (missing.length === 0) return "ready";
    return `waiting for: ${missing.join(", ")}`;
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
