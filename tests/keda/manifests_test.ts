import assert from "node:assert/strict";
import type { KubeObject } from "../../shared/kube.ts";
import { KEDA_VERSION, kedaModuleDir } from "./mod.ts";
import {
  KEDA_APISERVICE,
  KEDA_CERT_SECRET,
  kedaImages,
  kedaManifests,
  readKedaConfig,
  restPathOf,
} from "./manifests.ts";

const certs = { caPem: "CA-PEM\n", certPem: "CERT-PEM\n", keyPem: "KEY-PEM\n" };

// KEDA's real config/ from the pinned module (go mod download, cached).
const config = await readKedaConfig(await kedaModuleDir());

function find(objects: KubeObject[], kind: string, name: string): KubeObject {
  const o = objects.find((x) => x.kind === kind && x.metadata?.name === name);
  assert.ok(
    o,
    `expected ${kind} ${name} among ${objects.map((x) => `${x.kind}/${x.metadata?.name}`)}`,
  );
  return o;
}

// deno-lint-ignore no-explicit-any
function container(d: KubeObject): any {
  // deno-lint-ignore no-explicit-any
  return (d.spec as any).template.spec.containers[0];
}

Deno.test("kedaManifests: KEDA's RBAC, Services, Deployments and APIService, no webhooks or CRDs", () => {
  const objects = kedaManifests(config, { version: KEDA_VERSION, certs });
  const kinds = new Set(objects.map((o) => o.kind));
  for (
    const k of [
      "Namespace",
      "ServiceAccount",
      "ClusterRole",
      "ClusterRoleBinding",
      "Role",
      "RoleBinding",
      "Secret",
      "Service",
      "Deployment",
      "APIService",
    ]
  ) assert.ok(kinds.has(k), `missing ${k}`);
  assert.ok(!kinds.has("ValidatingWebhookConfiguration"));
  assert.ok(!kinds.has("CustomResourceDefinition"));
  find(objects, "ClusterRole", "keda-operator");
  find(objects, "ClusterRole", "keda-external-metrics-reader");
  find(objects, "ClusterRoleBinding", "keda-system-auth-delegator");
  find(objects, "RoleBinding", "keda-auth-reader");
  // Least privilege: KEDA's own roles, never cluster-admin.
  for (const o of objects) {
    // deno-lint-ignore no-explicit-any
    assert.notEqual((o as any).roleRef?.name, "cluster-admin", `${o.kind} ${o.metadata?.name}`);
  }
  for (const o of objects) assert.ok(restPathOf(o).startsWith("/api"));
});

Deno.test("kedaManifests: cert rotation off, our CA in the APIService and the Secret", () => {
  const objects = kedaManifests(config, { version: "v2.20.2", certs });
  const op = container(find(objects, "Deployment", "keda-operator"));
  assert.equal(op.image, "ghcr.io/kedacore/keda:2.20.2");
  assert.ok(op.args.includes("--enable-cert-rotation=false"));
  assert.ok(!op.args.includes("--enable-cert-rotation=true"));
  assert.ok(op.args.includes("--leader-elect"), "KEDA's other args are kept");
  const ms = container(find(objects, "Deployment", "keda-metrics-apiserver"));
  assert.equal(ms.image, kedaImages("v2.20.2").metricsApiServer);
  assert.ok(ms.args.includes("--tls-cert-file=/certs/tls.crt"));
  assert.equal(ms.readinessProbe.initialDelaySeconds, 1);

  // deno-lint-ignore no-explicit-any
  const api = find(objects, "APIService", KEDA_APISERVICE) as any;
  assert.equal(atob(api.spec.caBundle), certs.caPem);
  assert.equal(api.spec.insecureSkipTLSVerify, false);
  // deno-lint-ignore no-explicit-any
  const secret = find(objects, "Secret", KEDA_CERT_SECRET) as any;
  assert.deepEqual(Object.keys(secret.data).sort(), ["ca.crt", "tls.crt", "tls.key"]);
  assert.equal(atob(secret.data["tls.key"]), certs.keyPem);
  const idx = (kind: string) => objects.findIndex((o) => o.kind === kind);
  assert.ok(idx("Namespace") === 0, "the namespace comes first");
  assert.ok(idx("Secret") < idx("Deployment"), "the Secret exists before the pods that mount it");
  assert.ok(idx("APIService") === objects.length - 1, "the APIService comes last");
});

Deno.test("kedaManifests: another namespace moves objects, subjects and the APIService service", () => {
  const objects = kedaManifests(config, { version: KEDA_VERSION, certs, namespace: "keda-x" });
  assert.equal(find(objects, "Namespace", "keda-x").kind, "Namespace");
  for (const o of objects) {
    assert.notEqual(o.metadata?.namespace, "keda", `${o.kind} ${o.metadata?.name}`);
  }
  // deno-lint-ignore no-explicit-any
  const api = find(objects, "APIService", KEDA_APISERVICE) as any;
  assert.equal(api.spec.service.namespace, "keda-x");
  // deno-lint-ignore no-explicit-any
  const hpa = find(objects, "ClusterRoleBinding", "keda-hpa-controller-external-metrics") as any;
  assert.deepEqual(hpa.subjects.map((s: { namespace: string }) => s.namespace), ["kube-system"]);
  // deno-lint-ignore no-explicit-any
  const op = find(objects, "ClusterRoleBinding", "keda-operator") as any;
  assert.deepEqual(op.subjects.map((s: { namespace: string }) => s.namespace), ["keda-x"]);
  // The auth reader binding stays in kube-system, where the role is.
  assert.equal(find(objects, "RoleBinding", "keda-auth-reader").metadata?.namespace, "kube-system");
});

Deno.test("restPathOf: an unknown kind is a clear error", () => {
  assert.throws(
    () =>
      restPathOf({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x", namespace: "n" } }),
    /no REST path known for v1 ConfigMap/,
  );
});

Deno.test("kedaManifests: withoutTmpVolume drops only the /tmp emptyDir of the metrics API server", () => {
  const kept = container(
    find(
      kedaManifests(config, { version: KEDA_VERSION, certs }),
      "Deployment",
      "keda-metrics-apiserver",
    ),
  );
  assert.ok(
    kept.volumeMounts.some((m: { mountPath: string }) => m.mountPath === "/tmp"),
    "KEDA's manifest has it",
  );
  const d = find(
    kedaManifests(config, { version: KEDA_VERSION, certs, withoutTmpVolume: true }),
    "Deployment",
    "keda-metrics-apiserver",
  );
  const c = container(d);
  assert.deepEqual(c.volumeMounts.map((m: { mountPath: string }) => m.mountPath), ["/certs"]);
  // deno-lint-ignore no-explicit-any
  assert.deepEqual((d.spec as any).template.spec.volumes.map((v: { name: string }) => v.name), [
    "certificates",
  ]);
});
