/**
 * The control side of the interceptor, in the main isolate: watches
 * HTTPScaledObjects, Services and EndpointSlices, turns them into the routing
 * table and per-target ready endpoints, hands out counter slots, and pushes
 * changes to the data plane. Level-triggered: events only mark what is
 * dirty; one flush per burst (a microtask later) recomputes and sends only
 * what changed. It also answers the admin API's questions (/queue, ...).
 */
import type { V1EndpointSlice, V1Service } from "@kubernetes/client-node";
import { expectHTTPScaledObjects, parseHTTPScaledObject } from "../shared/httpso.ts";
import { Informer, type KubeApiClient, type KubeObject } from "../shared/kube_api.ts";
import type { Logger } from "../shared/log.ts";
import type { QueueCounts } from "../shared/queue_counts.ts";
import {
  type RouteEntry,
  routeEntryOf,
  type RoutingTable,
  type ServiceRef,
  serviceRefOf,
} from "../shared/routing_table.ts";
import { OVERFLOW_SLOT, type SharedCounters, SlotTable } from "./counters.ts";
import {
  addressOf,
  EndpointView,
  H2C_APP_PROTOCOL,
  type TargetEndpoints,
  targetKeyOf,
} from "./endpoints.ts";
import { type LiveRoute, liveRouteOf, type TargetUpdate } from "./proxy_contract.ts";

/** What Control needs from the data plane (the workers, or an isolate in tests). */
export interface RouteSink {
  setRoutes(routes: LiveRoute[]): number;
  setTargets(updates: TargetUpdate[]): number;
  /** Version of the last message sent; the next one carries version + 1. */
  readonly version: number;
  /** The oldest version every isolate has applied. */
  readonly minAcked: number;
}

export interface ControlOptions {
  client: KubeApiClient;
  log: Logger;
  /** "" = all namespaces. */
  watchNamespace: string;
  counters: SharedCounters;
  sink: RouteSink;
  /** Objects per list page of the watches (default 500; small in tests). */
  listPageSize?: number;
}

interface Parsed {
  rv: string | undefined;
  entry?: RouteEntry;
  error?: string;
  /** The data plane's copy, reused while the entry and its slot are unchanged. */
  live?: LiveRoute;
  targetKey?: string;
  fallbackRef?: ServiceRef;
  fallbackKey?: string;
}

export interface DeploymentInfo {
  namespace: string;
  service: string;
  port: number | string;
  /** Ready endpoint addresses ("ip:port"). */
  ready: string[];
  notReady: number;
  /** Distinct pods behind the port, ready or not. */
  replicas: number;
  appProtocol?: string;
  /** Routes (namespace/name) that forward here, as target or fallback. */
  routes: string[];
  problem?: string;
}

/**
 * Drops what the interceptor never reads from a cached object (the
 * informer's store holds this same object): managedFields and annotations
 * are often most of a Service's or EndpointSlice's size, and the interceptor
 * caches every one in the cluster (or namespace).
 */
function trimCached(obj: KubeObject): void {
  const meta = obj.metadata as Record<string, unknown> | undefined;
  if (!meta) return;
  delete meta.managedFields;
  delete meta.annotations;
}

function paths(ns: string) {
  const n = ns === "" ? "" : `/namespaces/${ns}`;
  return {
    httpso: `/apis/http.keda.sh/v1alpha1${n}/httpscaledobjects`,
    services: `/api/v1${n}/services`,
    slices: `/apis/discovery.k8s.io/v1${n}/endpointslices`,
  };
}

export class Control {
  readonly httpso: Informer<KubeObject>;
  readonly services: Informer<V1Service & KubeObject>;
  readonly slices: Informer<V1EndpointSlice & KubeObject>;
  table: RoutingTable = { entries: new Map(), invalid: new Map() };
  readonly view = new EndpointView();
  readonly routeSlots: SlotTable;
  readonly podSlots: SlotTable;
  readonly #opts: ControlOptions;
  readonly #log: Logger;
  readonly #parsed = new Map<string, Parsed>();
  #sortedKeys: string[] = [];
  /** Target key -> the Service port it names. */
  #targetRefs = new Map<string, ServiceRef>();
  /** Target key -> routes using it. */
  #targetRoutes = new Map<string, string[]>();
  /** "namespace/service" -> target keys on that Service. */
  #serviceTargets = new Map<string, Set<string>>();
  readonly #resolved = new Map<string, TargetEndpoints>();
  readonly #sent = new Map<string, string>();
  readonly #requests = new Map<string, { slot: number; last: number; total: number }>();
  readonly #keyOfSlot = new Map<number, string>();
  #routesDirty = false;
  readonly #dirtyServices = new Set<string>();
  #flushQueued = false;
  #routesPublished = false;
  #endpointsSynced = false;
  readonly #watchers = new Set<(changed: QueueCounts) => void>();
  #lastBroadcast: QueueCounts = {};
  #lastLoggedInvalid = new Map<string, string>();

  constructor(opts: ControlOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    const p = paths(opts.watchNamespace);
    const pageSize = opts.listPageSize;
    this.httpso = new Informer(opts.client, { path: p.httpso, log: opts.log, pageSize });
    this.services = new Informer(opts.client, { path: p.services, log: opts.log });
    this.slices = new Informer(opts.client, { path: p.slices, log: opts.log });
    this.routeSlots = new SlotTable(opts.counters.layout.routeCapacity);
    this.podSlots = new SlotTable(opts.counters.layout.podCapacity);
    this.httpso.subscribe((e) => {
      if (e.type !== "SYNC") trimCached(e.object);
      if (e.type !== "SYNC") this.#markRoutes();
      else if (!this.#routesPublished) this.#markRoutes();
    });
    this.services.subscribe((e) => {
      if (e.type === "SYNC") return this.#maybeEndpointsSynced();
      trimCached(e.object);
      const key = e.type === "DELETED"
        ? this.view.deleteService(e.key)
        : this.view.upsertService(e.object);
      this.#markService(key);
    });
    this.slices.subscribe((e) => {
      if (e.type === "SYNC") return this.#maybeEndpointsSynced();
      trimCached(e.object);
      const keys = e.type === "DELETED"
        ? this.view.deleteSlice(e.key)
        : this.view.upsertSlice(e.object);
      for (const k of keys) this.#markService(k);
    });
  }

  /** The first routing table has been published to the data plane. */
  get ready(): boolean {
    return this.#routesPublished;
  }

  /** Lifetime member: runs the three watches. */
  async run(signal: AbortSignal): Promise<void> {
    const reclaim = setInterval(() => this.#reclaim(), 5_000);
    // Widen the wrapping request counters often enough that they never lap.
    const sample = setInterval(() => this.#sampleRequests(), 10_000);
    const coalesce = setInterval(() => this.#broadcastChanges(), 1_000);
    try {
      await Promise.all([
        this.httpso.run(signal),
        this.services.run(signal),
        this.slices.run(signal),
      ]);
    } finally {
      clearInterval(reclaim);
      clearInterval(sample);
      clearInterval(coalesce);
    }
  }

  #maybeEndpointsSynced(): void {
    if (!this.#endpointsSynced && this.services.hasSynced && this.slices.hasSynced) {
      this.#endpointsSynced = true;
      for (const svc of this.#serviceTargets.keys()) this.#dirtyServices.add(svc);
      this.#queueFlush();
    }
  }

  #markRoutes(): void {
    this.#routesDirty = true;
    this.#queueFlush();
  }

  #markService(key: string): void {
    if (!this.#serviceTargets.has(key)) return;
    this.#dirtyServices.add(key);
    this.#queueFlush();
  }

  #queueFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      try {
        this.flush();
      } catch (e) {
        this.#log.error("applying watched changes failed", { error: e });
      }
    });
  }

  /** Applies everything marked dirty (normally called a microtask after events). */
  flush(): void {
    if (this.#routesDirty && this.httpso.hasSynced) {
      this.#routesDirty = false;
      this.#rebuildRoutes();
    } else if (this.#routesDirty) {
      // The first list arrives page by page: validate each page while the
      // next is fetched, so the first table only assembles what is parsed.
      this.#parseStore();
    }
    if (this.#dirtyServices.size > 0 && this.#endpointsSynced) {
      const targets = new Set<string>();
      for (const svc of this.#dirtyServices) {
        for (const t of this.#serviceTargets.get(svc) ?? []) targets.add(t);
      }
      this.#dirtyServices.clear();
      this.#publishTargets(targets, []);
    }
  }

  /**
   * Validates every stored object not yet parsed at its resourceVersion into
   * the parse cache; returns whether a key was new to it.
   */
  #parseStore(): boolean {
    const store = this.httpso.store;
    // Thousands of objects at once mean a big cluster: before the first sync
    // the list so far says so (it arrives a page at a time), after it the
    // objects never parsed (a relist).
    expectHTTPScaledObjects(this.httpso.hasSynced ? store.size - this.#parsed.size : store.size);
    let added = false;
    for (const [key, obj] of store) {
      const rv = obj.metadata?.resourceVersion;
      const p = this.#parsed.get(key);
      if (p && p.rv === rv && rv !== undefined) continue;
      if (!p) added = true;
      try {
        const entry = routeEntryOf(parseHTTPScaledObject(obj));
        const next: Parsed = { rv, entry, targetKey: targetKeyOf(entry.target) };
        if (entry.fallback) {
          next.fallbackRef = serviceRefOf(entry.fallback.namespace, entry.fallback);
          next.fallbackKey = targetKeyOf(next.fallbackRef);
        }
        this.#parsed.set(key, next);
      } catch (e) {
        this.#parsed.set(key, { rv, error: (e as Error).message });
      }
    }
    return added;
  }

  #rebuildRoutes(): void {
    const store = this.httpso.store;
    // Keys parsed before the first sync may since have gone: compare sizes too.
    const keysChanged = this.#parseStore() || store.size !== this.#sortedKeys.length ||
      this.#parsed.size !== store.size;
    if (keysChanged) {
      for (const key of this.#parsed.keys()) if (!store.has(key)) this.#parsed.delete(key);
      // Sorted once per change of the key set; iteration order makes the table deterministic.
      this.#sortedKeys = [...this.#parsed.keys()].sort();
    }
    const entries: RouteEntry[] = [];
    const invalid = new Map<string, string>();
    for (const key of this.#sortedKeys) {
      const p = this.#parsed.get(key)!;
      if (p.entry) entries.push(p.entry);
      else invalid.set(key, p.error!);
    }
    for (const [key, problem] of invalid) {
      if (this.#lastLoggedInvalid.get(key) !== problem) {
        this.#log.warn("HTTPScaledObject ignored: invalid", { key, problem });
      }
    }
    this.#lastLoggedInvalid = invalid;

    // Slots: removed keys retire at the version of the table that drops them.
    if (keysChanged || this.routeSlots.size !== entries.length) {
      const { fresh, overflow } = this.routeSlots.assign(
        entries.map((e) => e.key),
        this.#pendingVersion(),
      );
      if (overflow > 0) {
        this.#log.error("more routes than counter slots; some share one counter", { overflow });
      }
      for (const key of fresh) {
        const slot = this.routeSlots.slotOf(key)!;
        this.#requests.set(key, {
          slot,
          last: this.#opts.counters.requests32(slot),
          total: 0,
        });
      }
      this.#keyOfSlot.clear();
      for (const [key, slot] of this.routeSlots.entries()) {
        if (slot !== OVERFLOW_SLOT) this.#keyOfSlot.set(slot, key);
      }
      for (const key of this.#requests.keys()) {
        if (this.routeSlots.slotOf(key) === undefined) this.#requests.delete(key);
      }
    }

    const targetRefs = new Map<string, ServiceRef>();
    const targetRoutes = new Map<string, string[]>();
    const refer = (key: string, ref: ServiceRef, route: string) => {
      const list = targetRoutes.get(key);
      if (list) list.push(route);
      else {
        targetRoutes.set(key, [route]);
        targetRefs.set(key, ref);
      }
    };
    const live: LiveRoute[] = new Array(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const p = this.#parsed.get(e.key)!;
      const slot = this.routeSlots.slotOf(e.key)!;
      if (!p.live || p.live.slot !== slot) {
        p.live = liveRouteOf(e, slot, p.targetKey!, p.fallbackKey);
      }
      live[i] = p.live;
      refer(p.targetKey!, e.target, e.key);
      if (p.fallbackRef) refer(p.fallbackKey!, p.fallbackRef, e.key);
    }
    this.table = { entries: new Map(entries.map((e) => [e.key, e])), invalid };
    this.#opts.sink.setRoutes(live);
    this.#routesPublished = true;

    const added: string[] = [];
    for (const k of targetRefs.keys()) if (!this.#targetRefs.has(k)) added.push(k);
    const removed: string[] = [];
    for (const k of this.#targetRefs.keys()) if (!targetRefs.has(k)) removed.push(k);
    this.#targetRefs = targetRefs;
    this.#targetRoutes = targetRoutes;
    if (added.length > 0 || removed.length > 0) {
      const serviceTargets = new Map<string, Set<string>>();
      for (const [key, ref] of targetRefs) {
        const svc = `${ref.namespace}/${ref.service}`;
        (serviceTargets.get(svc) ?? serviceTargets.set(svc, new Set()).get(svc)!).add(key);
      }
      this.#serviceTargets = serviceTargets;
      if (this.#endpointsSynced) this.#publishTargets(new Set(added), removed);
    }
  }

  /** The version the next message to the data plane will carry. */
  #pendingVersion(): number {
    return this.#opts.sink.version + 1;
  }

  #publishTargets(keys: Set<string>, removed: string[]): void {
    const changed: string[] = [];
    for (const key of keys) {
      const ref = this.#targetRefs.get(key);
      if (!ref) continue;
      const res = this.view.resolve(ref);
      this.#resolved.set(key, res);
      const sig = `${res.ready.map(addressOf).join(",")}|${res.appProtocol ?? ""}`;
      if (this.#sent.get(key) !== sig) {
        this.#sent.set(key, sig);
        changed.push(key);
      }
    }
    for (const key of removed) {
      this.#resolved.delete(key);
      if (this.#sent.delete(key)) changed.push(key);
    }
    if (changed.length === 0) return;
    const addrs = new Set<string>();
    for (const res of this.#resolved.values()) for (const ep of res.ready) addrs.add(addressOf(ep));
    const { overflow } = this.podSlots.assign(addrs, this.#pendingVersion());
    if (overflow > 0) {
      this.#log.error("more endpoints than counter slots; some share one counter", { overflow });
    }
    const updates: TargetUpdate[] = changed.map((key) => {
      const res = this.#resolved.get(key);
      return {
        key,
        h2c: res?.appProtocol === H2C_APP_PROTOCOL,
        endpoints: (res?.ready ?? []).map((ep) => ({
          ip: ep.ip,
          port: ep.port,
          slot: this.podSlots.slotOf(addressOf(ep)) ?? OVERFLOW_SLOT,
        })),
      };
    });
    for (const u of updates) {
      this.#log.debug("endpoints changed", {
        target: u.key,
        ready: u.endpoints.map((e) => `${e.ip}:${e.port}`),
      });
    }
    this.#opts.sink.setTargets(updates);
  }

  #reclaim(): void {
    const c = this.#opts.counters;
    const min = this.#opts.sink.minAcked;
    this.routeSlots.reclaim(min, (s) => c.concurrency(s) === 0 && c.held(s) === 0);
    this.podSlots.reclaim(min, (s) => c.podLoad(s) === 0);
  }

  #sampleRequests(): void {
    const c = this.#opts.counters;
    for (const r of this.#requests.values()) {
      const cur = c.requests32(r.slot);
      r.total += (cur - r.last) >>> 0;
      r.last = cur;
    }
  }

  /** GET /queue: every route's concurrency and request count. */
  queueCounts(): QueueCounts {
    this.#sampleRequests();
    const c = this.#opts.counters;
    const out: QueueCounts = {};
    for (const key of this.table.entries.keys()) {
      const r = this.#requests.get(key);
      const slot = this.routeSlots.slotOf(key) ?? OVERFLOW_SLOT;
      out[key] = { Concurrency: c.concurrency(slot), RequestCount: r?.total ?? 0 };
    }
    return out;
  }

  /** For /queue/watch: called with changed routes; returns an unsubscribe. */
  watchQueue(send: (changed: QueueCounts) => void): () => void {
    this.#watchers.add(send);
    return () => this.#watchers.delete(send);
  }

  /** A route went idle <-> busy in some worker: tell watchers at once. */
  onActivity(slot: number): void {
    const key = this.#keyOfSlot.get(slot);
    if (key === undefined || this.#watchers.size === 0) return;
    this.#sampleRequests();
    const count = {
      Concurrency: this.#opts.counters.concurrency(slot),
      RequestCount: this.#requests.get(key)?.total ?? 0,
    };
    this.#lastBroadcast[key] = count;
    for (const w of this.#watchers) w({ [key]: count });
  }

  /** Coalesced: the routes whose counts changed since the last broadcast. */
  #broadcastChanges(): void {
    if (this.#watchers.size === 0) return;
    const now = this.queueCounts();
    const changed: QueueCounts = {};
    let any = false;
    for (const [key, count] of Object.entries(now)) {
      const before = this.#lastBroadcast[key];
      if (
        !before || before.Concurrency !== count.Concurrency ||
        before.RequestCount !== count.RequestCount
      ) {
        changed[key] = count;
        any = true;
      }
    }
    this.#lastBroadcast = now;
    if (any) { for (const w of this.#watchers) w(changed); }
  }

  /** GET /deployments: per target Service port, what the data plane forwards to. */
  deployments(): Record<string, DeploymentInfo> {
    const out: Record<string, DeploymentInfo> = {};
    for (const key of [...this.#targetRefs.keys()].sort()) {
      const ref = this.#targetRefs.get(key)!;
      const res = this.#resolved.get(key) ?? this.view.resolve(ref);
      out[key] = {
        namespace: ref.namespace,
        service: ref.service,
        port: ref.port ?? ref.portName ?? "",
        ready: res.ready.map(addressOf),
        notReady: res.notReady,
        replicas: res.replicas,
        ...(res.appProtocol ? { appProtocol: res.appProtocol } : {}),
        routes: this.#targetRoutes.get(key) ?? [],
        ...(res.problem ? { problem: res.problem } : {}),
      };
    }
    return out;
  }

  /** Rebuilds the routing table from the watched objects now. */
  rebuildRoutes(): void {
    this.#routesDirty = true;
    this.flush();
  }

  /** POST|GET /routing_ping: relist HTTPScaledObjects now, then return the table. */
  async routingPing(): Promise<RoutingTable> {
    await this.httpso.relist();
    this.rebuildRoutes();
    return this.table;
  }
}
