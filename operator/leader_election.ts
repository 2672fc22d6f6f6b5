/**
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's
 * semantics: a candidate takes the Lease when it is free or when its record
 * has not changed for leaseDuration as measured on the candidate's own clock
 * (so clock skew between nodes does not matter); writes carry the
 * resourceVersion they read, so two candidates can never both win. The
 * leader renews every retryPeriod and steps down when it could not renew for
 * renewDeadline (< leaseDuration, so it stops before anyone else may start).
 * On shutdown it waits for its work to stop, then releases the Lease so a
 * standby takes over at once instead of after leaseDuration.
 */
import { isAlreadyExists, isConflict, isNotFound, type KubeClient } from "../shared/kube.ts";
import { sleep } from "../shared/lifetime.ts";
import type { Logger } from "../shared/log.ts";

export interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number | null;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number | null;
}

export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  spec?: LeaseSpec;
}

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  log: Logger;
  /** Release the Lease on shutdown (default true). */
  releaseOnCancel?: boolean;
  /** Called on every change of leadership. */
  onChange?: (leading: boolean) => void;
}

/** metav1.MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

export class LeaderElector {
  readonly #o: LeaderElectionOptions;
  readonly #path: string;
  #leading = false;
  /** The Lease as we last wrote it, for renewals without a read. */
  #cached?: Lease;
  /** The record last seen and when (monotonic ms) it was first seen. */
  #observedRecord = "";
  #observedAt = 0;
  #lastRenew = -Infinity;

  constructor(options: LeaderElectionOptions) {
    this.#o = options;
    this.#path =
      `/apis/coordination.k8s.io/v1/namespaces/${options.namespace}/leases/${options.name}`;
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  get identity(): string {
    return this.#o.identity;
  }

  /**
   * True while we lead and renewed within renewDeadline: the guard to check
   * before every write, so a leader cut off from the API server stops writing
   * before a standby can take over.
   */
  holdsLease(): boolean {
    return this.#leading && performance.now() - this.#lastRenew < this.#o.renewDeadlineMs;
  }

  /**
   * Campaigns until the signal aborts. While leading, runs `lead` with a
   * signal that aborts when leadership is lost; waits for it to return
   * before campaigning again or releasing. If `lead` throws, steps down,
   * releases and rethrows.
   */
  async run(signal: AbortSignal, lead: (signal: AbortSignal) => Promise<void>): Promise<void> {
    const log = this.#o.log;
    while (!signal.aborted) {
      if (!(await this.#acquire(signal))) break;
      const term = new AbortController();
      const termSignal = AbortSignal.any([signal, term.signal]);
      this.#setLeading(true);
      log.info("became leader", { lease: this.#o.name, identity: this.#o.identity });
      let failure: { error: unknown } | undefined;
      const work = (async () => {
        try {
          await lead(termSignal);
        } catch (error) {
          if (!termSignal.aborted) failure = { error };
        } finally {
          term.abort();
        }
      })();
      await this.#renewLoop(termSignal);
      term.abort();
      await work;
      this.#setLeading(false);
      if (signal.aborted || failure) {
        if (this.#o.releaseOnCancel ?? true) await this.#release();
        if (failure) throw failure.error;
        break;
      }
      log.warn("lost leadership; stopped reconciling, campaigning again", {
        lease: this.#o.name,
        identity: this.#o.identity,
      });
    }
  }

  #setLeading(leading: boolean) {
    this.#leading = leading;
    if (!leading) this.#cached = undefined;
    this.#o.onChange?.(leading);
  }

  /** Tries until the Lease is ours (true) or the signal aborts (false). */
  async #acquire(signal: AbortSignal): Promise<boolean> {
    let announced = false;
    while (!signal.aborted) {
      let waitMs = this.#o.retryPeriodMs;
      try {
        if (await this.#attempt(signal, Math.max(this.#o.retryPeriodMs, 5_000))) return true;
        // Held by someone else: try again at the latest when it would expire.
        const expiresIn = this.#observedAt + this.#observedDurationMs() - performance.now();
        waitMs = Math.max(50, Math.min(this.#o.retryPeriodMs, expiresIn + 10));
        if (!announced) {
          this.#o.log.info("waiting for the leader lease", {
            lease: this.#o.name,
            holder: this.#holder(),
          });
          announced = true;
        }
      } catch (e) {
        if (signal.aborted) break;
        this.#o.log.warn("leader election: could not read or write the Lease; retrying", {
          lease: this.#o.name,
          error: e,
        });
      }
      // Jitter spreads candidates that lost the same race.
      await sleep(waitMs * (1 + Math.random() * 0.2), signal);
    }
    return false;
  }

  /** Renews every retryPeriod; returns when renewing failed for renewDeadline or the signal aborts. */
  async #renewLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(this.#o.retryPeriodMs, signal);
      if (signal.aborted) return;
      for (;;) {
        const left = this.#lastRenew + this.#o.renewDeadlineMs - performance.now();
        if (left <= 0) {
          this.#o.log.error("could not renew the leader lease within the renew deadline", {
            lease: this.#o.name,
            renewDeadlineMs: this.#o.renewDeadlineMs,
          });
          return;
        }
        try {
          if (await this.#attempt(signal, Math.max(left, 500))) break;
          // A 409 on the cached Lease (someone touched it) is retried with a
          // fresh read; only another holder ends the term.
          if (this.#holder() !== this.#o.identity) {
            this.#o.log.warn("leader lease was taken by another candidate", {
              lease: this.#o.name,
              holder: this.#holder(),
            });
            return;
          }
        } catch (e) {
          if (signal.aborted) return;
          this.#o.log.warn("renewing the leader lease failed; retrying", {
            lease: this.#o.name,
            error: e,
          });
        }
        await sleep(Math.min(this.#o.retryPeriodMs, 1000), signal);
        if (signal.aborted) return;
      }
    }
  }

  #holder(): string {
    try {
      return (JSON.parse(this.#observedRecord) as LeaseSpec).holderIdentity ?? "";
    } catch {
      return "";
    }
  }

  #observedDurationMs(): number {
    try {
      const s = (JSON.parse(this.#observedRecord) as LeaseSpec).leaseDurationSeconds;
      if (s && s > 0) return s * 1000;
    } catch {
      // fall through
    }
    return this.#o.leaseDurationMs;
  }

  #observe(spec: LeaseSpec | undefined, at: number) {
    const record = JSON.stringify(spec ?? {});
    if (record !== this.#observedRecord) {
      this.#observedRecord = record;
      this.#observedAt = at;
    }
  }

  /**
   * tryAcquireOrRenew bounded by a timer of its own: a hung request must not
   * keep a leader past its renew deadline, and fetch's own abort cannot be
   * relied on alone (Deno loses it once the request is garbage collected).
   */
  async #attempt(signal: AbortSignal, timeoutMs: number): Promise<boolean> {
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new Error(`Lease request timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const both = AbortSignal.any([signal, deadline.signal]);
    let onAbort = () => {};
    const stopped = new Promise<never>((_, reject) => {
      onAbort = () => reject(both.reason);
      both.addEventListener("abort", onAbort, { once: true });
    });
    stopped.catch(() => {});
    try {
      return await Promise.race([this.#tryAcquireOrRenew(both), stopped]);
    } finally {
      clearTimeout(timer);
      both.removeEventListener("abort", onAbort);
    }
  }

  /**
   * One client-go tryAcquireOrRenew: true when we hold the Lease afterwards.
   * A lost write race (409) is false, not an error.
   */
  async #tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const { client, identity } = this.#o;
    const now = new Date();
    const mono = performance.now();
    const durationSeconds = Math.max(1, Math.ceil(this.#o.leaseDurationMs / 1000));
    let lease = this.#leading ? this.#cached : undefined;
    if (!lease) {
      try {
        lease = await client.get<Lease>(this.#path, { signal });
      } catch (e) {
        if (!isNotFound(e)) throw e;
        try {
          const created = await client.create<Lease>(
            `/apis/coordination.k8s.io/v1/namespaces/${this.#o.namespace}/leases`,
            {
              apiVersion: "coordination.k8s.io/v1",
              kind: "Lease",
              metadata: { name: this.#o.name, namespace: this.#o.namespace },
              spec: {
                holderIdentity: identity,
                leaseDurationSeconds: durationSeconds,
                acquireTime: microTime(now),
                renewTime: microTime(now),
                leaseTransitions: 0,
              },
            },
            { signal },
          );
          this.#won(created, mono);
          return true;
        } catch (err) {
          if (isAlreadyExists(err) || isConflict(err)) return false;
          throw err;
        }
      }
      this.#observe(lease.spec, mono);
      const holder = lease.spec?.holderIdentity ?? "";
      if (holder !== "" && holder !== identity) {
        if (this.#observedAt + this.#observedDurationMs() > mono) return false;
        this.#o.log.info("leader lease expired; taking it over", {
          lease: this.#o.name,
          previousHolder: holder,
        });
      }
    }
    const old = lease.spec ?? {};
    const ours = old.holderIdentity === identity;
    const spec: LeaseSpec = {
      holderIdentity: identity,
      leaseDurationSeconds: durationSeconds,
      acquireTime: ours && old.acquireTime ? old.acquireTime : microTime(now),
      renewTime: microTime(now),
      leaseTransitions: (old.leaseTransitions ?? 0) + (ours ? 0 : 1),
    };
    try {
      const updated = await client.replace<Lease>(this.#path, { ...lease, spec }, { signal });
      this.#won(updated, mono);
      return true;
    } catch (e) {
      if (isConflict(e)) {
        // Someone else wrote it: drop the cache so the next attempt reads.
        this.#cached = undefined;
        return false;
      }
      if (isNotFound(e)) {
        this.#cached = undefined;
        return false;
      }
      throw e;
    }
  }

  #won(lease: Lease, at: number) {
    this.#cached = lease;
    this.#observedRecord = JSON.stringify(lease.spec ?? {});
    this.#observedAt = at;
    this.#lastRenew = at;
  }

  /** Gives the Lease up (holder cleared, 1 s duration) so a standby takes over now. */
  async #release(): Promise<void> {
    try {
      const lease = await this.#o.client.get<Lease>(this.#path, {
        signal: AbortSignal.timeout(5_000),
      });
      if (lease.spec?.holderIdentity !== this.#o.identity) return;
      const now = microTime(new Date());
      await this.#o.client.replace(this.#path, {
        ...lease,
        spec: {
          holderIdentity: "",
          leaseDurationSeconds: 1,
          acquireTime: now,
          renewTime: now,
          leaseTransitions: lease.spec?.leaseTransitions ?? 0,
        },
      }, { signal: AbortSignal.timeout(5_000) });
      this.#o.log.info("released the leader lease", { lease: this.#o.name });
    } catch (e) {
      this.#o.log.warn("could not release the leader lease; a standby takes over when it expires", {
        lease: this.#o.name,
        error: e,
      });
    }
  }
}
