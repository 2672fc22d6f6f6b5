/**
 * The InterceptorRoute controller: gives each route a Ready condition that
 * says whether its target (and fallback) Service exists with the port it
 * names (route_status.ts). It writes nothing but that status: the route's
 * ScaledObject is the user's, and there is nothing to clean up on deletion,
 * so there is no finalizer either (as in the Go add-on).
 *
 * Level-triggered like the HTTPScaledObject controller, whose watch caches
 * it shares (InterceptorRoutes and Services): events are mapped to route
 * keys (a Service to the routes that name it), a coalescing queue feeds one
 * worker, failures come back with jittered backoff, every key is revisited
 * each resync period, and status is patched through /status only when it
 * changed, only while this process leads.
 */
import { IR_API_VERSION, IR_PLURAL, parseInterceptorRoute } from "../shared/interceptor_route.ts";
import { type Informer, type KubeClient, type KubeObject } from "../shared/kube.ts";
import { aborted, sleep } from "../shared/lifetime.ts";
import type { Logger } from "../shared/log.ts";
import { FreshStore, portsKey, serviceView } from "./controller.ts";
import { writeStatus } from "./status_write.ts";
import type { OperatorMetrics } from "./metrics.ts";
import { FIELD_MANAGER, type ReadyState } from "./reconcile.ts";
import {
  desiredRouteStatus,
  type RouteObserved,
  routeReadyState,
  type RouteStatus,
  routeStatusEqual,
} from "./route_status.ts";
import { WorkQueue } from "./work_queue.ts";
import { NotLeaderError, processKeys, type ReconcileResult } from "./worker.ts";

export interface RouteControllerOptions {
  client: KubeClient;
  log: Logger;
  /** The InterceptorRoute cache (Controller.interceptorRoutes). */
  routes: Informer<KubeObject>;
  /** The Service cache (Controller.services). */
  services: Informer<KubeObject>;
  /** Every route is reconciled again this often. */
  resyncPeriodMs: number;
  metrics: OperatorMetrics;
  /** Guard checked before every write (leader election); default always true. */
  canWrite?: () => boolean;
  fieldManager?: string;
}

type Raw = KubeObject & { spec?: Record<string, unknown>; status?: RouteStatus };

const PREFIX = `/apis/${IR_API_VERSION}`;

export class RouteController {
  readonly queue = new WorkQueue();
  readonly routes: Informer<Raw>;
  readonly #o: RouteControllerOptions;
  readonly #log: Logger;
  readonly #fresh: FreshStore<Raw>;
  readonly #fieldManager: string;
  /** "ns/service" → keys of routes naming it (target or fallback). */
  readonly #refs = new Map<string, Set<string>>();
  readonly #refsOf = new Map<string, string[]>();

  constructor(options: RouteControllerOptions) {
    this.#o = options;
    this.#log = options.log;
    this.#fieldManager = options.fieldManager ?? FIELD_MANAGER;
    this.routes = options.routes as Informer<Raw>;
    this.#fresh = new FreshStore(this.routes);
    this.routes.subscribe((e) => {
      if (e.type === "SYNC") return;
      this.#index(e.key, e.type === "DELETED" ? undefined : e.object);
      this.queue.add(e.key);
    });
    options.services.subscribe((e) => {
      if (e.type === "SYNC") return;
      if (e.type === "MODIFIED" && portsKey(e.old) === portsKey(e.object)) return;
      for (const key of this.#refs.get(e.key) ?? []) this.queue.add(key);
    });
  }

  get synced(): boolean {
    return this.routes.hasSynced && this.#o.services.hasSynced;
  }

  /** The Services a route names, read loosely so even an invalid one is indexed. */
  #index(key: string, obj: Raw | undefined) {
    for (const ref of this.#refsOf.get(key) ?? []) {
      const set = this.#refs.get(ref);
      set?.delete(key);
      if (set?.size === 0) this.#refs.delete(ref);
    }
    this.#refsOf.delete(key);
    if (!obj) return;
    const ns = obj.metadata?.namespace ?? "default";
    const spec = (obj.spec ?? {}) as {
      target?: { service?: unknown };
      coldStart?: { fallback?: { service?: { name?: unknown } } };
    };
    const refs = [spec.target?.service, spec.coldStart?.fallback?.service?.name]
      .filter((s): s is string => typeof s === "string" && s !== "")
      .map((s) => `${ns}/${s}`);
    this.#refsOf.set(key, refs);
    for (const ref of refs) {
      let set = this.#refs.get(ref);
      if (!set) this.#refs.set(ref, set = new Set());
      set.add(key);
    }
  }

  enqueueAll(): void {
    for (const key of this.routes.store.keys()) this.queue.add(key);
  }

  /** Lifetime member: re-enqueues every route each resync period. */
  async resync(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(this.#o.resyncPeriodMs, signal);
      if (!signal.aborted) this.enqueueAll();
    }
  }

  /** The worker, run while this process leads: waits for the caches, then one key at a time. */
  async runWorker(signal: AbortSignal): Promise<void> {
    await Promise.race([
      Promise.all([this.routes.synced, this.#o.services.synced]),
      aborted(signal),
    ]);
    if (signal.aborted) return;
    this.enqueueAll();
    this.#log.info("reconciling", { interceptorRoutes: this.routes.store.size });
    await processKeys({
      queue: this.queue,
      log: this.#log,
      reconcile: (key, s) => this.reconcile(key, s),
      onResult: (result) => {
        this.#o.metrics.routeReconciles.inc({ result });
        if (result === "error") this.#o.metrics.errors.inc();
      },
    }, signal);
  }

  /** Reconciles one InterceptorRoute by key. Throws to be retried with backoff. */
  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult> {
    const raw = this.#fresh.get(key);
    if (!raw || raw.metadata?.deletionTimestamp) return {};
    const ready = this.#readyOf(raw);
    const wrote = await this.#writeStatus(raw, ready, signal);
    if (wrote) {
      const log = this.#log.with({ interceptorRoute: key });
      const fields = { ready: ready.status, reason: ready.reason, message: ready.message };
      if (ready.status === "True") log.info("InterceptorRoute status updated", fields);
      else log.warn("InterceptorRoute not ready", fields);
    }
    return {};
  }

  #readyOf(raw: Raw): ReadyState {
    let route;
    try {
      route = parseInterceptorRoute(raw);
    } catch (e) {
      return routeReadyState({ invalid: (e as Error).message }, { service: null });
    }
    const ns = route.metadata.namespace;
    const services = this.#o.services.store;
    const observed: RouteObserved = {
      service: serviceView(services.get(`${ns}/${route.spec.target.service}`)),
    };
    const fb = route.spec.coldStart?.fallback?.service;
    if (fb) observed.fallbackService = serviceView(services.get(`${ns}/${fb.name}`));
    return routeReadyState(route, observed);
  }

  #path(ns: string, name: string): string {
    return `${PREFIX}/namespaces/${ns}/${IR_PLURAL}/${name}`;
  }

  /**
   * Merge-patches /status with the resourceVersion it was computed from,
   * only when it differs; re-reads and recomputes on conflict. True when it wrote.
   */
  async #writeStatus(raw: Raw, ready: ReadyState, signal: AbortSignal): Promise<boolean> {
    const ns = raw.metadata?.namespace ?? "default";
    const name = raw.metadata?.name ?? "";
    return await writeStatus<Raw>({
      client: this.#o.client,
      path: this.#path(ns, name),
      current: raw,
      desired: (current) => {
        const next = desiredRouteStatus(
          current.status,
          ready,
          current.metadata?.generation,
          new Date(),
        );
        return routeStatusEqual(current.status, next) ? null : { conditions: next.conditions };
      },
      guard: () => {
        if (this.#o.canWrite && !this.#o.canWrite()) throw new NotLeaderError();
      },
      wrote: (obj) => this.#fresh.wrote(obj),
      counted: () =>
        this.#o.metrics.writes.inc({ resource: "interceptorroutes/status", verb: "patch" }),
      fieldManager: this.#fieldManager,
      signal,
    });
  }
}
