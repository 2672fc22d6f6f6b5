/**
 * The endpoints of every target (Service port) as the control side reports
 * them, the requests held for each, and the choice of endpoint: least in
 * flight across every isolate (shared counters), starting the scan at a
 * rotating index so requests released together spread over the pods.
 */
import type { SharedCounters } from "./counters.ts";
import type { TargetUpdate } from "./proxy_contract.ts";
import type { Pools } from "./upstream_pool.ts";

export interface Endpoint {
  ip: string;
  port: number;
  addr: string;
  slot: number;
  /**
   * A starting pod that passed its own readiness check (starting_pods.ts): a
   * failed connection to it puts the request back on hold (dropEarly).
   */
  early: boolean;
}

export interface Waiter {
  wake(): void;
}

export class Target {
  endpoints: Endpoint[] = [];
  h2c = false;
  /** The app is reached over TLS (appProtocol https). */
  tls = false;
  readonly waiters = new Set<Waiter>();
  rr = 0;
  /** The name TLS connections to it send and verify: "<service>.<namespace>", as Go does. */
  readonly serverName: string;
  constructor(readonly key: string) {
    this.serverName = serverNameOf(key);
  }
}

/** "<service>.<namespace>" from a target key "namespace/service:port" (endpoints.ts targetKeyOf). */
export function serverNameOf(key: string): string {
  const slash = key.indexOf("/");
  const colon = key.lastIndexOf(":");
  const service = key.slice(slash + 1, colon > slash ? colon : key.length);
  return `${service}.${key.slice(0, slash)}`;
}

export class Targets {
  readonly #targets = new Map<string, Target>();
  readonly #counters: SharedCounters;
  readonly #pools: Pools;
  /** In-flight requests per pod; 0 = no cap. */
  readonly #cap: number;

  constructor(counters: SharedCounters, pools: Pools, podConcurrencyLimit: number) {
    this.#counters = counters;
    this.#pools = pools;
    this.#cap = podConcurrencyLimit;
  }

  get(key: string): Target {
    let t = this.#targets.get(key);
    if (!t) this.#targets.set(key, t = new Target(key));
    return t;
  }

  /** Applies endpoint changes and wakes requests held for those targets. */
  apply(updates: TargetUpdate[]): void {
    for (const u of updates) {
      const t = this.get(u.key);
      const next: Endpoint[] = u.endpoints.map((e) => ({
        ip: e.ip,
        port: e.port,
        slot: e.slot,
        addr: e.ip.includes(":") ? `[${e.ip}]:${e.port}` : `${e.ip}:${e.port}`,
        early: e.early === true,
      }));
      for (const e of next) this.#pools.ref(e.addr);
      for (const e of t.endpoints) this.#pools.unref(e.addr);
      t.endpoints = next;
      t.h2c = u.h2c;
      t.tls = u.tls;
      if (next.length > 0) { for (const w of [...t.waiters]) w.wake(); }
    }
  }

  /**
   * An early endpoint refused a connection: it was never ready, so this
   * isolate stops using it until the control side publishes the target again.
   */
  dropEarly(t: Target, ep: Endpoint): void {
    const i = t.endpoints.indexOf(ep);
    if (!ep.early || i < 0) return;
    t.endpoints = t.endpoints.filter((e) => e !== ep);
    this.#pools.unref(ep.addr);
  }

  /** Least in-flight ready endpoint under the per-pod cap; `avoid` loses ties. */
  pick(t: Target, avoid?: Endpoint): Endpoint | null {
    const eps = t.endpoints;
    const n = eps.length;
    if (n === 0) return null;
    const cap = this.#cap;
    const start = t.rr++ % n;
    let best: Endpoint | null = null;
    let bestLoad = Infinity;
    for (let k = 0; k < n; k++) {
      const ep = eps[(start + k) % n]!;
      let load = this.#counters.podLoad(ep.slot);
      if (cap > 0 && load >= cap) continue;
      if (ep === avoid && n > 1) load += 0.5;
      if (load < bestLoad) {
        best = ep;
        bestLoad = load;
        if (load === 0) break;
      }
    }
    return best;
  }
}
