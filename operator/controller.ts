/**
 * The HTTPScaledObject controller. Level-triggered: watch caches
 * (informers) of HTTPScaledObjects, ScaledObjects, Services, Deployments and
 * StatefulSets turn every event into the key of the HTTPScaledObject it
 * concerns; a coalescing queue feeds one worker, which compares what is
 * with what should be (reconcile.ts) and writes only the difference. Failed
 * keys come back with jittered exponential backoff; every key is revisited
 * each resync period. Writes are optimistic: they carry the resourceVersion
 * they were computed from, and a conflict means "read again and recompute".
 */
import {
  API_VERSION,
  FINALIZER,
  type HTTPScaledObject,
  parseHTTPScaledObject,
  PLURAL,
} from "../shared/httpso.ts";
import {
  Informer,
  type InformerEvent,
  isConflict,
  isNotFound,
  keyOf,
  KubeApiError,
  type KubeClient,
  type KubeObject,
} from "../shared/kube.ts";
import { aborted, sleep } from "../shared/lifetime.ts";
import { IR_API_VERSION, IR_PLURAL } from "../shared/interceptor_route.ts";
import { buildRoutingTable, routingTableToJSON } from "../shared/routing_table.ts";
import type { Logger } from "../shared/log.ts";
import type { EventRecorder } from "./events.ts";
import type { OperatorMetrics } from "./metrics.ts";
import {
  desiredStatus,
  FIELD_MANAGER,
  hasOwnerRefTo,
  type Observed,
  orphansScaledObject,
  ownerReferencesWithout,
  ownershipOf,
  planScaledObject,
  type Problem,
  type ReadyState,
  readyStateOf,
  Reason,
  type ScaledObject,
  type ScaledObjectAction,
  type ServiceView,
  type Status,
  statusEqual,
} from "./reconcile.ts";
import { writeStatus } from "./status_write.ts";
import { WorkQueue } from "./work_queue.ts";
import { NotLeaderError, processKeys, type ReconcileResult } from "./worker.ts";

export interface ControllerOptions {
  client: KubeClient;
  log: Logger;
  /** Namespace to watch; "" watches all. */
  watchNamespace: string;
  /** "<service>.<namespace>:<port>" of the external scaler. */
  scalerAddress: string;
  /** Every key is reconciled again this often. */
  resyncPeriodMs: number;
  metrics: OperatorMetrics;
  events: EventRecorder;
  /** Guard checked before every write (leader election); default always true. */
  canWrite?: () => boolean;
  fieldManager?: string;
  /** Re-check interval for problems no watch reports (scale targets of other kinds). */
  recheckMs?: number;
}

type Raw = KubeObject & { spec?: Record<string, unknown>; status?: Status };

export { NotLeaderError };

function collectionPath(prefix: string, plural: string, namespace: string): string {
  return namespace ? `${prefix}/namespaces/${namespace}/${plural}` : `${prefix}/${plural}`;
}

function objectPath(prefix: string, plural: string, namespace: string, name: string): string {
  return `${prefix}/namespaces/${namespace}/${plural}/${name}`;
}

const HTTPSO_PREFIX = `/apis/${API_VERSION}`;
const IR_PREFIX = `/apis/${IR_API_VERSION}`;
/** Logged once when the InterceptorRoute CRD is not installed (the cache then stays empty). */
export const IR_MISSING_HINT = "apply k8s/crd/interceptorroutes.yaml";
/** The Warning Event (and log line) each HTTPScaledObject gets once per operator process. */
export const DEPRECATED_REASON = "Deprecated";
export const DEPRECATION_MESSAGE =
  "HTTPScaledObject is deprecated: move to InterceptorRoute (http.keda.sh/v1beta1) with your own ScaledObject; see the migration guide in README.md";
const SO_PREFIX = "/apis/keda.sh/v1alpha1";

/** Newer by resourceVersion, when both are etcd revisions (numbers); otherwise unknown. */
function isNewer(a: KubeObject, b: KubeObject): boolean {
  const ra = a.metadata?.resourceVersion ?? "";
  const rb = b.metadata?.resourceVersion ?? "";
  if (!/^\d+$/.test(ra) || !/^\d+$/.test(rb)) return false;
  return BigInt(ra) > BigInt(rb);
}

/**
 * An informer's store, overlaid with the objects this process just wrote,
 * until the watch catches up. Without it a reconcile that runs before our
 * own write's watch event would see the old object and write again.
 */
export class FreshStore<T extends KubeObject> {
  readonly #written = new Map<string, { obj: T; at: number }>();
  constructor(readonly informer: Informer<T>) {
    informer.subscribe((e) => {
      if (e.type === "SYNC") return;
      const w = this.#written.get(e.key);
      if (!w) return;
      if (e.type === "DELETED" || !isNewer(w.obj, e.object)) this.#written.delete(e.key);
    });
  }

  get(key: string): T | undefined {
    const inf = this.informer.store.get(key);
    const w = this.#written.get(key);
    if (!w) return inf;
    // A watch that never delivers our write (relisted past it) must not pin it forever.
    if (performance.now() - w.at > 30_000) {
      this.#written.delete(key);
      return inf;
    }
    if (!inf) return w.obj;
    if (isNewer(w.obj, inf)) return w.obj;
    this.#written.delete(key);
    return inf;
  }

  wrote(obj: T): void {
    this.#written.set(keyOf(obj), { obj, at: performance.now() });
  }
}

/** The ports of a Service, as the target checks need them; null when it does not exist. */
export function serviceView(svc: KubeObject | undefined): ServiceView | null {
  if (!svc) return null;
  const ports = ((svc.spec as { ports?: Array<{ name?: string; port: number }> } | undefined)
    ?.ports ?? []).map((p) => ({ ...(p.name ? { name: p.name } : {}), port: p.port }));
  return { ports };
}

/** Equal for two versions of a Service whose ports are the same (no news for the checks). */
export function portsKey(svc: KubeObject | undefined): string {
  return JSON.stringify(serviceView(svc));
}

const WATCHED_KINDS = new Map([
  ["apps/v1/Deployment", "deployments"],
  ["apps/v1/StatefulSet", "statefulsets"],
]);

export class Controller {
  readonly httpsos: Informer<Raw>;
  readonly scaledObjects: Informer<ScaledObject>;
  readonly services: Informer<KubeObject>;
  /**
   * InterceptorRoutes: cached here beside the other kinds for the routing
   * table and /readyz; RouteController reconciles them. A missing CRD
   * counts as an empty, synced list (retried every 30 s).
   */
  readonly interceptorRoutes: Informer<KubeObject>;
  readonly workloads: Map<string, Informer<KubeObject>>;
  readonly queue = new WorkQueue();
  readonly #o: ControllerOptions;
  readonly #log: Logger;
  readonly #httpsoFresh: FreshStore<Raw>;
  readonly #soFresh: FreshStore<ScaledObject>;
  /** "kind:ns/name" of a referenced object → keys of HTTPScaledObjects referring to it. */
  readonly #refs = new Map<string, Set<string>>();
  readonly #refsOf = new Map<string, string[]>();
  readonly #fieldManager: string;
  /** apiVersion → { at, kind → plural } from discovery, for scale targets of other kinds. */
  readonly #discovery = new Map<string, { at: number; plurals: Map<string, string> }>();
  #warnedForbidden = new Set<string>();
  /** uids told once (log line and Event) that HTTPScaledObject is deprecated. */
  readonly #deprecationWarned = new Set<string>();
  #routingTable?: string;

  constructor(options: ControllerOptions) {
    this.#o = options;
    this.#log = options.log;
    this.#fieldManager = options.fieldManager ?? FIELD_MANAGER;
    const ns = options.watchNamespace;
    const log = options.log;
    this.httpsos = new Informer<Raw>(options.client, {
      path: collectionPath(HTTPSO_PREFIX, PLURAL, ns),
      log,
    });
    this.scaledObjects = new Informer<ScaledObject>(options.client, {
      path: collectionPath(SO_PREFIX, "scaledobjects", ns),
      log,
    });
    this.services = new Informer(options.client, {
      path: collectionPath("/api/v1", "services", ns),
      log,
    });
    this.interceptorRoutes = new Informer(options.client, {
      path: collectionPath(IR_PREFIX, IR_PLURAL, ns),
      log,
      missingHint: IR_MISSING_HINT,
    });
    this.workloads = new Map(
      [...WATCHED_KINDS].map((
        [kind, plural],
      ) => [
        kind,
        new Informer(options.client, { path: collectionPath("/apis/apps/v1", plural, ns), log }),
      ]),
    );
    this.#httpsoFresh = new FreshStore(this.httpsos);
    this.#soFresh = new FreshStore(this.scaledObjects);

    this.httpsos.subscribe((e) => this.#onHTTPScaledObject(e));
    this.interceptorRoutes.subscribe((e) => {
      if (e.type !== "SYNC") this.#routingTable = undefined;
    });
    this.scaledObjects.subscribe((e) => {
      if (e.type !== "SYNC" && this.httpsos.store.has(e.key)) this.queue.add(e.key);
    });
    this.services.subscribe((e) => {
      if (e.type === "SYNC") return;
      if (e.type === "MODIFIED" && portsKey(e.old) === portsKey(e.object)) return;
      this.#enqueueReferrers(`Service:${e.key}`);
    });
    for (const [kind, informer] of this.workloads) {
      informer.subscribe((e) => {
        // Only existence is checked, so replica and status changes are not news.
        if (e.type === "ADDED" || e.type === "DELETED") this.#enqueueReferrers(`${kind}:${e.key}`);
      });
    }
  }

  /** The informers as lifetime members. */
  informerMembers(): Array<[string, (signal: AbortSignal) => Promise<void>]> {
    return [
      ["informer/httpscaledobjects", (s) => this.httpsos.run(s)],
      ["informer/scaledobjects", (s) => this.scaledObjects.run(s)],
      ["informer/services", (s) => this.services.run(s)],
      ["informer/interceptorroutes", (s) => this.interceptorRoutes.run(s)],
      ...[...this.workloads].map(([kind, inf]) =>
        [`informer/${kind}`, (s: AbortSignal) => inf.run(s)] as [
          string,
          (s: AbortSignal) => Promise<void>,
        ]
      ),
    ];
  }

  #allInformers(): Informer<KubeObject>[] {
    return [
      this.httpsos as Informer<KubeObject>,
      this.scaledObjects as Informer<KubeObject>,
      this.services,
      this.interceptorRoutes,
      ...this.workloads.values(),
    ];
  }

  get synced(): boolean {
    return this.#allInformers().every((i) => i.hasSynced);
  }

  /** Which caches have not listed yet (for /readyz). */
  unsynced(): string[] {
    const names = [
      "httpscaledobjects",
      "scaledobjects",
      "services",
      IR_PLURAL,
      ...this.workloads.keys(),
    ];
    return this.#allInformers().flatMap((i, n) => (i.hasSynced ? [] : [names[n]!]));
  }

  async waitForSync(signal: AbortSignal): Promise<boolean> {
    await Promise.race([Promise.all(this.#allInformers().map((i) => i.synced)), aborted(signal)]);
    return !signal.aborted;
  }

  /**
   * /routing_table's body (HTTPScaledObjects and InterceptorRoutes; a route
   * wins over a namesake HTTPScaledObject), built on demand and kept until
   * either changes.
   */
  routingTableJSON(): string {
    this.#routingTable ??= JSON.stringify(
      routingTableToJSON(
        buildRoutingTable(this.httpsos.store.values(), this.interceptorRoutes.store.values()),
      ),
    );
    return this.#routingTable;
  }

  #onHTTPScaledObject(e: InformerEvent<Raw>) {
    if (e.type === "SYNC") return;
    this.#routingTable = undefined;
    for (const ref of this.#refsOf.get(e.key) ?? []) this.#refs.get(ref)?.delete(e.key);
    this.#refsOf.delete(e.key);
    if (e.type !== "DELETED") {
      const refs = this.#referencesOf(e.object);
      this.#refsOf.set(e.key, refs);
      for (const ref of refs) {
        let set = this.#refs.get(ref);
        if (!set) this.#refs.set(ref, set = new Set());
        set.add(e.key);
      }
    } else {
      this.#o.events.forget(e.object.metadata?.uid ?? "");
      this.#deprecationWarned.delete(e.object.metadata?.uid ?? "");
    }
    this.queue.add(e.key);
  }

  /** What an HTTPScaledObject points at, read loosely so even an invalid one is indexed. */
  #referencesOf(obj: Raw): string[] {
    const ns = obj.metadata?.namespace ?? "";
    const spec = (obj.spec ?? {}) as {
      scaleTargetRef?: {
        service?: string;
        name?: string;
        deployment?: string;
        kind?: string;
        apiVersion?: string;
      };
      coldStartTimeoutFailoverRef?: { service?: string };
    };
    const out: string[] = [];
    const ref = spec.scaleTargetRef;
    if (ref?.service) out.push(`Service:${ns}/${ref.service}`);
    const fb = spec.coldStartTimeoutFailoverRef?.service;
    if (fb) out.push(`Service:${ns}/${fb}`);
    const name = ref?.name ?? ref?.deployment;
    if (name) {
      out.push(`${ref?.apiVersion ?? "apps/v1"}/${ref?.kind ?? "Deployment"}:${ns}/${name}`);
    }
    return out;
  }

  #enqueueReferrers(ref: string) {
    for (const key of this.#refs.get(ref) ?? []) this.queue.add(key);
  }

  /**
   * Says clearly, once at start, when a CRD the operator needs is missing
   * (the caches then retry with backoff and /readyz stays 503 until it is
   * installed). Never fails: the API may just not be reachable yet.
   */
  async preflight(signal: AbortSignal): Promise<void> {
    const needs = [
      [`${HTTPSO_PREFIX}`, PLURAL, "the HTTPScaledObject CRD: kubectl apply -f k8s/crd/"],
      [SO_PREFIX, "scaledobjects", "KEDA (its ScaledObject CRD, keda.sh/v1alpha1)"],
    ] as const;
    for (const [path, plural, what] of needs) {
      try {
        const list = await this.#o.client.get<{ resources?: Array<{ name: string }> }>(path, {
          signal,
        });
        if (!(list.resources ?? []).some((r) => r.name === plural)) {
          throw new KubeApiError(404, "NotFound", path);
        }
      } catch (e) {
        if (signal.aborted) return;
        if (isNotFound(e)) {
          this.#log.error(`${path}/${plural} is not served: install ${what}; waiting for it`);
        } else {
          this.#log.warn("could not check the API server for the CRDs", { error: e });
        }
      }
    }
  }

  /** Adds every HTTPScaledObject key (on becoming leader and every resync period). */
  enqueueAll(): void {
    for (const key of this.httpsos.store.keys()) this.queue.add(key);
  }

  /** Lifetime member: re-enqueues everything each resync period. */
  async resync(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(this.#o.resyncPeriodMs, signal);
      if (!signal.aborted) this.enqueueAll();
    }
  }

  /**
   * The worker: runs while this process leads. Waits for the caches, queues
   * every key, then reconciles one key at a time until the signal aborts.
   */
  async runWorker(signal: AbortSignal): Promise<void> {
    if (!(await this.waitForSync(signal))) return;
    this.enqueueAll();
    this.#log.info("reconciling", { httpScaledObjects: this.httpsos.store.size });
    await processKeys({
      queue: this.queue,
      log: this.#log,
      reconcile: (key, s) => this.reconcile(key, s),
      onResult: (result) => {
        this.#o.metrics.reconciles.inc({ result });
        if (result === "error") this.#o.metrics.errors.inc();
      },
      onDone: (seconds) => this.#o.metrics.observeReconcile(seconds),
    }, signal);
  }

  /**
   * Once per HTTPScaledObject (uid) and process, as the Go operator logs it:
   * a warning line and a Warning Event "Deprecated". The Event is named
   * after the uid, so a restart or a new leader finds it and writes none.
   */
  #warnDeprecated(raw: Raw, log: Logger) {
    const uid = raw.metadata?.uid;
    if (!uid || this.#deprecationWarned.has(uid)) return;
    this.#guard();
    this.#deprecationWarned.add(uid);
    log.warn(DEPRECATION_MESSAGE);
    this.#o.events.warningOnce(raw, DEPRECATED_REASON, DEPRECATION_MESSAGE);
  }

  #guard() {
    if (this.#o.canWrite && !this.#o.canWrite()) throw new NotLeaderError();
  }

  #wrote(resource: string, verb: string) {
    this.#o.metrics.writes.inc({ resource, verb });
  }

  #httpsoPath(ns: string, name: string): string {
    return objectPath(HTTPSO_PREFIX, PLURAL, ns, name);
  }

  #soPath(ns: string, name: string): string {
    return objectPath(SO_PREFIX, "scaledobjects", ns, name);
  }

  /** Reconciles one HTTPScaledObject by key. Throws to be retried with backoff. */
  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult> {
    let raw = this.#httpsoFresh.get(key);
    if (!raw) return {};
    const ns = raw.metadata?.namespace ?? "default";
    const name = raw.metadata?.name ?? "";
    const log = this.#log.with({ httpScaledObject: key });

    if (raw.metadata?.deletionTimestamp) {
      await this.#finalize(raw, log, signal);
      return {};
    }
    this.#warnDeprecated(raw, log);
    if (!(raw.metadata?.finalizers ?? []).includes(FINALIZER)) {
      const updated = await this.#patchFinalizers(
        raw,
        [...(raw.metadata?.finalizers ?? []), FINALIZER],
        signal,
      );
      if (!updated) return {};
      raw = updated;
    }

    let obj: HTTPScaledObject;
    try {
      obj = parseHTTPScaledObject(raw);
    } catch (e) {
      const problem = { reason: Reason.InvalidSpec, message: (e as Error).message };
      log.warn("HTTPScaledObject is invalid; leaving its ScaledObject as it is", {
        error: e,
      });
      if (await this.#writeStatus(raw, undefined, readyStateOf([problem], ""), signal)) {
        this.#o.events.warning(raw, problem.reason, problem.message);
      }
      this.#o.events.resolved(raw.metadata?.uid ?? "", [problem.reason]);
      return {};
    }

    let observed = await this.#observe(obj, signal);
    let plan = planScaledObject(obj, observed, {
      scalerAddress: this.#o.scalerAddress,
      fieldManager: this.#fieldManager,
    });
    let actionProblem: Problem | undefined;
    let actionError: unknown;
    for (let attempt = 0;; attempt++) {
      try {
        await this.#execute(plan.action, obj, raw, log, signal);
        break;
      } catch (e) {
        if (e instanceof NotLeaderError || signal.aborted) throw e;
        if ((isConflict(e) || isNotFound(e)) && attempt < 3) {
          // Our view of the ScaledObject was stale: read it and plan again.
          const fresh = await this.#getScaledObject(ns, name, signal);
          observed = { ...observed, scaledObject: fresh };
          plan = planScaledObject(obj, observed, {
            scalerAddress: this.#o.scalerAddress,
            fieldManager: this.#fieldManager,
          });
          continue;
        }
        actionError = e;
        actionProblem = {
          reason: Reason.CreateError,
          message: `Failed to create scaled objects: ${
            e instanceof KubeApiError ? e.message : String(e)
          }`,
        };
        break;
      }
    }

    const problems = actionProblem ? [actionProblem, ...plan.problems] : plan.problems;
    const ready = readyStateOf(problems, plan.readyMessage);
    const changed = await this.#writeStatus(raw, obj, ready, signal);
    const uid = raw.metadata?.uid ?? "";
    // Events follow status changes, so a restart or a new leader that finds
    // the same problem already reported does not report it again.
    if (changed || actionProblem) {
      for (const p of problems) this.#o.events.warning(raw, p.reason, p.message);
    }
    this.#o.events.resolved(uid, problems.map((p) => p.reason));
    // A request the API server refused as invalid fails the same way until
    // the HTTPScaledObject changes (which queues it again); anything else
    // (unreachable, 5xx, 403 until RBAC is fixed) is retried with backoff.
    if (
      actionError &&
      !(actionError instanceof KubeApiError && (actionError.status === 400 ||
        actionError.status === 422))
    ) {
      throw actionError;
    }

    const recheckMs = this.#o.recheckMs ?? 30_000;
    if (plan.retry) return { requeueAfterMs: 5_000 };
    const ref = obj.spec.scaleTargetRef;
    const watched = WATCHED_KINDS.has(`${ref.apiVersion}/${ref.kind}`);
    if (!watched && observed.scaleTarget !== "present") return { requeueAfterMs: recheckMs };
    return {};
  }

  async #getScaledObject(
    ns: string,
    name: string,
    signal: AbortSignal,
  ): Promise<ScaledObject | undefined> {
    try {
      const so = await this.#o.client.get<ScaledObject>(this.#soPath(ns, name), { signal });
      this.#soFresh.wrote(so);
      return so;
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async #observe(obj: HTTPScaledObject, signal: AbortSignal): Promise<Observed> {
    const ns = obj.metadata.namespace;
    const ref = obj.spec.scaleTargetRef;
    const fb = obj.spec.coldStartTimeoutFailoverRef;
    const observed: Observed = {
      scaledObject: this.#soFresh.get(`${ns}/${obj.metadata.name}`),
      service: serviceView(this.services.store.get(`${ns}/${ref.service}`)),
      scaleTarget: "unknown",
    };
    if (fb) observed.failoverService = serviceView(this.services.store.get(`${ns}/${fb.service}`));
    const kind = `${ref.apiVersion}/${ref.kind}`;
    const informer = this.workloads.get(kind);
    if (informer) {
      observed.scaleTarget = informer.store.has(`${ns}/${ref.name}`) ? "present" : "missing";
    } else {
      observed.scaleTarget = await this.#checkScaleTarget(ns, ref, signal);
    }
    return observed;
  }

  /** A scale target of a kind we do not watch: discovery, then its /scale subresource. */
  async #checkScaleTarget(
    ns: string,
    ref: { apiVersion: string; kind: string; name: string },
    signal: AbortSignal,
  ): Promise<"present" | "missing" | "unknown"> {
    const client = this.#o.client;
    try {
      let entry = this.#discovery.get(ref.apiVersion);
      if (!entry || performance.now() - entry.at > 300_000) {
        const base = ref.apiVersion.includes("/")
          ? `/apis/${ref.apiVersion}`
          : `/api/${ref.apiVersion}`;
        let plurals = new Map<string, string>();
        try {
          const list = await client.get<{ resources?: Array<{ name: string; kind: string }> }>(
            base,
            {
              signal,
            },
          );
          plurals = new Map(
            (list.resources ?? []).filter((r) => !r.name.includes("/")).map((
              r,
            ) => [r.kind, r.name]),
          );
        } catch (e) {
          if (!isNotFound(e)) throw e;
        }
        entry = { at: performance.now(), plurals };
        this.#discovery.set(ref.apiVersion, entry);
      }
      const plural = entry.plurals.get(ref.kind);
      if (!plural) return "missing";
      const base = ref.apiVersion.includes("/")
        ? `/apis/${ref.apiVersion}`
        : `/api/${ref.apiVersion}`;
      await client.get(`${base}/namespaces/${ns}/${plural}/${ref.name}/scale`, { signal });
      return "present";
    } catch (e) {
      if (isNotFound(e)) return "missing";
      if (signal.aborted) throw e;
      const what = `${ref.apiVersion}/${ref.kind}`;
      if (!this.#warnedForbidden.has(what)) {
        this.#warnedForbidden.add(what);
        this.#log.warn("cannot check scale targets of this kind; assuming they exist", {
          kind: what,
          error: e,
        });
      }
      return "unknown";
    }
  }

  async #execute(
    action: ScaledObjectAction,
    obj: HTTPScaledObject,
    raw: Raw,
    log: Logger,
    signal: AbortSignal,
  ): Promise<void> {
    const client = this.#o.client;
    const ns = obj.metadata.namespace;
    const name = obj.metadata.name;
    const path = this.#soPath(ns, name);
    switch (action.type) {
      case "none":
        return;
      case "apply": {
        this.#guard();
        const current = this.#soFresh.get(`${ns}/${name}`);
        const body = structuredClone(action.object);
        // Update: only over the object we compared against (409 otherwise).
        if (!action.create && current?.metadata?.resourceVersion) {
          body.metadata!.resourceVersion = current.metadata.resourceVersion;
        }
        const so = await client.patch<ScaledObject>(path, body, {
          contentType: "application/apply-patch+yaml",
          // A create never forces, so a ScaledObject someone else made in the
          // meantime is reported as a conflict instead of being taken over.
          query: { fieldManager: this.#fieldManager, force: action.create ? undefined : true },
          signal,
        });
        this.#soFresh.wrote(so);
        this.#wrote("scaledobjects", "apply");
        log.info(action.create ? "created ScaledObject" : "updated ScaledObject", {
          changed: action.diff,
        });
        this.#o.events.normal(
          raw,
          action.create ? "ScaledObjectCreated" : "ScaledObjectUpdated",
          action.create
            ? `created ScaledObject ${name}`
            : `updated ScaledObject ${name}: ${action.diff.join(", ")}`,
        );
        return;
      }
      case "delete": {
        this.#guard();
        try {
          await client.delete(path, {
            body: {
              apiVersion: "v1",
              kind: "DeleteOptions",
              preconditions: { uid: action.uid },
              propagationPolicy: "Background",
            },
            signal,
          });
          this.#wrote("scaledobjects", "delete");
          log.info("deleted ScaledObject", { uid: action.uid });
        } catch (e) {
          if (!isNotFound(e)) throw e;
        }
        return;
      }
      case "orphan": {
        this.#guard();
        const so = await client.patch<ScaledObject>(path, {
          metadata: {
            resourceVersion: action.resourceVersion,
            ownerReferences: action.ownerReferences.length ? action.ownerReferences : null,
          },
        }, { query: { fieldManager: this.#fieldManager }, signal });
        this.#soFresh.wrote(so);
        this.#wrote("scaledobjects", "patch");
        log.info("orphaned ScaledObject (removed its ownerReference)");
        return;
      }
    }
  }

  /** Sets metadata.finalizers with the resourceVersion as precondition; re-reads on conflict. */
  async #patchFinalizers(
    raw: Raw,
    finalizers: string[],
    signal: AbortSignal,
  ): Promise<Raw | undefined> {
    const ns = raw.metadata?.namespace ?? "default";
    const name = raw.metadata?.name ?? "";
    const path = this.#httpsoPath(ns, name);
    let current: Raw = raw;
    let want = finalizers;
    const adding = finalizers.includes(FINALIZER);
    for (let attempt = 0;; attempt++) {
      this.#guard();
      try {
        const updated = await this.#o.client.patch<Raw>(path, {
          metadata: { resourceVersion: current.metadata?.resourceVersion, finalizers: want },
        }, { query: { fieldManager: this.#fieldManager }, signal });
        this.#httpsoFresh.wrote(updated);
        this.#wrote("httpscaledobjects", "patch");
        return updated;
      } catch (e) {
        if (isNotFound(e)) return undefined;
        if (!isConflict(e) || attempt >= 4) throw e;
      }
      try {
        current = await this.#o.client.get<Raw>(path, { signal });
      } catch (e) {
        if (isNotFound(e)) return undefined;
        throw e;
      }
      const have = current.metadata?.finalizers ?? [];
      if (have.includes(FINALIZER) === adding) return current;
      want = adding ? [...have, FINALIZER] : have.filter((f) => f !== FINALIZER);
    }
  }

  /** Deletion: remove (or orphan) the ScaledObject, then our finalizer. */
  async #finalize(raw: Raw, log: Logger, signal: AbortSignal): Promise<void> {
    if (!(raw.metadata?.finalizers ?? []).includes(FINALIZER)) return;
    const ns = raw.metadata?.namespace ?? "default";
    const name = raw.metadata?.name ?? "";
    const so = this.#soFresh.get(`${ns}/${name}`);
    // Parsing may fail for an invalid object; ownership needs only its metadata.
    const meta = {
      metadata: {
        name,
        namespace: ns,
        uid: raw.metadata?.uid,
        annotations: raw.metadata?.annotations,
      },
    } as unknown as HTTPScaledObject;
    if (so) {
      if (orphansScaledObject(meta)) {
        if (hasOwnerRefTo(so, meta)) {
          await this.#execute(
            {
              type: "orphan",
              ownerReferences: ownerReferencesWithout(so, meta),
              resourceVersion: so.metadata?.resourceVersion ?? "",
            },
            meta,
            raw,
            log,
            signal,
          );
        }
      } else if (
        ownershipOf(so, meta, this.#fieldManager).type === "ours" && hasOwnerRefTo(so, meta) &&
        !so.metadata?.deletionTimestamp
      ) {
        await this.#execute(
          { type: "delete", uid: so.metadata?.uid ?? "", requeue: false },
          meta,
          raw,
          log,
          signal,
        );
      }
    }
    const remaining = (raw.metadata?.finalizers ?? []).filter((f) => f !== FINALIZER);
    await this.#patchFinalizers(raw, remaining, signal);
    this.#o.events.forget(raw.metadata?.uid ?? "");
    log.info("finalized HTTPScaledObject");
  }

  /**
   * Writes status through /status only when it differs; re-reads and
   * recomputes on conflict. True when it wrote.
   */
  async #writeStatus(
    raw: Raw,
    obj: HTTPScaledObject | undefined,
    ready: ReadyState,
    signal: AbortSignal,
  ): Promise<boolean> {
    const ns = raw.metadata?.namespace ?? "default";
    const name = raw.metadata?.name ?? "";
    return await writeStatus<Raw>({
      client: this.#o.client,
      path: this.#httpsoPath(ns, name),
      current: raw,
      desired: (current) => {
        const next = desiredStatus(
          current.status,
          obj,
          ready,
          current.metadata?.generation,
          new Date(),
        );
        return statusEqual(current.status, next) ? null : next;
      },
      guard: () => this.#guard(),
      wrote: (o) => this.#httpsoFresh.wrote(o),
      counted: () => this.#wrote("httpscaledobjects/status", "patch"),
      fieldManager: this.#fieldManager,
      signal,
    });
  }
}
