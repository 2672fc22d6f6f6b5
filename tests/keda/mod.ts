/**
 * KEDA on the test cluster.
 *
 *   await using cluster = await startCluster();
 *   await using keda = await installKeda(cluster);
 *
 * installKeda installs KEDA (the version pinned in tests/cluster/paths.ts)
 * into namespace `keda`: KEDA's RBAC, Services, Deployments and APIService
 * from its published Go module's config/ (manifests.ts), certificates we
 * generate (certs.ts), the operator and the metrics API server as pods whose
 * images the node agent maps to the binaries tests/keda/build_keda.sh builds.
 * It resolves when both Deployments are available and the APIService
 * v1beta1.external.metrics.k8s.io is Available (the HPA can read external
 * metrics through the aggregation layer). Disposing the handle uninstalls
 * KEDA on clusters that outlive the test (attached ones); a cluster the test
 * owns goes away whole. A KEDA that is already installed and ready (a shared
 * dev cluster) is used as it is and never uninstalled.
 *
 * With KEDAHTTP_USE_EXISTING_CLUSTER=true (and KUBECONFIG), KEDA is assumed
 * installed (e.g. by helm on kind): installKeda only checks it is ready and
 * disposing does nothing.
 */

import { isNotFound, KubeClient, type KubeObject, loadKubeConfig } from "../../shared/kube.ts";
import { sleep } from "../../shared/lifetime.ts";
import { createLogger, type Logger, loggerFromEnv } from "../../shared/log.ts";
import { isExecutable } from "../cluster/binaries.ts";
import { kedaCrdDir } from "../cluster/crds.ts";
import { cacheDir, KEDA_VERSION } from "../cluster/paths.ts";
import { generateKedaCerts, type KedaCerts } from "./certs.ts";
import {
  KEDA_APISERVICE,
  KEDA_CERT_SECRET,
  KEDA_DEFAULT_NAMESPACE,
  KEDA_METRICS_APISERVER,
  KEDA_OPERATOR,
  kedaImages,
  kedaManifests,
  readKedaConfig,
  restPathOf,
} from "./manifests.ts";

export { KEDA_VERSION };

/** KEDA could not be built, installed or found ready; the message says what to do. */
export class KedaError extends Error {
  override name = "KedaError";
}

/** The cluster handle parts installKeda uses (tests/cluster/mod.ts's Cluster has them). */
export interface KedaCluster {
  readonly kubeconfigPath: string;
  /** Set for clusters started by tests/cluster (pod logs are files there). */
  readonly stateDir: string | undefined;
  /**
   * True when the cluster outlives the test (a dev cluster or an existing
   * one): disposing the installation then uninstalls KEDA. A cluster the
   * test owns is torn down whole, so disposing skips the uninstall.
   */
  readonly attached?: boolean;
  podLogs?(namespace: string, pod: string, container?: string): Promise<string>;
}

export type KedaBinary = "keda-operator" | "keda-metrics-apiserver";

/** Where build_keda.sh puts a KEDA binary. */
export function kedaBinaryPath(name: KedaBinary, version = KEDA_VERSION): string {
  return `${cacheDir()}/keda-${version}/bin/${name}`;
}

/**
 * Image → local binary, for the node agent's image table: the node agent
 * runs these images' entrypoints as these executables.
 */
export function kedaImageBinaries(version = KEDA_VERSION): Record<string, string> {
  const images = kedaImages(version);
  return {
    [images.operator]: kedaBinaryPath("keda-operator", version),
    [images.metricsApiServer]: kedaBinaryPath("keda-metrics-apiserver", version),
  };
}

/**
 * Builds the KEDA binaries with build_keda.sh when they are not cached yet
 * (the first build takes many minutes; its progress goes to stderr).
 */
export async function ensureKedaBinaries(
  options: { signal?: AbortSignal; log?: Logger } = {},
): Promise<Record<KedaBinary, string>> {
  const names: KedaBinary[] = ["keda-operator", "keda-metrics-apiserver"];
  const missing = names.filter((n) => !isExecutable(kedaBinaryPath(n)));
  if (missing.length) {
    options.log?.info("building KEDA binaries (first run only)", {
      missing,
      version: KEDA_VERSION,
    });
    const script = decodeURIComponent(new URL("./build_keda.sh", import.meta.url).pathname);
    const out = await new Deno.Command("bash", {
      args: [script, ...missing],
      env: { KEDA_VERSION },
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
      signal: options.signal,
    }).output();
    if (!out.success) {
      throw new KedaError(
        `tests/keda/build_keda.sh ${missing.join(" ")} failed (exit ${out.code}); ` +
          `see its output above, fix the cause (Go installed? module proxy reachable?) and retry`,
      );
    }
  }
  return {
    "keda-operator": kedaBinaryPath("keda-operator"),
    "keda-metrics-apiserver": kedaBinaryPath("keda-metrics-apiserver"),
  };
}

/** Root of KEDA's Go module in the module cache (holds config/). */
export async function kedaModuleDir(): Promise<string> {
  return (await kedaCrdDir()).replace(/\/config\/crd\/bases\/?$/, "");
}

export interface InstallKedaOptions {
  signal?: AbortSignal;
  /** Install namespace; default `keda`. */
  namespace?: string;
  /** How long to wait for KEDA to be ready; default 180 s. */
  timeoutMs?: number;
  /** Extra args for the operator (e.g. --zap-log-level=debug). */
  operatorArgs?: string[];
  /**
   * Only check an installed KEDA, never install or uninstall (the
   * existing-cluster opt-in). Default: KEDAHTTP_USE_EXISTING_CLUSTER=true.
   */
  existing?: boolean;
  log?: Logger;
}

/** Times of the install, in ms since installKeda was called. */
export interface KedaInstallTimings {
  /** Certificates generated and manifests read. */
  prepared: number;
  /** Every object applied. */
  applied: number;
  operatorAvailable: number;
  metricsApiServerAvailable: number;
  /** APIService Available=True: KEDA is ready. */
  ready: number;
}

export interface KedaInstallation extends AsyncDisposable {
  readonly namespace: string;
  /** True when installKeda installed KEDA (and uninstall removes it). */
  readonly managed: boolean;
  /** The operator's image tag, e.g. "2.20.2". */
  readonly version: string;
  readonly timings: KedaInstallTimings | undefined;
  /** A shared/kube.ts client for the cluster (closed on dispose). */
  readonly client: KubeClient;
  /** KEDA's pods, conditions and log tails: for failure messages. */
  describe(): Promise<string>;
  uninstall(options?: { signal?: AbortSignal }): Promise<void>;
}

export interface KedaStatus {
  ready: boolean;
  /** What is not ready yet, in words. */
  problems: string[];
  namespace: string;
  version?: string;
  operatorAvailable: boolean;
  metricsApiServerAvailable: boolean;
  apiServiceAvailable: boolean;
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

interface DeploymentLike extends KubeObject {
  spec?: { replicas?: number; template?: { spec?: { containers?: Array<{ image?: string }> } } };
  status?: { availableReplicas?: number; conditions?: Condition[] };
}

interface PodLike extends KubeObject {
  spec?: { nodeName?: string };
  status?: {
    phase?: string;
    reason?: string;
    message?: string;
    conditions?: Condition[];
    containerStatuses?: Array<{
      name: string;
      ready: boolean;
      restartCount: number;
      state?: Record<string, { reason?: string; message?: string; exitCode?: number }>;
      lastState?: Record<string, { reason?: string; message?: string; exitCode?: number }>;
    }>;
  };
}

function isExistingClusterOptIn(): boolean {
  return Deno.env.get("KEDAHTTP_USE_EXISTING_CLUSTER") === "true";
}

async function getOrUndefined<T>(client: KubeClient, path: string): Promise<T | undefined> {
  try {
    return await client.get<T>(path);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

const APISERVICE_PATH = `/apis/apiregistration.k8s.io/v1/apiservices/${KEDA_APISERVICE}`;

/** Where KEDA's metrics API server lives, according to the APIService. */
async function kedaNamespaceFromApiService(client: KubeClient): Promise<string | undefined> {
  const svc = await getOrUndefined<{ spec?: { service?: { namespace?: string } } }>(
    client,
    APISERVICE_PATH,
  );
  return svc?.spec?.service?.namespace;
}

/** One look at KEDA's readiness (Deployments available, APIService Available). */
export async function kedaStatus(client: KubeClient, namespace: string): Promise<KedaStatus> {
  const problems: string[] = [];
  const deployment = async (name: string) => {
    const d = await getOrUndefined<DeploymentLike>(
      client,
      `/apis/apps/v1/namespaces/${namespace}/deployments/${name}`,
    );
    if (!d) {
      problems.push(`Deployment ${namespace}/${name} does not exist`);
      return { ok: false, d };
    }
    const ok = (d.status?.availableReplicas ?? 0) >= 1;
    if (!ok) {
      const cond = d.status?.conditions?.find((c) => c.type === "Available");
      problems.push(
        `Deployment ${namespace}/${name} has no available replica` +
          (cond?.message ? ` (${cond.message})` : ""),
      );
    }
    return { ok, d };
  };
  const [op, ms, api] = await Promise.all([
    deployment(KEDA_OPERATOR),
    deployment(KEDA_METRICS_APISERVER),
    getOrUndefined<{ status?: { conditions?: Condition[] } }>(client, APISERVICE_PATH),
  ]);
  const available = api?.status?.conditions?.find((c) => c.type === "Available");
  const apiOk = available?.status === "True";
  if (!api) problems.push(`APIService ${KEDA_APISERVICE} does not exist`);
  else if (!apiOk) {
    problems.push(
      `APIService ${KEDA_APISERVICE} is not Available` +
        (available ? ` (${available.reason}: ${available.message})` : ""),
    );
  }
  const image = op.d?.spec?.template?.spec?.containers?.[0]?.image ?? "";
  const tag = image.includes(":") ? image.slice(image.lastIndexOf(":") + 1) : undefined;
  return {
    ready: op.ok && ms.ok && apiOk,
    problems,
    namespace,
    version: tag,
    operatorAvailable: op.ok,
    metricsApiServerAvailable: ms.ok,
    apiServiceAvailable: apiOk,
  };
}

/** KEDA's pods with their state and the tail of their logs, for error messages. */
export async function describeKeda(
  client: KubeClient,
  namespace: string,
  cluster?: KedaCluster,
): Promise<string> {
  const lines: string[] = [];
  try {
    const status = await kedaStatus(client, namespace);
    lines.push(...status.problems.map((p) => `- ${p}`));
    const pods = await client.list<PodLike>(`/api/v1/namespaces/${namespace}/pods`);
    if (!pods.items.length) lines.push(`- no pods in namespace ${namespace}`);
    for (const p of pods.items) {
      const st = p.status ?? {};
      const containers = (st.containerStatuses ?? []).map((c) => {
        const [state, detail] = Object.entries(c.state ?? {})[0] ?? ["unknown", {}];
        const why = [
          detail.reason,
          detail.message,
          detail.exitCode !== undefined ? `exit ${detail.exitCode}` : "",
        ]
          .filter(Boolean).join(", ");
        const last = c.lastState?.terminated;
        const lastWhy = last
          ? `, last exit ${last.exitCode ?? "?"}${last.reason ? ` ${last.reason}` : ""}`
          : "";
        return `${c.name}: ${state}${why ? ` (${why})` : ""}, ready=${c.ready}, ` +
          `restarts=${c.restartCount}${lastWhy}`;
      });
      lines.push(
        `- pod ${p.metadata?.name}: ${st.phase ?? "?"}` +
          (p.spec?.nodeName ? ` on ${p.spec.nodeName}` : " (not scheduled)") +
          (st.message ? ` — ${st.message}` : "") +
          (containers.length ? `; ${containers.join("; ")}` : ""),
      );
      if (cluster?.podLogs && cluster.stateDir && p.metadata?.name) {
        const log = await cluster.podLogs(namespace, p.metadata.name).catch(() => "");
        const tail = log.trimEnd().split("\n").slice(-15).join("\n    ");
        if (tail) lines.push(`    ${tail}`);
      }
    }
  } catch (e) {
    lines.push(`- (could not describe KEDA: ${(e as Error).message})`);
  }
  return lines.join("\n");
}

function fromB64(data: string): string {
  return new TextDecoder().decode(Uint8Array.from(atob(data), (c) => c.charCodeAt(0)));
}

/** The certificates of an earlier install, if its Secret is still there. */
async function existingCerts(
  client: KubeClient,
  namespace: string,
): Promise<KedaCerts | undefined> {
  const secret = await getOrUndefined<{ data?: Record<string, string> }>(
    client,
    `/api/v1/namespaces/${namespace}/secrets/${KEDA_CERT_SECRET}`,
  );
  const d = secret?.data;
  if (!d?.["ca.crt"] || !d["tls.crt"] || !d["tls.key"]) return undefined;
  return {
    caPem: fromB64(d["ca.crt"]),
    certPem: fromB64(d["tls.crt"]),
    keyPem: fromB64(d["tls.key"]),
  };
}

async function applyObject(
  client: KubeClient,
  obj: KubeObject,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await client.patch(restPathOf(obj), obj, {
      contentType: "application/apply-patch+yaml",
      query: { fieldManager: "keda-http-deno-keda", force: true },
      signal,
    });
  } catch (e) {
    throw new KedaError(
      `applying KEDA's ${obj.kind} ${obj.metadata?.namespace ?? ""}/${obj.metadata?.name}: ` +
        (e as Error).message,
    );
  }
}

/** KEDA's CRDs: the test cluster installs them; install them here when a cluster lacks them. */
async function ensureKedaCrds(client: KubeClient, signal?: AbortSignal): Promise<void> {
  const present = await getOrUndefined(
    client,
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/scaledobjects.keda.sh",
  );
  if (present) return;
  const { parseAllDocuments } = await import("yaml");
  const dir = await kedaCrdDir();
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || !/\.ya?ml$/.test(e.name)) continue;
    for (const doc of parseAllDocuments(await Deno.readTextFile(`${dir}/${e.name}`))) {
      const crd = doc.toJS() as KubeObject | null;
      if (crd?.kind !== "CustomResourceDefinition" || !crd.metadata?.name) continue;
      names.push(crd.metadata.name);
      await client.patch(
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`,
        crd,
        {
          contentType: "application/apply-patch+yaml",
          query: { fieldManager: "keda-http-deno-keda", force: true },
          signal,
        },
      );
    }
  }
  const deadline = Date.now() + 30_000;
  for (const name of names) {
    while (true) {
      const crd = await client.get<{ status?: { conditions?: Condition[] } }>(
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`,
      );
      if (crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) {
        break;
      }
      if (Date.now() > deadline) {
        throw new KedaError(`KEDA's CRD ${name} is not Established after 30 s`);
      }
      await sleep(100, signal);
    }
  }
}

async function waitNamespaceGone(
  client: KubeClient,
  namespace: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await getOrUndefined(client, `/api/v1/namespaces/${namespace}`))) return true;
    await sleep(250, signal);
  }
  return false;
}

/**
 * Deletes every ScaledObject and ScaledJob while KEDA still runs (KEDA
 * removes its finalizer and the HPA); strips the finalizer of any left after
 * the timeout, since without KEDA nothing would and their namespaces could
 * never be deleted.
 */
async function releaseKedaObjects(
  client: KubeClient,
  log: Logger,
  signal?: AbortSignal,
): Promise<void> {
  const kinds = ["scaledobjects", "scaledjobs"];
  const list = async () => {
    const out: Array<{ path: string; obj: KubeObject }> = [];
    for (const plural of kinds) {
      try {
        const items = (await client.list(`/apis/keda.sh/v1alpha1/${plural}`)).items;
        for (const obj of items) {
          out.push({
            path:
              `/apis/keda.sh/v1alpha1/namespaces/${obj.metadata?.namespace}/${plural}/${obj.metadata?.name}`,
            obj,
          });
        }
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    }
    return out;
  };
  let left = await list();
  if (!left.length) return;
  await Promise.all(left.map((o) => client.delete(o.path, { signal }).catch(() => {})));
  const deadline = Date.now() + 30_000;
  while (left.length && Date.now() < deadline) {
    await sleep(250, signal);
    left = await list();
  }
  for (const o of left) {
    log.warn("KEDA did not finalize an object in time; removing its finalizers", { path: o.path });
    await client.patch(o.path, { metadata: { finalizers: null } }, { signal }).catch(() => {});
  }
}

/**
 * Installs KEDA and waits until it is ready (see the module comment). Throws
 * a KedaError that lists what is not ready, with KEDA's pod states and log
 * tails, when that takes longer than options.timeoutMs.
 */
export async function installKeda(
  cluster: KedaCluster,
  options: InstallKedaOptions = {},
): Promise<KedaInstallation> {
  const log = options.log ??
    (Deno.env.get("LOG_LEVEL") ? loggerFromEnv("keda") : createLogger({
      level: "warn",
      fields: { component: "keda" },
    }));
  const signal = options.signal;
  const timeoutMs = options.timeoutMs ?? 180_000;
  const client = new KubeClient(loadKubeConfig(cluster.kubeconfigPath));

  try {
    if (options.existing ?? isExistingClusterOptIn()) {
      const namespace = options.namespace ?? (await kedaNamespaceFromApiService(client)) ??
        KEDA_DEFAULT_NAMESPACE;
      const status = await kedaStatus(client, namespace);
      if (!status.ready) {
        throw new KedaError(
          `KEDAHTTP_USE_EXISTING_CLUSTER=true: KEDA must already be installed on the cluster ` +
            `(e.g. helm install keda kedacore/keda --namespace keda --create-namespace --version ` +
            `${KEDA_VERSION.replace(/^v/, "")}), but it is not ready:\n` +
            status.problems.map((p) => `- ${p}`).join("\n"),
        );
      }
      if (
        status.version &&
        !status.version.startsWith(KEDA_VERSION.replace(/^v/, "").replace(/\.\d+$/, ""))
      ) {
        log.warn("existing KEDA is not the pinned minor version", {
          found: status.version,
          pinned: KEDA_VERSION,
        });
      }
      return handle({
        client,
        namespace,
        managed: false,
        version: status.version ?? "unknown",
        cluster,
        log,
      });
    }

    const namespace = options.namespace ?? KEDA_DEFAULT_NAMESPACE;
    // A shared cluster may have a KEDA someone else installed: use it, and
    // leave it in place on dispose.
    const before = await kedaStatus(client, namespace).catch(() => undefined);
    if (before?.ready) {
      log.info("KEDA is already installed and ready; using it", {
        namespace,
        version: before.version,
      });
      return handle({
        client,
        namespace,
        managed: false,
        version: before.version ?? "unknown",
        cluster,
        log,
      });
    }
    await ensureKedaBinaries({ signal, log });
    const t0 = Date.now();

    // A previous uninstall may still be deleting the namespace.
    const existing = await getOrUndefined<{ status?: { phase?: string } }>(
      client,
      `/api/v1/namespaces/${namespace}`,
    );
    if (existing?.status?.phase === "Terminating") {
      log.info("waiting for the previous KEDA namespace to be deleted", { namespace });
      if (!(await waitNamespaceGone(client, namespace, 120_000, signal))) {
        throw new KedaError(
          `namespace ${namespace} has been Terminating for 120 s; something holds it ` +
            `(kubectl get all,scaledobjects -n ${namespace}); delete it, then retry`,
        );
      }
    }

    const [config, certs] = await Promise.all([
      kedaModuleDir().then(readKedaConfig),
      // Running KEDA pods keep the certificates they started with: reuse them.
      existingCerts(client, namespace).then((c) => c ?? generateKedaCerts({ namespace, signal })),
      ensureKedaCrds(client, signal),
    ]);
    const objects = kedaManifests(config, {
      namespace,
      version: KEDA_VERSION,
      certs,
      operatorArgs: options.operatorArgs,
      withoutTmpVolume: cluster.stateDir !== undefined,
    });
    const prepared = Date.now() - t0;
    for (const obj of objects) await applyObject(client, obj, signal);
    const applied = Date.now() - t0;
    log.info("KEDA applied", { namespace, objects: objects.length, ms: applied });

    const installation = handle({
      client,
      namespace,
      managed: true,
      version: KEDA_VERSION.replace(/^v/, ""),
      cluster,
      log,
      objects,
    });
    const marks: Partial<KedaInstallTimings> = { prepared, applied };
    const deadline = t0 + timeoutMs;
    let last: KedaStatus | undefined;
    try {
      while (true) {
        signal?.throwIfAborted();
        try {
          last = await kedaStatus(client, namespace);
        } catch (e) {
          log.debug("KEDA status not readable yet", { error: e });
        }
        const now = Date.now() - t0;
        if (last?.operatorAvailable) marks.operatorAvailable ??= now;
        if (last?.metricsApiServerAvailable) marks.metricsApiServerAvailable ??= now;
        if (last?.ready) {
          marks.ready = now;
          break;
        }
        if (Date.now() > deadline) {
          throw new KedaError(
            `KEDA was not ready within ${timeoutMs} ms of installing it into ${namespace}:\n` +
              (await installation.describe()),
          );
        }
        await sleep(250, signal);
      }
    } catch (e) {
      await installation.uninstall().catch((err) =>
        log.warn("uninstalling KEDA after a failed install failed", { error: err })
      );
      throw e;
    }
    log.info("KEDA ready", { namespace, ...marks });
    (installation as { timings?: KedaInstallTimings }).timings = marks as KedaInstallTimings;
    return installation;
  } catch (e) {
    client.close();
    throw e;
  }
}

function handle(input: {
  client: KubeClient;
  namespace: string;
  managed: boolean;
  version: string;
  cluster: KedaCluster;
  log: Logger;
  objects?: KubeObject[];
}): KedaInstallation {
  const { client, namespace, log } = input;
  let uninstalled = false;
  const installation: KedaInstallation & { timings: KedaInstallTimings | undefined } = {
    namespace,
    managed: input.managed,
    version: input.version,
    timings: undefined,
    client,
    describe: () => describeKeda(client, namespace, input.cluster),
    async uninstall(options = {}) {
      if (uninstalled || !input.managed) return;
      uninstalled = true;
      const signal = options.signal;
      await releaseKedaObjects(client, log, signal).catch((e) =>
        log.warn("releasing ScaledObjects before uninstalling KEDA failed", { error: e })
      );
      // The APIService first: an unavailable aggregated API stalls discovery
      // and with it namespace deletion everywhere.
      const outside = (input.objects ?? []).filter((o) => o.metadata?.namespace !== namespace);
      outside.sort((a, b) => Number(b.kind === "APIService") - Number(a.kind === "APIService"));
      for (const o of outside) {
        if (o.kind === "Namespace") continue;
        await client.delete(restPathOf(o), { signal }).catch((e) => {
          if (!isNotFound(e)) log.warn("deleting a KEDA object failed", { kind: o.kind, error: e });
        });
      }
      await client.delete(`/api/v1/namespaces/${namespace}`, { signal }).catch((e) => {
        if (!isNotFound(e)) throw e;
      });
      if (!(await waitNamespaceGone(client, namespace, 90_000, signal))) {
        log.warn("KEDA's namespace is still terminating after 90 s", { namespace });
      }
    },
    async [Symbol.asyncDispose]() {
      try {
        if (input.cluster.attached ?? true) await installation.uninstall();
      } finally {
        client.close();
      }
    },
  };
  return installation;
}
