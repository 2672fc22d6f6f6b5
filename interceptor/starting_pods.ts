/**
 * Probe-driven forwarding: while a target has held requests and no ready
 * endpoint, the starting pods its EndpointSlices list (ready: false) are
 * checked with their own readiness probe (pod_probe.ts), every 25 ms growing
 * to 50 ms (a held request waits at most that long after the app listens),
 * and after SLOW_AFTER_MS without passing, growing to 500 ms (a slow starter
 * is not hammered for minutes); a pod that passes becomes an early endpoint of the target
 * until the kubelet's verdict takes over. This module alone decides which
 * pods are probed, how often, for how long, and when one counts as passed.
 *
 * Bounds: one attempt in flight per pod; at most MAX_PROBED pods probed at
 * once over all targets; a pod is given up after PROBE_FOR_MS; a target
 * without held requests is not probed (its loops sleep).
 */
import type { V1Pod } from "@kubernetes/client-node";
import type { Logger } from "../shared/log.ts";
import { addressOf, type ReadyEndpoint, type StartingEndpoint } from "./endpoints.ts";
import { attempt, type ProbeCheck, type ProbePlan, probePlanOf } from "./pod_probe.ts";

/** What reading a pod can give: the pod, none (gone), or no permission. */
export type PodRead = V1Pod | null | "forbidden";

export interface StartingPodsOptions {
  getPod(namespace: string, name: string, opts: { signal: AbortSignal }): Promise<PodRead>;
  /** True while the target has requests held for it. */
  wanted(key: string): boolean;
  /** An endpoint of `key` passed or stopped passing: publish the target again. */
  onChange(key: string): void;
  log: Logger;
  /** Overrides for tests; the defaults are the documented figures. */
  firstIntervalMs?: number;
  maxIntervalMs?: number;
}

/** Probing a pod this long without a pass slows it to SLOW_INTERVAL_MS. */
export const SLOW_AFTER_MS = 30_000;
const SLOW_INTERVAL_MS = 500;

export const MAX_PROBED = 64;
/** One namespace's share of MAX_PROBED: one tenant's starting pods cannot take every slot. */
export const MAX_PROBED_PER_NAMESPACE = 16;
/** A pod whose loop ended on its own is taken on again after this long, if still starting. */
const RETRY_ENDED_MS = 60_000;
/** A namespace whose pods we may not read is tried again after this long (RBAC can be granted). */
export const FORBIDDEN_RETRY_MS = 60_000;
/** One pod read may take this long. */
const POD_READ_TIMEOUT_MS = 5_000;
/** The longest pause between reads of a pod that is not there yet or could not be read. */
const MAX_READ_BACKOFF_MS = 2_000;
export const PROBE_FOR_MS = 10 * 60_000;
/** After passing, the check is repeated this often: a pod that stops passing is dropped. */
const RECHECK_MS = 1_000;
/** How often a loop looks again at a pod it cannot check yet, or a target nobody waits for. */
const IDLE_MS = 100;

interface Probed {
  ep: StartingEndpoint;
  abort: AbortController;
  passed: boolean;
  /** When its loop ended on its own (gave up, 403, not the pod named): retried after RETRY_ENDED_MS. */
  endedAt?: number;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

export class StartingPods {
  readonly #opts: StartingPodsOptions;
  /** Target key -> address -> its probe loop. */
  readonly #targets = new Map<string, Map<string, Probed>>();
  #active = 0;
  /** Loops running per pod namespace (MAX_PROBED_PER_NAMESPACE). */
  readonly #perNamespace = new Map<string, number>();
  /** Namespaces whose pods the API refused to show -> until when they are not read again. */
  readonly #forbidden = new Map<string, number>();
  #warnedFull = false;
  readonly #first: number;
  readonly #max: number;

  constructor(opts: StartingPodsOptions) {
    this.#opts = opts;
    this.#first = opts.firstIntervalMs ?? 25;
    this.#max = opts.maxIntervalMs ?? 50;
  }

  /** Probes running now (for /deployments and tests). */
  get active(): number {
    return this.#active;
  }

  /**
   * The target's starting endpoints now; [] stops its probing (it has a ready
   * endpoint, no starting pod, or routes that opted out). New pods are only
   * taken on when `start` (a route of the target is busy, so requests are
   * held): idle targets with starting pods cost nothing; pods already probed
   * keep their loop (and a passed pod stays early) until they leave `starting`.
   */
  update(key: string, starting: StartingEndpoint[], start = true): void {
    let probed = this.#targets.get(key);
    const want = new Map(starting.filter((e) => e.pod).map((e) => [addressOf(e), e]));
    if (!probed) {
      if (want.size === 0 || !start) return;
      this.#targets.set(key, probed = new Map());
    }
    let changed = false;
    for (const [addr, p] of probed) {
      const next = want.get(addr);
      const same = next && next.pod?.name === p.ep.pod?.name && next.pod?.uid === p.ep.pod?.uid;
      const retry = p.endedAt !== undefined && Date.now() - p.endedAt >= RETRY_ENDED_MS;
      if (same && !retry) continue;
      p.abort.abort();
      probed.delete(addr);
      if (p.passed) changed = true;
    }
    for (const [addr, ep] of want) {
      if (!start) break;
      const ns = ep.pod!.namespace;
      if (probed.has(addr) || this.#isForbidden(ns)) continue;
      if ((this.#perNamespace.get(ns) ?? 0) >= MAX_PROBED_PER_NAMESPACE) continue;
      if (this.#active >= MAX_PROBED) {
        if (!this.#warnedFull) {
          this.#warnedFull = true;
          this.#opts.log.warn("too many starting pods to probe; the rest wait for the kubelet", {
            max: MAX_PROBED,
          });
        }
        break;
      }
      const p: Probed = { ep, abort: new AbortController(), passed: false };
      probed.set(addr, p);
      this.#active++;
      this.#perNamespace.set(ns, (this.#perNamespace.get(ns) ?? 0) + 1);
      void this.#run(key, p).finally(() => {
        this.#active--;
        const left = (this.#perNamespace.get(ns) ?? 1) - 1;
        if (left > 0) this.#perNamespace.set(ns, left);
        else this.#perNamespace.delete(ns);
        if (!p.abort.signal.aborted) p.endedAt = Date.now();
        if (this.#active < MAX_PROBED / 2) this.#warnedFull = false;
      });
    }
    if (probed.size === 0) this.#targets.delete(key);
    if (changed) this.#opts.onChange(key);
  }

  /** Starting endpoints of `key` that passed their checks, in address order. */
  passed(key: string): ReadyEndpoint[] {
    const probed = this.#targets.get(key);
    if (!probed) return [];
    const out: ReadyEndpoint[] = [];
    for (const p of probed.values()) if (p.passed) out.push({ ip: p.ep.ip, port: p.ep.port });
    return out.sort((a, b) => (addressOf(a) < addressOf(b) ? -1 : 1));
  }

  #isForbidden(namespace: string): boolean {
    const until = this.#forbidden.get(namespace);
    if (until === undefined) return false;
    if (Date.now() < until) return true;
    this.#forbidden.delete(namespace);
    return false;
  }

  /** Stops every loop (the control side is shutting down). */
  close(): void {
    for (const probed of this.#targets.values()) for (const p of probed.values()) p.abort.abort();
    this.#targets.clear();
  }

  #set(key: string, p: Probed, passed: boolean): void {
    if (p.passed === passed || p.abort.signal.aborted) return;
    p.passed = passed;
    this.#opts.log.info(
      passed
        ? "a starting pod passed its readiness check"
        : "an early pod stopped passing its readiness check",
      {
        target: key,
        pod: p.ep.pod?.name,
        address: addressOf(p.ep),
      },
    );
    this.#opts.onChange(key);
  }

  async #plan(key: string, p: Probed, until: number): Promise<ProbePlan | null> {
    const signal = p.abort.signal;
    const { namespace, name, uid } = p.ep.pod!;
    let said = "";
    let backoff = IDLE_MS;
    const again = async () => {
      await sleep(backoff, signal);
      backoff = Math.min(MAX_READ_BACKOFF_MS, backoff * 2);
    };
    while (!signal.aborted && Date.now() < until) {
      if (!this.#opts.wanted(key)) {
        await sleep(IDLE_MS, signal);
        continue;
      }
      if (this.#isForbidden(namespace)) return null;
      let pod: PodRead;
      try {
        pod = await this.#opts.getPod(namespace, name, {
          signal: AbortSignal.any([signal, AbortSignal.timeout(POD_READ_TIMEOUT_MS)]),
        });
      } catch (e) {
        if (signal.aborted) return null;
        this.#opts.log.debug("could not read a starting pod", { pod: name, error: e });
        await again();
        continue;
      }
      if (pod === "forbidden") {
        if (!this.#forbidden.has(namespace)) {
          this.#opts.log.warn(
            "cannot read pods in this namespace, so its starting pods are not probed and held requests wait for the kubelet; grant the interceptor get on pods (see k8s/rbac)",
            { namespace, pod: `${namespace}/${name}`, retryInMs: FORBIDDEN_RETRY_MS },
          );
        }
        this.#forbidden.set(namespace, Date.now() + FORBIDDEN_RETRY_MS);
        return null;
      }
      if (pod === null) {
        await again();
        continue;
      }
      // The slice's writer names the pod and the address: probe only a pod
      // that is the one named (uid) and owns that address.
      if (uid && pod.metadata?.uid && pod.metadata.uid !== uid) return null;
      const ips = [
        ...(pod.status?.podIPs ?? []).map((x) => x.ip),
        ...(pod.status?.podIP ? [pod.status.podIP] : []),
      ];
      if (ips.length === 0) {
        await again();
        continue;
      }
      if (!ips.includes(p.ep.ip)) {
        this.#opts.log.warn(
          "an EndpointSlice lists a starting address its pod does not have; not probed",
          { target: key, pod: `${namespace}/${name}`, address: p.ep.ip, podIPs: ips },
        );
        return null;
      }
      const plan = probePlanOf(pod, p.ep.port);
      if (!("reason" in plan)) return plan;
      if (said !== plan.reason) {
        said = plan.reason;
        this.#opts.log.debug("a starting pod waits for the kubelet", {
          pod: `${namespace}/${name}`,
          reason: plan.reason,
        });
      }
      // Only a container not yet started can change its answer soon.
      if (!plan.reason.startsWith("waiting")) return null;
      await again();
    }
    return null;
  }

  async #run(key: string, p: Probed): Promise<void> {
    const signal = p.abort.signal;
    const plan = await this.#plan(key, p, Date.now() + PROBE_FOR_MS);
    if (!plan) return;
    // The time budget counts from when the pod can be checked (an image pull is not probing).
    const until = Date.now() + PROBE_FOR_MS;
    const wait = plan.notBefore - Date.now();
    if (wait > 0) await sleep(wait, signal);
    const checks: ProbeCheck[] = plan.startup ? [plan.startup, plan.readiness] : [plan.readiness];
    let stage = 0;
    let passes = 0;
    let interval = this.#first;
    // Only time spent probing for held requests counts toward slowing down.
    let probingSince = Date.now();
    while (!signal.aborted && Date.now() < until) {
      if (!p.passed && !this.#opts.wanted(key)) {
        await sleep(IDLE_MS, signal);
        probingSince = Date.now();
        interval = this.#first;
        continue;
      }
      const check = checks[stage]!;
      const ok = await attempt(p.ep.ip, check, { signal });
      if (signal.aborted) break;
      if (ok && ++passes >= check.successes) {
        if (stage < checks.length - 1) {
          stage++;
          passes = 0;
          continue;
        }
        this.#set(key, p, true);
      } else if (!ok) {
        passes = 0;
        // One failure is enough to stop sending early: the kubelet will say when it is ready.
        this.#set(key, p, false);
      }
      await sleep(p.passed ? RECHECK_MS : interval, signal);
      const cap = Date.now() - probingSince < SLOW_AFTER_MS
        ? this.#max
        : Math.max(this.#max, SLOW_INTERVAL_MS);
      interval = Math.min(cap, Math.round(interval * 1.25));
    }
    if (!signal.aborted && Date.now() >= until) {
      this.#opts.log.info("gave up probing a starting pod; it waits for the kubelet", {
        target: key,
        pod: p.ep.pod?.name,
      });
      this.#set(key, p, false);
    }
  }
}
