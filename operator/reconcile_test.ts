import assert from "node:assert/strict";
import { parseHTTPScaledObject } from "../shared/httpso.ts";
import {
  desiredScaledObject,
  desiredStatus,
  FIELD_MANAGER,
  type Observed,
  ownershipOf,
  planScaledObject,
  readyStateOf,
  Reason,
  type ScaledObject,
  scaledObjectDiff,
  scalerAddressOf,
  setCondition,
  statusEqual,
  targetProblems,
} from "./reconcile.ts";

const settings = { scalerAddress: scalerAddressOf("keda-http-scaler", "kedahttp", 9090) };

function httpso(
  overrides: { metadata?: Record<string, unknown>; spec?: Record<string, unknown> } = {},
) {
  return parseHTTPScaledObject({
    apiVersion: "http.keda.sh/v1alpha1",
    kind: "HTTPScaledObject",
    metadata: {
      name: "app",
      namespace: "team",
      uid: "uid-1",
      generation: 3,
      resourceVersion: "100",
      labels: { app: "web", tier: "front" },
      annotations: {
        note: "hello",
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
      },
      ...overrides.metadata,
    },
    spec: {
      hosts: ["app.example.com"],
      scaleTargetRef: {
        name: "app",
        apiVersion: "apps/v1",
        kind: "Deployment",
        service: "app",
        port: 8080,
      },
      replicas: { min: 1, max: 7 },
      scaledownPeriod: 120,
      initialCooldownPeriod: 30,
      ...overrides.spec,
    },
  });
}

/** managedFields as the API server records a server-side apply of `so` by `manager`. */
function fieldsOf(value: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (k === "ownerReferences") {
      out["f:ownerReferences"] = Object.fromEntries(
        (v as Array<{ uid: string }>).map((
          r,
        ) => [`k:{"uid":"${r.uid}"}`, { ".": {}, "f:uid": {} }]),
      );
    } else if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length) {
      out[`f:${k}`] = { ".": {}, ...fieldsOf(v) };
    } else {
      out[`f:${k}`] = {};
    }
  }
  return out;
}

function applied(
  so: ScaledObject,
  extra: Partial<ScaledObject> = {},
  manager = FIELD_MANAGER,
): ScaledObject {
  const { name: _n, namespace: _ns, ...meta } = so.metadata!;
  return {
    ...structuredClone(so),
    ...extra,
    metadata: {
      ...structuredClone(so.metadata!),
      uid: "so-uid",
      resourceVersion: "200",
      ...(extra.metadata ?? {}),
      managedFields: [{
        manager,
        operation: "Apply",
        fieldsType: "FieldsV1",
        fieldsV1: fieldsOf({ metadata: meta, spec: so.spec }),
      }],
    },
  };
}

Deno.test("desired ScaledObject: every field as compat.md specifies", () => {
  const so = desiredScaledObject(httpso(), settings);
  assert.deepEqual(so, {
    apiVersion: "keda.sh/v1alpha1",
    kind: "ScaledObject",
    metadata: {
      name: "app",
      namespace: "team",
      labels: { app: "web", tier: "front" },
      annotations: { note: "hello" },
      ownerReferences: [{
        apiVersion: "http.keda.sh/v1alpha1",
        kind: "HTTPScaledObject",
        name: "app",
        uid: "uid-1",
        controller: true,
        blockOwnerDeletion: true,
      }],
    },
    spec: {
      scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "app" },
      minReplicaCount: 1,
      maxReplicaCount: 7,
      cooldownPeriod: 120,
      initialCooldownPeriod: 30,
      pollingInterval: 15,
      advanced: { restoreToOriginalReplicaCount: true },
      triggers: [{
        type: "external-push",
        metadata: { scalerAddress: "keda-http-scaler.kedahttp:9090", httpScaledObject: "app" },
      }],
    },
  });
});

Deno.test("desired ScaledObject: defaults, StatefulSet targets and the deprecated deployment field", () => {
  const bare = desiredScaledObject(
    httpso({
      metadata: { labels: undefined, annotations: undefined },
      spec: {
        replicas: undefined,
        scaledownPeriod: undefined,
        initialCooldownPeriod: undefined,
        scaleTargetRef: { deployment: "legacy", service: "legacy", port: 80 },
      },
    }),
    settings,
  );
  assert.equal(bare.metadata?.labels, undefined);
  assert.equal(bare.metadata?.annotations, undefined);
  assert.equal(bare.spec?.minReplicaCount, 0);
  assert.equal(bare.spec?.maxReplicaCount, 100);
  assert.equal("cooldownPeriod" in bare.spec!, false, "KEDA's default applies when unset");
  assert.equal("initialCooldownPeriod" in bare.spec!, false);
  assert.deepEqual(bare.spec?.scaleTargetRef, {
    apiVersion: "apps/v1",
    kind: "Deployment",
    name: "legacy",
  });
  const sts = desiredScaledObject(
    httpso({
      spec: {
        scaleTargetRef: {
          name: "db",
          apiVersion: "apps/v1",
          kind: "StatefulSet",
          service: "db",
          portName: "http",
        },
      },
    }),
    settings,
  );
  assert.deepEqual(sts.spec?.scaleTargetRef, {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    name: "db",
  });
});

Deno.test("ownership: ours, stale, foreign, adoptable", () => {
  const obj = httpso();
  const mine = applied(desiredScaledObject(obj, settings));
  assert.deepEqual(ownershipOf(undefined, obj), { type: "absent" });
  assert.deepEqual(ownershipOf(mine, obj), { type: "ours" });

  const stale = structuredClone(mine);
  (stale.metadata!.ownerReferences![0] as { uid: string }).uid = "old-uid";
  assert.deepEqual(ownershipOf(stale, obj), { type: "stale", uid: "so-uid" });

  const foreign = structuredClone(mine);
  foreign.metadata!.ownerReferences = [{
    apiVersion: "argoproj.io/v1alpha1",
    kind: "Application",
    name: "x",
    uid: "u",
    controller: true,
  }];
  assert.deepEqual(ownershipOf(foreign, obj), { type: "foreign", owner: "Application x" });

  const handMade: ScaledObject = {
    metadata: {
      name: "app",
      namespace: "team",
      managedFields: [{ manager: "kubectl-client-side-apply", operation: "Update" }],
    },
  };
  assert.deepEqual(ownershipOf(handMade, obj), {
    type: "foreign",
    owner: "no owner; written by kubectl-client-side-apply",
  });

  // Orphaned earlier by us (no ownerReference left, but our field manager): adopt again.
  const orphaned = structuredClone(mine);
  orphaned.metadata!.ownerReferences = [];
  assert.deepEqual(ownershipOf(orphaned, obj), { type: "ours" });

  // Written by the Go add-on for this very object (same uid, other manager): adopt.
  const goWritten = structuredClone(mine);
  goWritten.metadata!.managedFields = [{ manager: "manager", operation: "Update" }];
  assert.deepEqual(ownershipOf(goWritten, obj), { type: "ours" });
});

Deno.test("diff: an applied ScaledObject is up to date; other managers' fields are not differences", () => {
  const obj = httpso();
  const desired = desiredScaledObject(obj, settings);
  const actual = applied(desired);
  assert.deepEqual(scaledObjectDiff(actual, desired), []);
  // KEDA labels its ScaledObjects and adds a finalizer; a user may add a fallback.
  actual.metadata!.labels = { ...actual.metadata!.labels, "scaledobject.keda.sh/name": "app" };
  actual.metadata!.finalizers = ["finalizer.keda.sh"];
  actual.spec = { ...actual.spec, fallback: { failureThreshold: 3, replicas: 2 } };
  assert.deepEqual(scaledObjectDiff(actual, desired), []);
});

Deno.test("diff: changed and removed fields are differences", () => {
  const before = desiredScaledObject(httpso(), settings);
  const actual = applied(before);
  const more = desiredScaledObject(httpso({ spec: { replicas: { min: 1, max: 20 } } }), settings);
  assert.deepEqual(scaledObjectDiff(actual, more), ["spec.maxReplicaCount"]);
  const hosts = desiredScaledObject(httpso({ spec: { hosts: ["other.example.com"] } }), settings);
  assert.deepEqual(
    scaledObjectDiff(actual, hosts),
    [],
    "hosts are routing, not ScaledObject fields",
  );
  const noCooldown = desiredScaledObject(
    httpso({ spec: { scaledownPeriod: undefined } }),
    settings,
  );
  assert.deepEqual(scaledObjectDiff(actual, noCooldown), [
    "spec.cooldownPeriod (no longer wanted)",
  ]);
  const lessLabels = desiredScaledObject(
    httpso({ metadata: { labels: { app: "web" } } }),
    settings,
  );
  assert.deepEqual(scaledObjectDiff(actual, lessLabels), [
    "metadata.labels.tier (no longer wanted)",
  ]);
  const scaler = desiredScaledObject(httpso(), { scalerAddress: "other.kedahttp:9090" });
  assert.deepEqual(scaledObjectDiff(actual, scaler), ["spec.triggers"]);
  // Someone edited our field by hand: a difference, so it is put back.
  const edited = structuredClone(actual);
  edited.spec!.pollingInterval = 1;
  assert.deepEqual(scaledObjectDiff(edited, before), ["spec.pollingInterval"]);
  // Written by another manager only (e.g. the Go add-on): apply once to own the fields.
  const goWritten = applied(before, {}, "manager");
  (goWritten.metadata!.managedFields as Array<{ operation: string }>)[0]!.operation = "Update";
  assert.deepEqual(scaledObjectDiff(goWritten, before), [
    `managedFields (no apply entry for ${FIELD_MANAGER})`,
  ]);
});

const healthy: Observed = {
  service: { ports: [{ name: "http", port: 8080 }] },
  scaleTarget: "present",
};

Deno.test("target problems: missing Service, port, portName, scale target and failover", () => {
  const obj = httpso();
  assert.deepEqual(targetProblems(obj, healthy), []);
  assert.deepEqual(
    targetProblems(obj, { ...healthy, service: undefined }),
    [],
    "unchecked is not a problem",
  );
  const missing = targetProblems(obj, { ...healthy, service: null });
  assert.equal(missing[0]?.reason, Reason.ServiceNotFound);
  assert.match(
    missing[0]!.message,
    /Service "app" .* does not exist in namespace "team": create it/,
  );
  const port = targetProblems(obj, { ...healthy, service: { ports: [{ name: "web", port: 80 }] } });
  assert.equal(port[0]?.reason, Reason.ServicePortNotFound);
  assert.match(port[0]!.message, /no port 8080 \(it has web=80\)/);
  const named = httpso({
    spec: { scaleTargetRef: { name: "app", service: "app", portName: "grpc" } },
  });
  const byName = targetProblems(named, healthy);
  assert.equal(byName[0]?.reason, Reason.ServicePortNotFound);
  assert.match(byName[0]!.message, /no port named "grpc"/);
  const target = targetProblems(obj, { ...healthy, scaleTarget: "missing" });
  assert.equal(target[0]?.reason, Reason.ScaleTargetNotFound);
  assert.match(target[0]!.message, /Deployment "app" \(apps\/v1\) does not exist/);
  assert.deepEqual(targetProblems(obj, { ...healthy, scaleTarget: "unknown" }), []);
  const fb = httpso({ spec: { coldStartTimeoutFailoverRef: { service: "sorry", port: 80 } } });
  const fbMissing = targetProblems(fb, { ...healthy, failoverService: null });
  assert.equal(fbMissing[0]?.reason, Reason.FailoverServiceNotFound);
  assert.match(fbMissing[0]!.message, /coldStartTimeoutFailoverRef\.service/);
});

Deno.test("plan: create, update, nothing to do", () => {
  const obj = httpso();
  const created = planScaledObject(obj, healthy, settings);
  assert.equal(created.action.type, "apply");
  assert.equal(created.action.type === "apply" && created.action.create, true);
  const desired = desiredScaledObject(obj, settings);
  const upToDate = planScaledObject(obj, { ...healthy, scaledObject: applied(desired) }, settings);
  assert.deepEqual(upToDate.action, { type: "none" });
  assert.deepEqual(upToDate.problems, []);
  const old = applied(
    desiredScaledObject(httpso({ spec: { replicas: { min: 0, max: 3 } } }), settings),
  );
  const update = planScaledObject(obj, { ...healthy, scaledObject: old }, settings);
  assert.equal(update.action.type, "apply");
  if (update.action.type === "apply") {
    assert.equal(update.action.create, false);
    assert.deepEqual(update.action.diff, ["spec.minReplicaCount", "spec.maxReplicaCount"]);
  }
});

Deno.test("plan: a ScaledObject owned by someone else is left alone and reported", () => {
  const obj = httpso();
  const foreign: ScaledObject = {
    metadata: { name: "app", namespace: "team", uid: "x" },
    spec: {},
  };
  const plan = planScaledObject(obj, { ...healthy, scaledObject: foreign }, settings);
  assert.deepEqual(plan.action, { type: "none" });
  assert.equal(plan.problems[0]?.reason, Reason.ScaledObjectConflict);
  assert.match(
    plan.problems[0]!.message,
    /already exists and is not managed by this HTTPScaledObject/,
  );
  assert.match(plan.problems[0]!.message, /skip-scaledobject-creation/);
});

Deno.test("plan: stale and terminating ScaledObjects", () => {
  const obj = httpso();
  const stale = applied(desiredScaledObject(obj, settings));
  (stale.metadata!.ownerReferences![0] as { uid: string }).uid = "old";
  const plan = planScaledObject(obj, { ...healthy, scaledObject: stale }, settings);
  assert.deepEqual(plan.action, { type: "delete", uid: "so-uid", requeue: true });
  assert.equal(plan.retry, true);
  const terminating = applied(desiredScaledObject(obj, settings));
  terminating.metadata!.deletionTimestamp = "2026-01-01T00:00:00Z";
  const waiting = planScaledObject(obj, { ...healthy, scaledObject: terminating }, settings);
  assert.deepEqual(waiting.action, { type: "none" });
  assert.equal(waiting.problems.at(-1)?.reason, Reason.ScaledObjectTerminating);
});

Deno.test("plan: skip annotation deletes only our ScaledObject; orphan drops only our ownerReference", () => {
  const skip = httpso({
    metadata: { annotations: { "httpscaledobject.keda.sh/skip-scaledobject-creation": "true" } },
  });
  const ours = applied(desiredScaledObject(skip, settings));
  assert.deepEqual(planScaledObject(skip, { ...healthy, scaledObject: ours }, settings).action, {
    type: "delete",
    uid: "so-uid",
    requeue: false,
  });
  const theirs: ScaledObject = { metadata: { name: "app", namespace: "team", uid: "t" }, spec: {} };
  const kept = planScaledObject(skip, { ...healthy, scaledObject: theirs }, settings);
  assert.deepEqual(kept.action, { type: "none" });
  assert.deepEqual(kept.problems, [], "a user's own ScaledObject is expected with skip");
  assert.match(kept.readyMessage, /skipped/);
  assert.deepEqual(planScaledObject(skip, healthy, settings).action, { type: "none" });

  const orphan = httpso({
    metadata: { annotations: { "httpscaledobject.keda.sh/orphan-scaledobject": "true" } },
  });
  const owned = applied(desiredScaledObject(orphan, settings));
  const other = { apiVersion: "v1", kind: "ConfigMap", name: "c", uid: "c1" };
  owned.metadata!.ownerReferences = [...owned.metadata!.ownerReferences!, other];
  assert.deepEqual(planScaledObject(orphan, { ...healthy, scaledObject: owned }, settings).action, {
    type: "orphan",
    ownerReferences: [other],
    resourceVersion: "200",
  });
  const already = structuredClone(owned);
  already.metadata!.ownerReferences = [other];
  assert.deepEqual(
    planScaledObject(orphan, { ...healthy, scaledObject: already }, settings).action,
    {
      type: "none",
    },
  );
  assert.deepEqual(
    planScaledObject(orphan, healthy, settings).action,
    { type: "none" },
    "orphan never creates",
  );
});

Deno.test("ready state: first problem gives the reason, all are in the message", () => {
  assert.deepEqual(readyStateOf([], "ok"), { status: "True", reason: "Reconciled", message: "ok" });
  assert.deepEqual(
    readyStateOf([{ reason: "A", message: "a" }, { reason: "B", message: "b" }], "ok"),
    {
      status: "False",
      reason: "A",
      message: "a; b",
    },
  );
});

Deno.test("conditions: lastTransitionTime moves only when the status changes", () => {
  const t1 = new Date("2026-01-01T00:00:00.123Z");
  const t2 = new Date("2026-01-01T00:05:00Z");
  const first = setCondition(undefined, {
    type: "Ready",
    status: "False",
    reason: "A",
    message: "a",
  }, t1);
  assert.deepEqual(first, [{
    type: "Ready",
    status: "False",
    reason: "A",
    message: "a",
    lastTransitionTime: "2026-01-01T00:00:00Z",
  }]);
  const sameStatus = setCondition(first, {
    type: "Ready",
    status: "False",
    reason: "B",
    message: "b",
  }, t2);
  assert.equal(sameStatus[0]?.lastTransitionTime, "2026-01-01T00:00:00Z");
  assert.equal(sameStatus[0]?.reason, "B");
  const flipped = setCondition(sameStatus, {
    type: "Ready",
    status: "True",
    reason: "C",
    message: "c",
  }, t2);
  assert.equal(flipped[0]?.lastTransitionTime, "2026-01-01T00:05:00Z");
  const other = [{ type: "Legacy", status: "True" }, ...flipped];
  const kept = setCondition(
    other,
    { type: "Ready", status: "True", reason: "C", message: "c" },
    t1,
  );
  assert.deepEqual(kept.map((c) => c.type), ["Legacy", "Ready"]);
});

Deno.test("status: desired status and equality ignoring lastTransitionTime", () => {
  const obj = httpso({
    spec: {
      scaleTargetRef: {
        name: "db",
        kind: "StatefulSet",
        apiVersion: "apps/v1",
        service: "db",
        portName: "http",
      },
    },
  });
  const ready = readyStateOf([], "ScaledObject created and configured");
  const s1 = desiredStatus(undefined, obj, ready, 3, new Date("2026-01-01T00:00:00Z"));
  assert.equal(s1.targetWorkload, "apps/v1/StatefulSet/db");
  assert.equal(s1.targetService, "db:http");
  assert.deepEqual(s1.conditions, [{
    type: "Ready",
    status: "True",
    observedGeneration: 3,
    reason: "Reconciled",
    message: "ScaledObject created and configured",
    lastTransitionTime: "2026-01-01T00:00:00Z",
  }]);
  const s2 = desiredStatus(s1, obj, ready, 3, new Date("2026-02-01T00:00:00Z"));
  assert.equal(statusEqual(s1, s2), true);
  const restamped = structuredClone(s1);
  restamped.conditions![0]!.lastTransitionTime = "2030-01-01T00:00:00Z";
  assert.equal(statusEqual(s1, restamped), true);
  const nextGen = desiredStatus(s1, obj, ready, 4, new Date());
  assert.equal(statusEqual(s1, nextGen), false, "observedGeneration is part of the status");
  const invalid = desiredStatus(
    s1,
    undefined,
    { status: "False", reason: "InvalidSpec", message: "x" },
    5,
    new Date(),
  );
  assert.equal(
    invalid.targetWorkload,
    "apps/v1/StatefulSet/db",
    "kept when the spec does not parse",
  );
});
