/**
 * The worker loop both controllers share: one key at a time from a
 * coalescing WorkQueue, each reconcile bounded by a deadline; a failure
 * comes back with per-key jittered backoff; losing the lease puts the key
 * back for whoever leads next and pauses until the term ends.
 */
import { aborted } from "../shared/lifetime.ts";
import type { Logger } from "../shared/log.ts";
import type { WorkQueue } from "./work_queue.ts";

export class NotLeaderError extends Error {
  constructor() {
    super("not the leader any more; write skipped");
    this.name = "NotLeaderError";
  }
}

export interface ReconcileResult {
  requeueAfterMs?: number;
}

/** Longest a single reconcile may take before its requests are aborted and it is retried. */
export const RECONCILE_TIMEOUT_MS = 30_000;

export interface KeyWorkerOptions {
  queue: WorkQueue;
  log: Logger;
  reconcile: (key: string, signal: AbortSignal) => Promise<ReconcileResult>;
  /** After every reconcile that ran to an outcome (not one cut short by losing the lease). */
  onResult?: (result: "success" | "error") => void;
  /** After every reconcile, with its duration. */
  onDone?: (seconds: number) => void;
  timeoutMs?: number;
}

/** Reconciles keys one at a time until the signal aborts or the queue shuts down. */
export async function processKeys(o: KeyWorkerOptions, signal: AbortSignal): Promise<void> {
  const { queue, log } = o;
  while (!signal.aborted) {
    const key = await queue.get(signal);
    if (key === undefined) break;
    const started = performance.now();
    let steppingDown = false;
    try {
      // A hung API request must not hold the worker (or a lost term) forever.
      const deadline = AbortSignal.any([
        signal,
        AbortSignal.timeout(o.timeoutMs ?? RECONCILE_TIMEOUT_MS),
      ]);
      const result = await o.reconcile(key, deadline);
      queue.forget(key);
      o.onResult?.("success");
      if (result.requeueAfterMs !== undefined) queue.addAfter(key, result.requeueAfterMs);
    } catch (e) {
      if (signal.aborted || e instanceof NotLeaderError) {
        // Whoever leads next starts from a full queue.
        queue.add(key);
        steppingDown = true;
      } else {
        const retryInMs = queue.addRateLimited(key);
        o.onResult?.("error");
        log.warn("reconcile failed; retrying with backoff", {
          key,
          error: e,
          retryInMs,
          failures: queue.failures(key),
        });
      }
    } finally {
      queue.done(key);
      o.onDone?.((performance.now() - started) / 1000);
    }
    // The lease could not be renewed in time: the term is about to end;
    // wait for it instead of spinning on keys that cannot be written.
    if (steppingDown && !signal.aborted) {
      log.warn("lease not renewed in time; pausing until leadership is settled", { key });
      await aborted(signal);
    }
  }
}

/**
 * Runs every function with one signal until all return; the first to throw
 * aborts the others, and its error is rethrown once they have stopped.
 */
export async function runTogether(
  signal: AbortSignal,
  members: Array<(signal: AbortSignal) => Promise<void>>,
): Promise<void> {
  const stop = new AbortController();
  const both = AbortSignal.any([signal, stop.signal]);
  let failure: { error: unknown } | undefined;
  await Promise.all(members.map(async (m) => {
    try {
      await m(both);
    } catch (error) {
      failure ??= { error };
      stop.abort();
    }
  }));
  if (failure) throw failure.error;
}
