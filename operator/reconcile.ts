/**
 * The operator's desired-state computation, free of I/O: from an
 * HTTPScaledObject and what the controller observed (the ScaledObject of the
 * same name, the target Service, the scale target) it decides what to do to
 * the ScaledObject and what the status must say. controller.ts executes it.
 */
import {
  ANNOTATION_ORPHAN_SCALEDOBJECT,
  ANNOTATION_SKIP_SCALEDOBJECT,
  API_VERSION,
  GROUP,
  type HTTPScaledObject,
  KIND,
  targetServiceOf,
  targetWorkloadOf,
} from "../shared/httpso.ts";
import type { KubeObject } from "../shared/kube.ts";

export const SCALEDOBJECT_API_VERSION = "keda.sh/v1alpha1";
export const SCALEDOBJECT_KIND = "ScaledObject";
/** Field manager for server-side apply, and the name in Events and managedFields. */
export const FIELD_MANAGER = "keda-http-add-on-operator";
/** KEDA polls IsActive/GetMetrics this often; activation is pushed, so 15 s is enough. */
export const POLLING_INTERVAL_SECONDS = 15;
export const TRIGGER_TYPE = "external-push";
export const READY = "Ready";

/** Annotations never copied to the ScaledObject: kubectl's copy of the HTTPScaledObject. */
const NOT_COPIED_ANNOTATIONS = new Set(["kubectl.kubernetes.io/last-applied-configuration"]);

export const Reason = {
  Reconciled: "Reconciled",
  /** A write to the ScaledObject failed (the Go add-on's reason). */
  CreateError: "CreateError",
  InvalidSpec: "InvalidSpec",
  ScaledObjectConflict: "ScaledObjectConflict",
  ScaledObjectTerminating: "ScaledObjectTerminating",
  ScaleTargetNotFound: "ScaleTargetNotFound",
  ServiceNotFound: "ServiceNotFound",
  ServicePortNotFound: "ServicePortNotFound",
  FailoverServiceNotFound: "FailoverServiceNotFound",
  FailoverServicePortNotFound: "FailoverServicePortNotFound",
} as const;

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ManagedFieldsEntry {
  manager?: string;
  operation?: string;
  fieldsType?: string;
  fieldsV1?: Record<string, unknown>;
  subresource?: string;
}

export interface ScaledObject extends KubeObject {
  spec?: Record<string, unknown>;
}

export interface Problem {
  reason: string;
  message: string;
}

export interface ServiceView {
  ports: Array<{ name?: string; port: number }>;
}

export interface Observed {
  /** The ScaledObject of the same name and namespace, if any. */
  scaledObject?: ScaledObject;
  /** The target Service: null when it does not exist; undefined when not checked. */
  service?: ServiceView | null;
  /** The coldStartTimeoutFailoverRef Service, likewise. */
  failoverService?: ServiceView | null;
  /** Whether the scale target exists; "unknown" when it could not be checked. */
  scaleTarget: "present" | "missing" | "unknown";
}

export interface Settings {
  /** "<service>.<namespace>:<port>" of the external scaler. */
  scalerAddress: string;
  fieldManager?: string;
}

export function scalerAddressOf(service: string, namespace: string, port: number): string {
  return `${service}.${namespace}:${port}`;
}

function isEnabled(value: string | undefined): boolean {
  return value === "true";
}

export function skipsScaledObject(obj: HTTPScaledObject): boolean {
  return isEnabled(obj.metadata.annotations?.[ANNOTATION_SKIP_SCALEDOBJECT]);
}

export function orphansScaledObject(obj: HTTPScaledObject): boolean {
  return isEnabled(obj.metadata.annotations?.[ANNOTATION_ORPHAN_SCALEDOBJECT]);
}

/** The controller ownerReference a ScaledObject carries back to its HTTPScaledObject. */
export function ownerReferenceTo(obj: HTTPScaledObject): OwnerReference {
  if (!obj.metadata.uid) {
    throw new Error(`HTTPScaledObject ${obj.metadata.namespace}/${obj.metadata.name} has no uid`);
  }
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: obj.metadata.name,
    uid: obj.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** The ScaledObject the add-on writes for an HTTPScaledObject (see compat.md). */
export function desiredScaledObject(obj: HTTPScaledObject, settings: Settings): ScaledObject {
  const { metadata, spec } = obj;
  const ref = spec.scaleTargetRef;
  const labels = { ...(metadata.labels ?? {}) };
  const annotations = Object.fromEntries(
    Object.entries(metadata.annotations ?? {}).filter(([k]) => !NOT_COPIED_ANNOTATIONS.has(k)),
  );
  const soSpec: Record<string, unknown> = {
    scaleTargetRef: { apiVersion: ref.apiVersion, kind: ref.kind, name: ref.name },
    minReplicaCount: spec.replicas.min,
    maxReplicaCount: spec.replicas.max,
    pollingInterval: POLLING_INTERVAL_SECONDS,
    advanced: { restoreToOriginalReplicaCount: true },
    triggers: [{
      type: TRIGGER_TYPE,
      metadata: { scalerAddress: settings.scalerAddress, httpScaledObject: metadata.name },
    }],
  };
  if (spec.scaledownPeriod !== undefined) soSpec.cooldownPeriod = spec.scaledownPeriod;
  if (spec.initialCooldownPeriod !== undefined) {
    soSpec.initialCooldownPeriod = spec.initialCooldownPeriod;
  }
  return {
    apiVersion: SCALEDOBJECT_API_VERSION,
    kind: SCALEDOBJECT_KIND,
    metadata: {
      name: metadata.name,
      namespace: metadata.namespace,
      ...(Object.keys(labels).length ? { labels } : {}),
      ...(Object.keys(annotations).length ? { annotations } : {}),
      ownerReferences: [ownerReferenceTo(obj) as unknown as Record<string, unknown>],
    },
    spec: soSpec,
  };
}

// ---------------------------------------------------------------------------
// Ownership

export type Ownership =
  | { type: "absent" }
  | { type: "ours" }
  /** Controlled by an earlier HTTPScaledObject of the same name (deleted and re-created). */
  | { type: "stale"; uid: string }
  | { type: "foreign"; owner: string };

function ownerRefsOf(obj: KubeObject): OwnerReference[] {
  return (obj.metadata?.ownerReferences ?? []) as unknown as OwnerReference[];
}

function managedFieldsOf(obj: KubeObject): ManagedFieldsEntry[] {
  return (obj.metadata?.managedFields ?? []) as ManagedFieldsEntry[];
}

function refersTo(ref: OwnerReference, obj: HTTPScaledObject): boolean {
  return ref.kind === KIND && ref.apiVersion?.startsWith(`${GROUP}/`) &&
    ref.name === obj.metadata.name;
}

/** Whether the ScaledObject carries an ownerReference to this HTTPScaledObject (by name, as the Go add-on checks). */
export function hasOwnerRefTo(so: KubeObject, obj: HTTPScaledObject): boolean {
  return ownerRefsOf(so).some((r) => refersTo(r, obj));
}

/** The ScaledObject's ownerReferences minus those to this HTTPScaledObject (orphaning). */
export function ownerReferencesWithout(so: KubeObject, obj: HTTPScaledObject): OwnerReference[] {
  return ownerRefsOf(so).filter((r) => !refersTo(r, obj));
}

/**
 * Who controls an existing ScaledObject. One we wrote before and later
 * orphaned (no controller reference, our field manager in managedFields) is
 * ours to adopt again, as is one written by the Go add-on for the same
 * HTTPScaledObject; anything else belongs to someone else and is left alone.
 */
export function ownershipOf(
  so: KubeObject | undefined,
  obj: HTTPScaledObject,
  fieldManager = FIELD_MANAGER,
): Ownership {
  if (!so) return { type: "absent" };
  const refs = ownerRefsOf(so);
  const controller = refs.find((r) => r.controller === true);
  if (controller) {
    if (refersTo(controller, obj)) {
      return controller.uid === obj.metadata.uid
        ? { type: "ours" }
        : { type: "stale", uid: so.metadata?.uid ?? "" };
    }
    return { type: "foreign", owner: `${controller.kind} ${controller.name}` };
  }
  if (refs.some((r) => refersTo(r, obj) && r.uid === obj.metadata.uid)) return { type: "ours" };
  const managers = managedFieldsOf(so).map((m) => m.manager ?? "");
  if (managers.includes(fieldManager)) return { type: "ours" };
  const others = [...new Set(managers.filter((m) => m !== ""))];
  return {
    type: "foreign",
    owner: others.length ? `no owner; written by ${others.join(", ")}` : "no owner",
  };
}

// ---------------------------------------------------------------------------
// Up-to-date check

type Path = string[];
const SEP = "\u001f";

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

/** Paths where `desired` is not contained in `actual` (objects compared key by key, arrays whole). */
function notContained(desired: unknown, actual: unknown, path: Path, out: string[]) {
  if (isPlainObject(desired)) {
    if (!isPlainObject(actual)) {
      out.push(path.join("."));
      return;
    }
    for (const [k, v] of Object.entries(desired)) notContained(v, actual[k], [...path, k], out);
    return;
  }
  if (!deepEqual(desired, actual)) out.push(path.join("."));
}

/** Leaf paths of an object as server-side apply tracks them (arrays are atomic or keyed: leaves). */
function leafPaths(value: unknown, path: Path, out: Set<string>) {
  if (isPlainObject(value) && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value)) leafPaths(v, [...path, k], out);
  } else {
    out.add(path.join(SEP));
  }
}

/** Leaf paths a managedFields fieldsV1 set owns ("f:" keys; list items and "." end a path). */
function managedLeafPaths(fields: Record<string, unknown>, path: Path, out: Set<string>) {
  for (const [k, v] of Object.entries(fields)) {
    if (!k.startsWith("f:")) continue;
    const p = [...path, k.slice(2)];
    const children = isPlainObject(v) ? Object.keys(v).filter((c) => c.startsWith("f:")) : [];
    if (children.length === 0) out.add(p.join(SEP));
    else managedLeafPaths(v as Record<string, unknown>, p, out);
  }
}

/** Identity fields every apply carries; never a difference. */
const IDENTITY_PATHS = new Set(
  [["apiVersion"], ["kind"], ["metadata", "name"], ["metadata", "namespace"], [
    "metadata",
    "resourceVersion",
  ], ["metadata", "uid"]].map((p) => p.join(SEP)),
);

/** The fields compared and applied: everything but identity. */
function comparable(so: ScaledObject): Record<string, unknown> {
  const { name: _n, namespace: _ns, ...meta } = so.metadata ?? {};
  return { metadata: meta, spec: so.spec ?? {} };
}

/**
 * What differs between an existing ScaledObject and the desired one; empty
 * when no write is needed. Fields other managers added (KEDA's label, a
 * user's fallback) are not differences; fields we applied before and no
 * longer want (a label removed from the HTTPScaledObject) are.
 */
export function scaledObjectDiff(
  actual: ScaledObject,
  desired: ScaledObject,
  fieldManager = FIELD_MANAGER,
): string[] {
  const out: string[] = [];
  const want = comparable(desired);
  const have = comparable(actual);
  const wantMeta = want.metadata as Record<string, unknown>;
  const haveMeta = have.metadata as Record<string, unknown>;
  // ownerReferences is a list keyed by uid: ours must be present, others may be.
  const { ownerReferences: wantRefs, ...wantRest } = wantMeta;
  for (const ref of (wantRefs ?? []) as OwnerReference[]) {
    const found = ((haveMeta.ownerReferences ?? []) as OwnerReference[]).find((r) =>
      r.uid === ref.uid
    );
    if (!found || !deepEqual(found, ref)) out.push("metadata.ownerReferences");
  }
  notContained(wantRest, haveMeta, ["metadata"], out);
  notContained(want.spec, have.spec, ["spec"], out);

  const entry = managedFieldsOf(actual).find((m) =>
    m.manager === fieldManager && m.operation === "Apply" && !m.subresource
  );
  if (!entry?.fieldsV1) {
    out.push(`managedFields (no apply entry for ${fieldManager})`);
    return out;
  }
  const owned = new Set<string>();
  managedLeafPaths(entry.fieldsV1, [], owned);
  const wanted = new Set<string>();
  leafPaths(want, [], wanted);
  for (const p of owned) {
    if (IDENTITY_PATHS.has(p)) continue;
    if (!wanted.has(p)) out.push(`${p.split(SEP).join(".")} (no longer wanted)`);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Target checks

/** "it has http=80, 9090": a Service's ports for a message. */
export function portsText(svc: ServiceView): string {
  if (svc.ports.length === 0) return "it has no ports";
  return "it has " + svc.ports.map((p) => (p.name ? `${p.name}=${p.port}` : `${p.port}`)).join(
    ", ",
  );
}

function checkService(
  svc: ServiceView | null | undefined,
  ref: { service: string; port?: number; portName?: string },
  namespace: string,
  field: string,
  reasons: { missing: string; port: string },
): Problem | undefined {
  if (svc === undefined) return undefined;
  if (svc === null) {
    return {
      reason: reasons.missing,
      message:
        `Service "${ref.service}" (${field}.service) does not exist in namespace "${namespace}": create it or fix ${field}.service`,
    };
  }
  if (ref.port !== undefined && !svc.ports.some((p) => p.port === ref.port)) {
    return {
      reason: reasons.port,
      message: `Service "${ref.service}" has no port ${ref.port} (${
        portsText(svc)
      }): fix ${field}.port or the Service`,
    };
  }
  if (ref.portName !== undefined && !svc.ports.some((p) => p.name === ref.portName)) {
    return {
      reason: reasons.port,
      message: `Service "${ref.service}" has no port named "${ref.portName}" (${
        portsText(svc)
      }): fix ${field}.portName or the Service`,
    };
  }
  return undefined;
}

/** Problems with what the HTTPScaledObject points at, most important first. */
export function targetProblems(obj: HTTPScaledObject, observed: Observed): Problem[] {
  const problems: Problem[] = [];
  const ref = obj.spec.scaleTargetRef;
  const ns = obj.metadata.namespace;
  if (observed.scaleTarget === "missing") {
    problems.push({
      reason: Reason.ScaleTargetNotFound,
      message:
        `scale target ${ref.kind} "${ref.name}" (${ref.apiVersion}) does not exist in namespace "${ns}": create it or fix spec.scaleTargetRef`,
    });
  }
  const svc = checkService(observed.service, ref, ns, "spec.scaleTargetRef", {
    missing: Reason.ServiceNotFound,
    port: Reason.ServicePortNotFound,
  });
  if (svc) problems.push(svc);
  const fb = obj.spec.coldStartTimeoutFailoverRef;
  if (fb) {
    const p = checkService(observed.failoverService, fb, ns, "spec.coldStartTimeoutFailoverRef", {
      missing: Reason.FailoverServiceNotFound,
      port: Reason.FailoverServicePortNotFound,
    });
    if (p) problems.push(p);
  }
  return problems;
}

// ---------------------------------------------------------------------------
// The plan for the ScaledObject

export type ScaledObjectAction =
  | { type: "none" }
  /** Server-side apply; `create` when none exists (then no force, so a racing foreign object is not taken over). */
  | { type: "apply"; create: boolean; object: ScaledObject; diff: string[] }
  /** Delete the ScaledObject with this uid (precondition), e.g. skip annotation or stale owner. */
  | { type: "delete"; uid: string; requeue: boolean }
  /** Drop our ownerReferences from it (orphan annotation). */
  | { type: "orphan"; ownerReferences: OwnerReference[]; resourceVersion: string };

export interface Plan {
  action: ScaledObjectAction;
  /** Problems that make Ready False even if the action succeeds. */
  problems: Problem[];
  /** Ready=True message when there are no problems. */
  readyMessage: string;
  /** Retry later even on success (e.g. waiting for a ScaledObject to finish deleting). */
  retry: boolean;
}

export function planScaledObject(
  obj: HTTPScaledObject,
  observed: Observed,
  settings: Settings,
): Plan {
  const problems = targetProblems(obj, observed);
  const so = observed.scaledObject;
  const name = `${obj.metadata.namespace}/${obj.metadata.name}`;
  const ownership = ownershipOf(so, obj, settings.fieldManager);

  if (orphansScaledObject(obj)) {
    const refs = so ? ownerRefsOf(so) : [];
    const kept = so ? ownerReferencesWithout(so, obj) : [];
    const action: ScaledObjectAction = so && kept.length !== refs.length
      ? {
        type: "orphan",
        ownerReferences: kept,
        resourceVersion: so.metadata?.resourceVersion ?? "",
      }
      : { type: "none" };
    return {
      action,
      problems,
      readyMessage:
        `ScaledObject orphaned (annotation ${ANNOTATION_ORPHAN_SCALEDOBJECT}): the operator no longer manages it`,
      retry: false,
    };
  }

  if (skipsScaledObject(obj)) {
    const action: ScaledObjectAction =
      so && hasOwnerRefTo(so, obj) && !so.metadata?.deletionTimestamp
        ? { type: "delete", uid: so.metadata?.uid ?? "", requeue: false }
        : { type: "none" };
    return {
      action,
      problems,
      readyMessage:
        `ScaledObject creation skipped (annotation ${ANNOTATION_SKIP_SCALEDOBJECT}); add the external-push trigger to your own ScaledObject`,
      retry: false,
    };
  }

  const readyMessage = "ScaledObject created and configured";
  if (so?.metadata?.deletionTimestamp && ownership.type !== "foreign") {
    return {
      action: { type: "none" },
      problems: [...problems, {
        reason: Reason.ScaledObjectTerminating,
        message:
          `ScaledObject ${name} is being deleted; it will be re-created once it is gone (if it stays, check its finalizers)`,
      }],
      readyMessage,
      retry: true,
    };
  }
  switch (ownership.type) {
    case "foreign":
      return {
        action: { type: "none" },
        problems: [{
          reason: Reason.ScaledObjectConflict,
          message:
            `ScaledObject ${name} already exists and is not managed by this HTTPScaledObject (${ownership.owner}): delete or rename it, or set annotation ${ANNOTATION_SKIP_SCALEDOBJECT}: "true" to keep your own`,
        }, ...problems],
        readyMessage,
        retry: false,
      };
    case "stale":
      return {
        action: { type: "delete", uid: ownership.uid, requeue: true },
        problems: [...problems, {
          reason: Reason.ScaledObjectTerminating,
          message:
            `ScaledObject ${name} belongs to an earlier HTTPScaledObject of the same name; replacing it`,
        }],
        readyMessage,
        retry: true,
      };
    case "absent": {
      const object = desiredScaledObject(obj, settings);
      return {
        action: { type: "apply", create: true, object, diff: ["(new)"] },
        problems,
        readyMessage,
        retry: false,
      };
    }
    case "ours": {
      const object = desiredScaledObject(obj, settings);
      const diff = scaledObjectDiff(so!, object, settings.fieldManager);
      return {
        action: diff.length ? { type: "apply", create: false, object, diff } : { type: "none" },
        problems,
        readyMessage,
        retry: false,
      };
    }
  }
}

// ---------------------------------------------------------------------------
// Status

export interface RawCondition {
  type: string;
  status: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
  reason?: string;
  message?: string;
  [k: string]: unknown;
}

export interface ConditionInput {
  type: string;
  status: string;
  observedGeneration?: number;
  reason?: string;
  message?: string;
}

export interface Status {
  targetWorkload?: string;
  targetService?: string;
  conditions?: RawCondition[];
  [k: string]: unknown;
}

export interface ReadyState {
  status: "True" | "False";
  reason: string;
  message: string;
}

/** Ready from the problems (first one gives the reason; all are in the message). */
export function readyStateOf(problems: Problem[], readyMessage: string): ReadyState {
  const first = problems[0];
  if (!first) return { status: "True", reason: Reason.Reconciled, message: readyMessage };
  return {
    status: "False",
    reason: first.reason,
    message: problems.map((p) => p.message).join("; "),
  };
}

/** RFC 3339 with second precision, as metav1.Time serialises. */
export function metaTime(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, "Z");
}

/**
 * Sets a condition with metav1.Condition semantics: lastTransitionTime moves
 * only when the status changes. Other conditions keep their place.
 */
export function setCondition(
  conditions: RawCondition[] | undefined,
  next: ConditionInput,
  now: Date,
): RawCondition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === next.type);
  const prev = i >= 0 ? list[i] : undefined;
  const lastTransitionTime = prev && prev.status === next.status && prev.lastTransitionTime
    ? prev.lastTransitionTime
    : metaTime(now);
  const cond: RawCondition = { ...next, lastTransitionTime };
  if (i >= 0) list[i] = cond;
  else list.push(cond);
  return list;
}

/** The status to write: target strings (when the spec parsed) and the Ready condition. */
export function desiredStatus(
  current: Status | undefined,
  obj: HTTPScaledObject | undefined,
  ready: ReadyState,
  generation: number | undefined,
  now: Date,
): Status {
  const status: Status = { ...(current ?? {}) };
  if (obj) {
    status.targetWorkload = targetWorkloadOf(obj.spec);
    status.targetService = targetServiceOf(obj.spec);
  }
  status.conditions = setCondition(current?.conditions, {
    type: READY,
    status: ready.status,
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    reason: ready.reason,
    message: ready.message,
  }, now);
  return status;
}

function withoutTransitionTimes(s: Status | undefined): unknown {
  if (!s) return {};
  return {
    ...s,
    conditions: (s.conditions ?? []).map(({ lastTransitionTime: _t, ...rest }) => rest),
  };
}

/** Whether two statuses are the same apart from lastTransitionTime (no write needed). */
export function statusEqual(a: Status | undefined, b: Status | undefined): boolean {
  return deepEqual(withoutTransitionTimes(a), withoutTransitionTimes(b));
}
