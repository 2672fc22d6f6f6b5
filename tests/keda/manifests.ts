/**
 * KEDA's own install manifests, read from its published Go module's config/
 * (the kustomize base KEDA releases are built from), adapted the way an
 * operator of KEDA would adapt them for a cluster without cert-manager and
 * without KEDA's admission webhooks:
 *  - the operator runs with --enable-cert-rotation=false, and the
 *    `kedaorg-certs` Secret holds certificates we generate (certs.ts);
 *  - the APIService v1beta1.external.metrics.k8s.io carries our CA as
 *    caBundle (KEDA's rotator would patch it in);
 *  - config/webhooks and the CRDs are left out (the test cluster installs
 *    KEDA's CRDs itself; webhooks are not run);
 *  - images are pinned to the module's version; readiness probes start
 *    sooner so tests do not wait 20 s for a pod that is up in one.
 * Everything else — RBAC, Services, Deployments, args, env, volumes — is
 * KEDA's, so the test exercises KEDA as users install it.
 */

import { parseAllDocuments } from "yaml";
import type { KubeObject } from "../../shared/kube.ts";
import type { KedaCerts } from "./certs.ts";

/** KEDA's config/ files this install uses, relative to the module root's config/. */
export const KEDA_CONFIG_FILES = [
  "general/namespace.yaml",
  "service_account/service_account.yaml",
  "rbac/role.yaml",
  "rbac/role_binding.yaml",
  "metrics-server/role.yaml",
  "metrics-server/role_binding.yaml",
  "manager/service.yaml",
  "metrics-server/service.yaml",
  "manager/manager.yaml",
  "metrics-server/deployment.yaml",
  "metrics-server/api_service.yaml",
] as const;

export type KedaConfigFile = typeof KEDA_CONFIG_FILES[number];
export type KedaConfig = Record<KedaConfigFile, string>;

/** The namespace KEDA's config/ is written for. */
export const KEDA_DEFAULT_NAMESPACE = "keda";
export const KEDA_CERT_SECRET = "kedaorg-certs";
export const KEDA_APISERVICE = "v1beta1.external.metrics.k8s.io";
export const KEDA_OPERATOR = "keda-operator";
export const KEDA_METRICS_APISERVER = "keda-metrics-apiserver";

/** The images KEDA publishes for a version ("v2.20.2" → "…:2.20.2"). */
export function kedaImages(version: string): { operator: string; metricsApiServer: string } {
  const tag = version.replace(/^v/, "");
  return {
    operator: `ghcr.io/kedacore/keda:${tag}`,
    metricsApiServer: `ghcr.io/kedacore/keda-metrics-apiserver:${tag}`,
  };
}

/** Reads the files of KEDA_CONFIG_FILES from a KEDA module directory. */
export async function readKedaConfig(moduleDir: string): Promise<KedaConfig> {
  const entries = await Promise.all(
    KEDA_CONFIG_FILES.map(async (f) => {
      const path = `${moduleDir}/config/${f}`;
      try {
        return [f, await Deno.readTextFile(path)] as const;
      } catch (e) {
        throw new Error(
          `KEDA's manifest ${path} cannot be read (${(e as Error).message}); ` +
            `is ${moduleDir} the root of github.com/kedacore/keda/v2?`,
        );
      }
    }),
  );
  return Object.fromEntries(entries) as KedaConfig;
}

export interface KedaManifestOptions {
  /** Install namespace (KEDA's default: keda). */
  namespace?: string;
  /** KEDA version, for the image tags ("v2.20.2"). */
  version: string;
  certs: KedaCerts;
  /** Readiness probes start after 1 s instead of KEDA's 20 s / 5 s (default true). */
  fastProbes?: boolean;
  /** Extra operator args appended to KEDA's (e.g. --zap-log-level=debug). */
  operatorArgs?: string[];
  /**
   * Leave out the metrics API server's emptyDir at /tmp. Needed on the local
   * node agent (tests/cluster), which keeps pod logs and volume sources under
   * /tmp: an emptyDir mounted over /tmp hides them and the container cannot
   * start. Pods there share the host's writable /tmp, which is what the
   * emptyDir stands in for under readOnlyRootFilesystem.
   */
  withoutTmpVolume?: boolean;
}

function parseDocs(file: string, text: string): KubeObject[] {
  const out: KubeObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) {
      throw new Error(`KEDA manifest ${file}: invalid YAML: ${doc.errors[0]?.message}`);
    }
    const value = doc.toJS() as KubeObject | null;
    if (value && typeof value === "object") out.push(value);
  }
  return out;
}

type Json = Record<string, unknown>;

function asRecord(v: unknown, what: string): Json {
  if (!v || typeof v !== "object" || Array.isArray(v)) {
    throw new Error(`KEDA manifest: expected ${what} to be an object`);
  }
  return v as Json;
}

function b64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Rewrites KEDA's namespace references (objects, binding subjects, APIService) to ns. */
function moveNamespace(obj: KubeObject, ns: string): void {
  const from = KEDA_DEFAULT_NAMESPACE;
  if (obj.kind === "Namespace" && obj.metadata?.name === from) obj.metadata.name = ns;
  if (obj.metadata?.namespace === from) obj.metadata.namespace = ns;
  const subjects = obj.subjects as Array<{ namespace?: string }> | undefined;
  for (const s of subjects ?? []) if (s.namespace === from) s.namespace = ns;
  if (obj.kind === "APIService") {
    const svc = asRecord(asRecord(obj.spec, "APIService spec").service, "APIService service");
    if (svc.namespace === from) svc.namespace = ns;
  }
}

function containerOf(deployment: KubeObject, name: string): Json {
  const spec = asRecord(deployment.spec, `${name} spec`);
  const template = asRecord(spec.template, `${name} template`);
  const podSpec = asRecord(template.spec, `${name} pod spec`);
  const containers = podSpec.containers as Json[] | undefined;
  const c = containers?.find((x) => x.name === name);
  if (!c) throw new Error(`KEDA manifest: Deployment ${name} has no container named ${name}`);
  return c;
}

function dropTmpVolume(deployment: KubeObject, c: Json): void {
  const mounts = (c.volumeMounts as Array<{ name: string; mountPath: string }> | undefined) ?? [];
  const names = new Set(mounts.filter((m) => m.mountPath === "/tmp").map((m) => m.name));
  c.volumeMounts = mounts.filter((m) => !names.has(m.name));
  // deno-lint-ignore no-explicit-any
  const podSpec = (deployment.spec as any).template.spec as { volumes?: Array<{ name: string }> };
  podSpec.volumes = (podSpec.volumes ?? []).filter((v) => !names.has(v.name));
}

function speedUpReadiness(c: Json): void {
  const probe = c.readinessProbe as Json | undefined;
  if (!probe) return;
  probe.initialDelaySeconds = 1;
  probe.periodSeconds = 2;
}

/**
 * KEDA's objects, in apply order (namespace, identity, RBAC, Secret,
 * Services, Deployments, APIService).
 */
export function kedaManifests(config: KedaConfig, options: KedaManifestOptions): KubeObject[] {
  const ns = options.namespace ?? KEDA_DEFAULT_NAMESPACE;
  const images = kedaImages(options.version);
  const fast = options.fastProbes ?? true;
  const objects: KubeObject[] = [];
  for (const file of KEDA_CONFIG_FILES) {
    for (const obj of parseDocs(file, config[file])) {
      moveNamespace(obj, ns);
      if (obj.kind === "Deployment" && obj.metadata?.name === KEDA_OPERATOR) {
        const c = containerOf(obj, KEDA_OPERATOR);
        c.image = images.operator;
        c.imagePullPolicy = "IfNotPresent";
        // Our certificates are in the Secret; KEDA's rotator would replace them.
        const args = ((c.args as string[] | undefined) ?? []).filter(
          (a) => !a.startsWith("--enable-cert-rotation"),
        );
        c.args = [...args, "--enable-cert-rotation=false", ...(options.operatorArgs ?? [])];
        if (fast) speedUpReadiness(c);
      } else if (obj.kind === "Deployment" && obj.metadata?.name === KEDA_METRICS_APISERVER) {
        const c = containerOf(obj, KEDA_METRICS_APISERVER);
        c.image = images.metricsApiServer;
        c.imagePullPolicy = "IfNotPresent";
        if (fast) speedUpReadiness(c);
        if (options.withoutTmpVolume) dropTmpVolume(obj, c);
      } else if (obj.kind === "APIService") {
        const spec = asRecord(obj.spec, "APIService spec");
        spec.caBundle = b64(options.certs.caPem);
        spec.insecureSkipTLSVerify = false;
      }
      objects.push(obj);
    }
  }
  const secret: KubeObject = {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: KEDA_CERT_SECRET,
      namespace: ns,
      labels: { "app.kubernetes.io/part-of": "keda-operator" },
    },
    type: "Opaque",
    data: {
      "ca.crt": b64(options.certs.caPem),
      "tls.crt": b64(options.certs.certPem),
      "tls.key": b64(options.certs.keyPem),
    },
  };
  // The Secret must exist before the Deployments that mount it.
  const firstService = objects.findIndex((o) => o.kind === "Service");
  objects.splice(firstService < 0 ? objects.length : firstService, 0, secret);
  for (const o of objects) {
    if (!o.apiVersion || !o.kind || !o.metadata?.name) {
      throw new Error(
        `KEDA manifest: an object lacks apiVersion, kind or name: ${JSON.stringify(o)}`,
      );
    }
  }
  return objects;
}

/** REST path of one of the kinds kedaManifests returns (no discovery needed). */
export function restPathOf(obj: KubeObject): string {
  const name = encodeURIComponent(obj.metadata?.name ?? "");
  const ns = obj.metadata?.namespace;
  const nsPart = (plural: string) => {
    if (!ns) throw new Error(`${obj.kind} ${name} needs metadata.namespace`);
    return `namespaces/${ns}/${plural}/${name}`;
  };
  switch (`${obj.apiVersion}/${obj.kind}`) {
    case "v1/Namespace":
      return `/api/v1/namespaces/${name}`;
    case "v1/ServiceAccount":
      return `/api/v1/${nsPart("serviceaccounts")}`;
    case "v1/Service":
      return `/api/v1/${nsPart("services")}`;
    case "v1/Secret":
      return `/api/v1/${nsPart("secrets")}`;
    case "apps/v1/Deployment":
      return `/apis/apps/v1/${nsPart("deployments")}`;
    case "rbac.authorization.k8s.io/v1/ClusterRole":
      return `/apis/rbac.authorization.k8s.io/v1/clusterroles/${name}`;
    case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
      return `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${name}`;
    case "rbac.authorization.k8s.io/v1/Role":
      return `/apis/rbac.authorization.k8s.io/v1/${nsPart("roles")}`;
    case "rbac.authorization.k8s.io/v1/RoleBinding":
      return `/apis/rbac.authorization.k8s.io/v1/${nsPart("rolebindings")}`;
    case "apiregistration.k8s.io/v1/APIService":
      return `/apis/apiregistration.k8s.io/v1/apiservices/${name}`;
    default:
      throw new Error(
        `KEDA install: no REST path known for ${obj.apiVersion} ${obj.kind} (${name}); ` +
          `KEDA's config/ changed — extend restPathOf`,
      );
  }
}
