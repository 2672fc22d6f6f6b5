/**
 * Holding: a request whose target has no usable endpoint waits until the
 * EndpointSlice watch reports one (no polling), or until its deadline. Held
 * requests count as concurrency (the scaler sees them at once) and are
 * capped per route across every isolate.
 */
import { CAPPED_RECHECK_MS } from "./deadlines.ts";
import type { SharedCounters } from "./counters.ts";
import { type Exchange, Phase, useEndpoint, watchHangup } from "./exchange.ts";
import type { Target, Targets, Waiter } from "./targets.ts";

export type HoldOutcome = "ready" | "timeout" | "aborted" | "full";

export class Holding {
  readonly #counters: SharedCounters;
  readonly #targets: Targets;
  readonly #maxHeld: number;

  constructor(counters: SharedCounters, targets: Targets, maxHeldRequests: number) {
    this.#counters = counters;
    this.#targets = targets;
    this.#maxHeld = maxHeldRequests;
  }

  /** Waits for a usable endpoint of `target` until `deadline`; resolves how the wait ended. */
  async hold(ex: Exchange, target: Target, deadline: number): Promise<HoldOutcome> {
    const slot = ex.route.slot;
    if (!this.#counters.holdBegin(slot, this.#maxHeld)) return "full";
    ex.phase = Phase.Hold;
    watchHangup(ex);
    // The cold start's own span: how long this request waited for a ready pod.
    const span = ex.span?.child("hold", { "keda.target": target.key }) ?? null;
    let outcome: HoldOutcome = "aborted";
    try {
      while (true) {
        if (ex.gone) return "aborted";
        const ep = this.#targets.pick(target);
        if (ep) {
          useEndpoint(ex, this.#counters, ep);
          return outcome = "ready";
        }
        const now = Date.now();
        if (now >= deadline) return outcome = "timeout";
        // Endpoints exist but are all at the per-pod cap: releases in other
        // isolates do not wake us, so look again soon.
        const capped = target.endpoints.length > 0;
        const at = capped ? Math.min(deadline, now + CAPPED_RECHECK_MS) : deadline;
        const waiter: Waiter = { wake: () => {} };
        const why = await new Promise<"wake" | "timeout" | "aborted">((resolve) => {
          waiter.wake = () => resolve("wake");
          target.waiters.add(waiter);
          ex.wake = resolve;
          ex.c.deadlineAt(at, () => resolve(at < deadline ? "wake" : "timeout"));
        });
        target.waiters.delete(waiter);
        ex.wake = null;
        ex.c.clearDeadline();
        if (why === "aborted") return "aborted";
        if (why === "timeout") return outcome = "timeout";
      }
    } finally {
      ex.wake = null;
      this.#counters.holdEnd(slot);
      if (span !== null) {
        span.set({ "keda.hold.outcome": outcome });
        if (outcome === "timeout") span.fail("no ready endpoint before the deadline");
        span.end();
      }
    }
  }
}
