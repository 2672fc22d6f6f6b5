/**
 * The control side of the interceptor, in the main isolate: watches
 * HTTPScaledObjects, InterceptorRoutes, the ConfigMaps holding static
 * response bodies, Services and EndpointSlices, turns them into the routing
 * table and per-target ready endpoints, hands out counter slots, and pushes
 * changes to the data plane. Level-triggered: events only mark what is
 * dirty; one flush per burst (a microtask later) recomputes and sends only
 * what changed. It also answers the admin API's questions (/queue, ...).
 */
import type { V1ConfigMap, V1EndpointSlice, V1Pod, V1Service } from "@kubernetes/client-node";
import { expectHTTPScaledObjects, parseHTTPScaledObject } from "../shared/httpso.ts";
import {
  IR_API_VERSION,
  IR_PLURAL,
  parseInterceptorRoute,
  RESPONSE_BODY_LABEL,
} from "../shared/interceptor_route.ts";
import { Informer, type KubeApiClient, KubeApiError, type KubeObject } from "../shared/kube_api.ts";
import type { Logger } from "../shared/log.ts";
import type {
  ColdStartRecord,
  QueueCounts,
  RouteStatus,
  RouteStatusEntry,
} from "../shared/queue_counts.ts";
import {
  PROBE_STARTING_PODS_ANNOTATION,
  type RouteEntry,
  routeEntryOf,
  routeEntryOfRoute,
  type RoutingTable,
  type ServiceRef,
  serviceRefOf,
  servingOf,
} from "../shared/routing_table.ts";
import { OVERFLOW_SLOT, type SharedCounters, SlotTable } from "./counters.ts";
import {
  addressOf,
  EndpointView,
  H2C_APP_PROTOCOL,
  HTTPS_APP_PROTOCOL,
  type TargetEndpoints,
  targetKeyOf,
} from "./endpoints.ts";
import { type LiveRoute, liveRouteOf, type TargetUpdate } from "./proxy_contract.ts";
import { resolveResponse } from "./static_response.ts";
import { type PodRead, StartingPods } from "./starting_pods.ts";

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
  /**
   * KEDA_HTTP_DIRECT_POD_ROUTING: true (default) forwards to ready pods;
   * false to the Service's cluster IP once it has a ready endpoint.
   */
  directPodRouting?: boolean;
  /**
   * KEDA_HTTP_PROBE_STARTING_PODS: check starting pods with their own
   * readiness probe while requests are held (starting_pods.ts; default true).
   */
  probeStartingPods?: boolean;
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
  /** A static response reads a ConfigMap: re-resolved when ConfigMaps change. */
  usesConfigMap?: boolean;
  /** #configMapsVersion the live copy was resolved at. */
  resolvedAt?: number;
}

function usesConfigMap(e: RouteEntry): boolean {
  return e.placeholder?.configMap !== undefined ||
    e.staticRoutes.some((s) => s.response.configMap !== undefined);
}

export interface DeploymentInfo {
  namespace: string;
  service: string;
  port: number | string;
  /** Ready endpoint addresses ("ip:port"). */
  ready: string[];
  /** `ready` are starting pods that passed their own readiness check (not yet the kubelet's). */
  early?: true;
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
  const a = meta.annotations as Record<string, string> | undefined;
  const optOut = a?.[PROBE_STARTING_PODS_ANNOTATION];
  if (optOut === undefined) delete meta.annotations;
  else meta.annotations = { [PROBE_STARTING_PODS_ANNOTATION]: optOut };
}

function paths(ns: string) {
  const n = ns === "" ? "" : `/namespaces/${ns}`;
  return {
    httpso: `/apis/http.keda.sh/v1alpha1${n}/httpscaledobjects`,
    routes: `/apis/${IR_API_VERSION}${n}/${IR_PLURAL}`,
    configMaps: `/api/v1${n}/configmaps`,
    services: `/api/v1${n}/services`,
    slices: `/apis/discovery.k8s.io/v1${n}/endpointslices`,
  };
}

/** Cold starts kept for /route_status; older ones are dropped. */
export const COLD_START_HISTORY = 50;

/**
 * The cold starts of one interceptor replica, told from what the main
 * isolate sees without a message per request: a route becomes busy while
 * its target has no ready endpoint (begin), a pod of the target appears,
 * the target gets a ready endpoint (the data plane releases the held
 * requests on that same update), or the route goes idle first (abandoned).
 * A placeholder route answers instead of holding, so going idle does not
 * end its cold start: the app was woken and its pod is on the way.
 */
export class ColdStartLog {
  readonly #done: ColdStartRecord[] = [];
  /** Open cold starts by route. */
  readonly #open = new Map<string, ColdStartRecord>();
  readonly #capacity: number;

  constructor(capacity = COLD_START_HISTORY) {
    this.#capacity = capacity;
  }

  /** The route became busy with no ready endpoint; `podPresent`: a pod is already starting. */
  begin(route: string, target: string, now: number, podPresent: boolean): void {
    const open = this.#open.get(route);
    if (open && open.target === target) return;
    if (open) this.#close(open, "abandoned", now);
    this.#open.set(route, {
      route,
      target,
      heldAt: now,
      ...(podPresent ? { podSeenAt: now } : {}),
      outcome: "waiting",
      held: 0,
    });
  }

  /** What the target looks like now: pods appearing, a ready endpoint closing its cold starts. */
  observe(
    target: string,
    view: { pods: number; ready: number; early: boolean },
    now: number,
    heldOf: (route: string) => number,
  ): void {
    for (const c of [...this.#open.values()]) {
      if (c.target !== target) continue;
      if (view.pods > 0 && c.podSeenAt === undefined) c.podSeenAt = now;
      if (view.ready === 0) continue;
      c.held = Math.max(c.held, heldOf(c.route));
      c.readyAt = now;
      c.readyBy = view.early ? "probe" : "kubelet";
      c.podSeenAt ??= now;
      this.#close(c, "ready", now);
    }
  }

  /** The route has nothing in flight any more. */
  idle(route: string, now: number, placeholder: boolean): void {
    const c = this.#open.get(route);
    if (!c || placeholder) return;
    c.endedAt = now;
    this.#close(c, "abandoned", now);
  }

  /** Notes how many requests a route holds now (the most seen is kept). */
  sampleHeld(heldOf: (route: string) => number): void {
    for (const c of this.#open.values()) c.held = Math.max(c.held, heldOf(c.route));
  }

  /** The route is gone from the table: its open cold start ends unanswered. */
  forget(keep: (route: string) => boolean, now: number): void {
    for (const c of [...this.#open.values()]) {
      if (!keep(c.route)) {
        c.endedAt = now;
        this.#close(c, "abandoned", now);
      }
    }
  }

  /** Open ones first, then finished ones; newest first within each. */
  list(): ColdStartRecord[] {
    const open = [...this.#open.values()].sort((a, b) => b.heldAt - a.heldAt);
    return [...open, ...[...this.#done].reverse()].map((c) => ({ ...c }));
  }

  #close(c: ColdStartRecord, outcome: "ready" | "abandoned", now: number): void {
    this.#open.delete(c.route);
    c.outcome = outcome;
    if (outcome === "abandoned") c.endedAt ??= now;
    this.#done.push(c);
    if (this.#done.length > this.#capacity) this.#done.shift();
  }
}

export class Control {
  readonly httpso: Informer<KubeObject>;
  readonly routes: Informer<KubeObject>;
  readonly configMaps: Informer<V1ConfigMap & KubeObject>;
  readonly services: Informer<V1Service & KubeObject>;
  readonly slices: Informer<V1EndpointSlice & KubeObject>;
  table: RoutingTable = { entries: new Map(), invalid: new Map() };
  readonly view = new EndpointView();
  readonly routeSlots: SlotTable;
  readonly podSlots: SlotTable;
  /** Starting pods checked with their own readiness probe; null when turned off. */
  readonly startingPods: StartingPods | null;
  readonly coldStarts = new ColdStartLog();
  readonly #opts: ControlOptions;
  readonly #log: Logger;
  /** Parse caches by key, one per kind; an InterceptorRoute wins over an HTTPScaledObject. */
  readonly #parsed = new Map<string, Parsed>();
  readonly #parsedRoutes = new Map<string, Parsed>();
  #configMapsVersion = 0;
  /** The key set of the parse caches changed since the last rebuild. */
  #keysChanged = false;
  #sortedKeys: string[] = [];
  /** Target key -> the Service port it names. */
  #targetRefs = new Map<string, ServiceRef>();
  /** Target key -> routes using it. */
  #targetRoutes = new Map<string, string[]>();
  /** "namespace/service" -> target keys on that Service. */
  #serviceTargets = new Map<string, Set<string>>();
  readonly #resolved = new Map<string, TargetEndpoints & { early?: true }>();
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
    this.routes = new Informer(opts.client, {
      path: p.routes,
      log: opts.log,
      pageSize,
      missingHint:
        "the InterceptorRoute CRD (http.keda.sh/v1beta1) is not installed: apply k8s/crd/interceptorroutes.yaml",
    });
    this.configMaps = new Informer(opts.client, {
      path: p.configMaps,
      log: opts.log,
      labelSelector: `${RESPONSE_BODY_LABEL}=true`,
    });
    this.services = new Informer(opts.client, { path: p.services, log: opts.log });
    this.slices = new Informer(opts.client, { path: p.slices, log: opts.log });
    this.routeSlots = new SlotTable(opts.counters.layout.routeCapacity);
    this.podSlots = new SlotTable(opts.counters.layout.podCapacity);
    this.startingPods = opts.probeStartingPods === false ? null : new StartingPods({
      log: opts.log,
      getPod: (ns, name, o) => readPod(opts.client, ns, name, o.signal),
      // Busy, not only held: the activity that starts a loop comes before the hold begins.
      wanted: (key) => this.#busyFor(key),
      onChange: (key) => {
        if (this.#endpointsSynced) this.#publishTargets(new Set([key]), []);
      },
    });
    const routeEvents = (e: { type: string; object?: KubeObject }) => {
      if (e.type !== "SYNC") trimCached(e.object!);
      if (e.type !== "SYNC") this.#markRoutes();
      else if (!this.#routesPublished) this.#markRoutes();
    };
    this.httpso.subscribe(routeEvents);
    this.routes.subscribe(routeEvents);
    this.configMaps.subscribe((e) => {
      if (e.type === "SYNC") {
        if (!this.#routesPublished) this.#markRoutes();
        return;
      }
      this.#configMapsVersion++;
      this.#markRoutes();
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
        this.routes.run(signal),
        this.configMaps.run(signal),
        this.services.run(signal),
        this.slices.run(signal),
      ]);
    } finally {
      clearInterval(reclaim);
      clearInterval(sample);
      clearInterval(coalesce);
      this.startingPods?.close();
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
    if (this.#routesDirty && this.#routeSourcesSynced()) {
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

  /** Every watch that feeds the routing table has listed once. */
  #routeSourcesSynced(): boolean {
    return this.httpso.hasSynced && this.routes.hasSynced && this.configMaps.hasSynced;
  }

  /**
   * Validates every stored object (of both kinds) not yet parsed at its
   * resourceVersion into the parse caches, and drops the keys gone from the
   * stores; a change of the key set is kept for the next rebuild.
   */
  #parseStore(): void {
    const store = this.httpso.store;
    // Thousands of objects at once mean a big cluster: before the first sync
    // the list so far says so (it arrives a page at a time), after it the
    // objects never parsed (a relist).
    expectHTTPScaledObjects(this.httpso.hasSynced ? store.size - this.#parsed.size : store.size);
    const a = this.#parseInto(store, this.#parsed, (o) => routeEntryOf(parseHTTPScaledObject(o)));
    const b = this.#parseInto(
      this.routes.store,
      this.#parsedRoutes,
      (o) => routeEntryOfRoute(parseInterceptorRoute(o)),
    );
    if (a || b) this.#keysChanged = true;
  }

  /** One kind's store into its cache; true when a key came or went. */
  #parseInto(
    store: ReadonlyMap<string, KubeObject>,
    cache: Map<string, Parsed>,
    toEntry: (obj: KubeObject) => RouteEntry,
  ): boolean {
    let changed = false;
    for (const [key, obj] of store) {
      const rv = obj.metadata?.resourceVersion;
      const p = cache.get(key);
      if (p && p.rv === rv && rv !== undefined) continue;
      if (!p) changed = true;
      try {
        cache.set(key, this.#parsedOf(rv, toEntry(obj)));
      } catch (e) {
        cache.set(key, { rv, error: (e as Error).message });
      }
    }
    if (cache.size !== store.size || changed) {
      for (const key of cache.keys()) {
        if (!store.has(key)) {
          cache.delete(key);
          changed = true;
        }
      }
    }
    return changed;
  }

  #parsedOf(rv: string | undefined, entry: RouteEntry): Parsed {
    const next: Parsed = { rv, entry, targetKey: targetKeyOf(entry.target) };
    if (entry.fallback) {
      next.fallbackRef = serviceRefOf(entry.fallback.namespace, entry.fallback);
      next.fallbackKey = targetKeyOf(next.fallbackRef);
    }
    if (usesConfigMap(entry)) next.usesConfigMap = true;
    return next;
  }

  #rebuildRoutes(): void {
    this.#parseStore();
    const keysChanged = this.#keysChanged;
    if (keysChanged) {
      this.#keysChanged = false;
      // Sorted once per change of the key set; iteration order makes the table deterministic.
      this.#sortedKeys = [...new Set([...this.#parsed.keys(), ...this.#parsedRoutes.keys()])]
        .sort();
    }
    const entries: RouteEntry[] = [];
    const invalid = new Map<string, string>();
    const chosen: Parsed[] = [];
    for (const key of this.#sortedKeys) {
      const { serving, problem } = servingOf(this.#parsedRoutes.get(key), this.#parsed.get(key));
      if (problem !== undefined) invalid.set(key, problem);
      if (serving?.entry) {
        entries.push(serving.entry);
        chosen.push(serving);
      }
    }
    for (const [key, problem] of invalid) {
      if (this.#lastLoggedInvalid.get(key) !== problem) {
        this.#log.warn("route ignored: invalid", { key, problem });
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
    const configMaps = this.configMaps.store;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const p = chosen[i]!;
      const slot = this.routeSlots.slotOf(e.key)!;
      // Older routes win ties (creationTimestamp, as in the Go add-on); RFC 3339 sorts as text.
      const rank = e.createdAt ?? "";
      if (
        !p.live || p.live.slot !== slot || p.live.rank !== rank ||
        (p.usesConfigMap && p.resolvedAt !== this.#configMapsVersion)
      ) {
        p.live = liveRouteOf(e, slot, p.targetKey!, p.fallbackKey, {
          rank,
          resolve: (spec, def) =>
            resolveResponse(spec, def, e.namespace, (ns, name) => configMaps.get(`${ns}/${name}`)),
        });
        p.resolvedAt = this.#configMapsVersion;
        this.#reportResponseProblems(p.live);
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

  /** Static responses that cannot be served (a missing ConfigMap or key): logged once per change. */
  readonly #responseProblems = new Map<string, string>();

  #reportResponseProblems(live: LiveRoute): void {
    const problems = [live.placeholder, ...live.staticRoutes.map((s) => s.response)]
      .map((r) => r?.problem).filter((p) => p !== undefined);
    const text = problems.join("; ");
    if ((this.#responseProblems.get(live.key) ?? "") === text) return;
    if (text === "") this.#responseProblems.delete(live.key);
    else {
      this.#responseProblems.set(live.key, text);
      this.#log.warn("a static response of this route answers 500", {
        route: live.key,
        problem: text,
      });
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
      const raw = this.view.resolve(ref);
      const res = this.#withStarting(key, this.#routed(raw));
      this.#resolved.set(key, res);
      this.coldStarts.observe(
        key,
        // Starting or ready, not terminating: a pod on its way up.
        {
          pods: raw.starting.length + raw.ready.length,
          ready: res.ready.length,
          early: res.early === true,
        },
        Date.now(),
        (route) => this.#heldOf(route),
      );
      const sig = `${res.ready.map(addressOf).join(",")}|${res.appProtocol ?? ""}|${
        res.early ? "early" : ""
      }`;
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
        tls: res?.appProtocol === HTTPS_APP_PROTOCOL,
        endpoints: (res?.ready ?? []).map((ep) => ({
          ip: ep.ip,
          port: ep.port,
          slot: this.podSlots.slotOf(addressOf(ep)) ?? OVERFLOW_SLOT,
          ...(res?.early ? { early: true } : {}),
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

  /**
   * Where the data plane sends a target's requests: its ready pods, or with
   * direct pod routing off, the Service's cluster IP while any pod is ready
   * (a headless Service has none, so its pods are used).
   */
  #routed(res: TargetEndpoints): TargetEndpoints {
    if (this.#opts.directPodRouting !== false || !res.clusterAddress || res.ready.length === 0) {
      return res;
    }
    return { ...res, ready: [res.clusterAddress] };
  }

  /**
   * With no ready endpoint, the starting pods that passed their own readiness
   * check (always pod addresses: a Service IP reaches only ready pods).
   */
  #withStarting(key: string, res: TargetEndpoints): TargetEndpoints & { early?: true } {
    const sp = this.startingPods;
    if (sp === null) return res;
    const probe = res.ready.length === 0 && res.starting.length > 0 && this.#mayProbe(key);
    sp.update(key, probe ? res.starting : [], probe && this.#busyFor(key));
    const early = probe ? sp.passed(key) : [];
    return early.length > 0 ? { ...res, ready: early, early: true } : res;
  }

  /** No route forwarding to the target opted out (opting out wins on a shared Service port). */
  #mayProbe(key: string): boolean {
    for (const route of this.#targetRoutes.get(key) ?? []) {
      if (this.table.entries.get(route)?.probeStartingPods === false) return false;
    }
    return true;
  }

  /**
   * A route forwarding to the target has requests in flight (held ones count):
   * with no ready endpoint, that means requests wait, so its starting pods are worth probing.
   */
  #busyFor(key: string): boolean {
    const c = this.#opts.counters;
    for (const route of this.#targetRoutes.get(key) ?? []) {
      const slot = this.routeSlots.slotOf(route);
      if (slot !== undefined && slot !== OVERFLOW_SLOT && c.concurrency(slot) > 0) return true;
    }
    return false;
  }

  /** A route became busy: its targets with starting pods and no ready one start probing now. */
  #probeFor(route: string): void {
    if (this.startingPods === null) return;
    const keys = new Set<string>();
    for (const [key, routes] of this.#targetRoutes) {
      const res = this.#resolved.get(key);
      if (res && !res.early && res.ready.length === 0 && res.starting.length > 0) {
        if (routes.includes(route)) keys.add(key);
      }
    }
    if (keys.size > 0) this.#publishTargets(keys, []);
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

  /** A route went idle <-> busy in some worker: probe its starting pods, tell watchers at once. */
  onActivity(slot: number, active = true): void {
    const key = this.#keyOfSlot.get(slot);
    if (key !== undefined) this.#noteColdStart(key, active);
    if (key !== undefined && active) this.#probeFor(key);
    if (key === undefined || this.#watchers.size === 0) return;
    this.#sampleRequests();
    const count = {
      Concurrency: this.#opts.counters.concurrency(slot),
      RequestCount: this.#requests.get(key)?.total ?? 0,
    };
    this.#lastBroadcast[key] = count;
    for (const w of this.#watchers) w({ [key]: count });
  }

  /** A route went busy or idle: a cold start begins when its target has no ready endpoint. */
  #noteColdStart(route: string, active: boolean): void {
    const entry = this.table.entries.get(route);
    if (!entry) return;
    const now = Date.now();
    if (!active) {
      this.coldStarts.idle(route, now, entry.placeholder !== undefined);
      return;
    }
    // Before the endpoints are listed, "no ready endpoint" is not known yet.
    if (!this.#endpointsSynced) return;
    const target = targetKeyOf(entry.target);
    const res = this.#resolved.get(target);
    if (res && res.ready.length > 0) return;
    this.coldStarts.begin(route, target, now, (res?.starting.length ?? 0) > 0);
  }

  #heldOf(route: string): number {
    const slot = this.routeSlots.slotOf(route);
    return slot === undefined || slot === OVERFLOW_SLOT ? 0 : this.#opts.counters.held(slot);
  }

  /**
   * GET /route_status: per route the requests held now (over every isolate:
   * the counters are shared) and its target's pods, and the recent cold starts.
   */
  routeStatus(): RouteStatus {
    const routes: Record<string, RouteStatusEntry> = {};
    const pods = new Map<string, { readyPods: number; pods: number }>();
    for (const [key, entry] of this.table.entries) {
      const target = targetKeyOf(entry.target);
      let p = pods.get(target);
      if (!p) {
        // Before #routed: with direct pod routing off `ready` is the Service's address.
        const raw = this.view.resolve(entry.target);
        p = { readyPods: raw.ready.length, pods: raw.replicas };
        pods.set(target, p);
      }
      routes[key] = { held: this.#heldOf(key), ...p };
    }
    this.coldStarts.sampleHeld((route) => this.#heldOf(route));
    this.coldStarts.forget((route) => this.table.entries.has(route), Date.now());
    return { routes, coldStarts: this.coldStarts.list() };
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
      const res: TargetEndpoints & { early?: true } = this.#resolved.get(key) ??
        this.view.resolve(ref);
      out[key] = {
        namespace: ref.namespace,
        service: ref.service,
        port: ref.port ?? ref.portName ?? "",
        ready: res.ready.map(addressOf),
        ...(res.early ? { early: true } : {}),
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

  /** POST|GET /routing_ping: relist the route sources now, then return the table. */
  async routingPing(): Promise<RoutingTable> {
    await Promise.all([this.httpso.relist(), this.routes.relist(), this.configMaps.relist()]);
    this.rebuildRoutes();
    return this.table;
  }
}

/** A pod, null when it is gone, "forbidden" when the interceptor may not read pods. */
async function readPod(
  client: KubeApiClient,
  namespace: string,
  name: string,
  signal: AbortSignal,
): Promise<PodRead> {
  try {
    return await client.get<V1Pod>(
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`,
      { signal },
    );
  } catch (e) {
    if (e instanceof KubeApiError && e.status === 404) return null;
    if (e instanceof KubeApiError && e.status === 403) return "forbidden";
    throw e;
  }
}
