/**
 * The lifetime group: every long-lived part of a program is a member
 * `(signal) => Promise<void>`. The first member to settle (return or throw)
 * aborts the shared signal so the others stop; run() settles with that first
 * result once every member has finished.
 */

export type Member = (signal: AbortSignal) => Promise<void>;

export interface NamedMember {
  name: string;
  run: Member;
}

export class MemberExited extends Error {
  constructor(readonly member: string) {
    super(`${member} exited`);
    this.name = "MemberExited";
  }
}

export class LifetimeGroup {
  readonly #members: NamedMember[] = [];
  readonly #controller = new AbortController();
  #started = false;

  /** The group's signal: aborted when the first member exits. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  add(name: string, run: Member): this {
    if (this.#started) throw new Error(`lifetime group: cannot add "${name}" after run()`);
    this.#members.push({ name, run });
    return this;
  }

  /**
   * Runs every member. Resolves with the name of the first member to exit when
   * it returned normally; rejects with its error when it threw. Waits for the
   * others to finish after aborting them, so nothing outlives run().
   */
  async run(options: { signal?: AbortSignal } = {}): Promise<string> {
    if (this.#started) throw new Error("lifetime group: run() called twice");
    this.#started = true;
    const controller = this.#controller;
    const outer = options.signal;
    const onOuter = () => controller.abort(outer?.reason);
    if (outer?.aborted) controller.abort(outer.reason);
    outer?.addEventListener("abort", onOuter, { once: true });

    let first: { name: string; error?: unknown; failed: boolean } | undefined;
    const settle = (name: string, failed: boolean, error?: unknown) => {
      if (!first) {
        first = { name, failed, error };
        controller.abort(new MemberExited(name));
      }
    };
    const runs = this.#members.map(async (m) => {
      try {
        await m.run(controller.signal);
        settle(m.name, false);
      } catch (error) {
        settle(m.name, true, error);
      }
    });
    if (runs.length === 0) {
      outer?.removeEventListener("abort", onOuter);
      return "";
    }
    await Promise.all(runs);
    outer?.removeEventListener("abort", onOuter);
    const f = first!;
    if (f.failed) throw f.error;
    return f.name;
  }
}

/** Resolves once the signal aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/**
 * A member that returns when the process receives SIGTERM or SIGINT, or when
 * the group stops. `onSignal` runs first (e.g. to log and flip readiness).
 */
export function osSignals(
  onSignal?: (name: Deno.Signal) => void | Promise<void>,
  signals: Deno.Signal[] = ["SIGTERM", "SIGINT"],
): Member {
  return async (signal) => {
    let handlers: Array<[Deno.Signal, () => void]> = [];
    try {
      const got = await new Promise<Deno.Signal | undefined>((resolve) => {
        signal.addEventListener("abort", () => resolve(undefined), { once: true });
        handlers = signals.map((s) => {
          const h = () => resolve(s);
          Deno.addSignalListener(s, h);
          return [s, h];
        });
      });
      if (got && onSignal) await onSignal(got);
    } finally {
      for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    }
  };
}

/** Sleeps for ms; resolves early (without error) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Exponential backoff with full jitter, capped. attempt starts at 0. */
export function backoffMs(attempt: number, baseMs = 200, capMs = 30_000): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}
