/**
 * Our system installed the way users install it: k8s/ through a kustomize
 * overlay (build/deploy.ts's, written to a temporary directory so nothing
 * else's dist/deploy is touched) and `kubectl apply --server-side -k`, or,
 * with the `helm` option, `helm install` of k8s/chart/keda-add-ons-http. The
 * handle finds our pods, restarts them, describes them for failure messages,
 * and uninstalls without deleting the shared CRD.
 */
import { parseAllDocuments, stringify } from "yaml";
import { overlay } from "../../build/deploy.ts";
import { imageNames } from "../../build/image.ts";
import type { Program } from "../../build/programs.ts";
import { isNotFound, type KubeClient, type KubeObject } from "../../shared/kube.ts";
import { sleep } from "../../shared/lifetime.ts";
import type { Logger } from "../../shared/log.ts";
import { repoPath } from "../../build/programs.ts";
import type { Cluster } from "../cluster/mod.ts";
import type { ClusterAccess } from "./access.ts";
import { appYaml } from "./apps.ts";
import { httpGet } from "./http_client.ts";
import { helmEnv } from "../tools/helm.ts";

export type Component = "interceptor" | "scaler" | "operator";

/** Deployment names, as the Go add-on's install names them. */
export const DEPLOYMENTS: Record<Component, string> = {
  interceptor: "keda-add-ons-http-interceptor",
  scaler: "keda-add-ons-http-scaler",
  operator: "keda-add-ons-http-operator",
};
/** The pods' app.kubernetes.io/name label (the scaler's kept its earlier name, as its Service). */
export const POD_LABELS: Record<Component, string> = {
  interceptor: "keda-add-ons-http-interceptor",
  scaler: "keda-add-ons-http-external-scaler",
  operator: "keda-add-ons-http-operator",
};
export const PROXY_SERVICE = "keda-add-ons-http-interceptor-proxy";
export const ADMIN_SERVICE = "keda-add-ons-http-interceptor-admin";
export const SCALER_SERVICE = "keda-add-ons-http-external-scaler";
export const INTERCEPTOR_SCALEDOBJECT = "keda-add-ons-http-interceptor";
const CLUSTER_SCOPED_PREFIXES = ["keda-add-ons-http-", "keda-http-add-on-"];

/** Image names that the local node agent maps to our programs (tests/cluster/images.ts). */
export const LOCAL_IMAGES = {
  KEDAHTTP_INTERCEPTOR_IMAGE: "registry.local/keda-http-deno/interceptor:e2e",
  KEDAHTTP_SCALER_IMAGE: "registry.local/keda-http-deno/scaler:e2e",
  KEDAHTTP_OPERATOR_IMAGE: "registry.local/keda-http-deno/operator:e2e",
};

/**
 * Images to deploy: on our local cluster any name containing the program's
 * name runs our code from this checkout; an existing cluster needs real
 * images (KEDAHTTP_*_IMAGE), which `deno task image:build` makes.
 */
export function systemImages(local: boolean, env = Deno.env.toObject()): Record<string, string> {
  if (local) return LOCAL_IMAGES;
  const missing = Object.keys(LOCAL_IMAGES).filter((k) => !env[k]);
  if (missing.length) {
    throw new Error(
      `against an existing cluster the e2e suite deploys real images: set ${
        missing.join(", ")
      } (build them with deno task image:build and load them into the cluster, e.g. kind load docker-image)`,
    );
  }
  return Object.fromEntries(Object.keys(LOCAL_IMAGES).map((k) => [k, env[k]!]));
}

export interface PodInfo {
  name: string;
  ip: string | undefined;
  ready: boolean;
  phase: string;
  deleting: boolean;
  restarts: number;
  createdAt: string;
}

interface PodObject extends KubeObject {
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{
      name: string;
      ready: boolean;
      restartCount: number;
      state?: Record<string, { reason?: string; message?: string; exitCode?: number }>;
      lastState?: Record<string, { reason?: string; exitCode?: number }>;
    }>;
  };
}

export function podInfo(p: PodObject): PodInfo {
  return {
    name: p.metadata?.name ?? "",
    ip: p.status?.podIP,
    ready: p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false,
    phase: p.status?.phase ?? "Unknown",
    deleting: Boolean(p.metadata?.deletionTimestamp),
    restarts: (p.status?.containerStatuses ?? []).reduce((n, c) => n + c.restartCount, 0),
    createdAt: String(p.metadata?.creationTimestamp ?? ""),
  };
}

export async function kubectl(
  bin: string,
  kubeconfig: string,
  args: string[],
  options: { signal?: AbortSignal } = {},
): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(bin, {
    args: ["--kubeconfig", kubeconfig, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: options.signal,
  }).output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
}

/** The chart, and the release name its docs use. */
export const CHART = repoPath("k8s/chart/keda-add-ons-http");
export const HELM_RELEASE = "keda-add-ons-http";

/** Install through Helm instead of `kubectl apply -k`. */
export interface HelmInstallOptions {
  /** The helm binary (tests/tools/helm.ts `helmBinary()`). */
  binary: string;
  /** Default `keda-add-ons-http`. */
  release?: string;
  /** The chart to install; default k8s/chart/keda-add-ons-http ([CHART]). */
  chart?: string;
  /** More `helm install` arguments, e.g. `--create-namespace`, `--take-ownership`, `--set …`. */
  args?: string[];
}

/**
 * Runs helm against the cluster at `kubeconfigPath`, in `namespace`, with its
 * config, cache and data under `home` (nothing in $HOME).
 */
export function helmRunner(
  binary: string,
  kubeconfigPath: string,
  namespace: string,
  home: string,
): (args: string[]) => Promise<{ code: number; out: string; err: string }> {
  return async (args) => {
    const o = await new Deno.Command(binary, {
      args: [...args, "--kubeconfig", kubeconfigPath, "--namespace", namespace],
      env: helmEnv(home),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
  };
}

/**
 * `--set` arguments pointing the chart's images at these names. The chart has
 * one `images.tag` for all three, so the names must share their tag.
 */
export function helmImageValues(images: Record<Program, string>): string[] {
  const parts = Object.entries(images).map(([program, ref]) => {
    if (ref.includes("@")) throw new Error(`the chart takes tags, not digests: ${ref}`);
    const slash = ref.lastIndexOf("/");
    const colon = ref.lastIndexOf(":");
    return colon > slash
      ? { program, name: ref.slice(0, colon), tag: ref.slice(colon + 1) }
      : { program, name: ref, tag: "latest" };
  });
  const tags = new Set(parts.map((p) => p.tag));
  if (tags.size > 1) {
    throw new Error(`the chart has one images.tag for all three images: ${Object.values(images)}`);
  }
  return [
    "--set",
    [...parts.map((p) => `images.${p.program}=${p.name}`), `images.tag=${[...tags][0]}`].join(","),
  ];
}

export interface InstallSystemOptions {
  namespace: string;
  kubectl: string;
  client: KubeClient;
  log: Logger;
  images: Record<string, string>;
  /** Default 180 s: the first start of each program on a fresh machine caches its modules. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Install with `helm install` of the chart (images from `images`) instead of
   * `kubectl apply -k` of k8s/ (the default); `uninstall()` then starts with
   * `helm uninstall`.
   */
  helm?: HelmInstallOptions;
  /**
   * More kustomize `patches` for the overlay of k8s/ (not with `helm`), after
   * the overlay's own: e.g. JSON 6902 patches of a Deployment's container.
   */
  patches?: Array<{ target: Record<string, string>; patch: string }>;
  /**
   * Where the install's Deployments and pods are, when not at our names and
   * labels (e.g. a stand-in for the Go chart's install); `rename` changes them later.
   */
  names?: SystemNames;
}

/** A Deployment name and a pod label selector per component. */
export interface SystemNames {
  deployments: Record<Component, string>;
  podSelectors: Record<Component, string>;
}

/** Our names: [DEPLOYMENTS], and pods by their app.kubernetes.io/name ([POD_LABELS]). */
export const OUR_NAMES: SystemNames = {
  deployments: DEPLOYMENTS,
  podSelectors: Object.fromEntries(
    Object.entries(POD_LABELS).map(([c, l]) => [c, `app.kubernetes.io/name=${l}`]),
  ) as Record<Component, string>,
};

export interface SystemInstall extends AsyncDisposable {
  readonly namespace: string;
  /**
   * Installed with Helm: runs helm with this cluster's kubeconfig and
   * `--namespace` of the install (and a Helm home of its own).
   */
  readonly helm?: (args: string[]) => Promise<{ code: number; out: string; err: string }>;
  /** Installed with Helm: the release name. */
  readonly release?: string;
  /** Pods of a component, oldest first (terminating ones included; see `deleting`). */
  pods(component: Component): Promise<PodInfo[]>;
  /** Ready pods of a component that are not terminating. */
  readyPods(component: Component): Promise<PodInfo[]>;
  /** Waits until the Deployment has `replicas` ready, current pods and no terminating ones. */
  waitSettled(component: Component, replicas: number, timeoutMs?: number): Promise<PodInfo[]>;
  /** Deletes a pod (graceful, as a rollout or eviction does) and waits for its replacement. */
  restartPod(component: Component, pod: string, timeoutMs?: number): Promise<PodInfo>;
  /**
   * Kills a pod's container with SIGKILL, as a crash would (local cluster
   * only: the node agent records the container's process group), and waits
   * until the restarted container is ready again.
   */
  crashPod(component: Component, pod: string, timeoutMs?: number): Promise<void>;
  /** The pod holding the operator's leader Lease. */
  operatorLeader(): Promise<string | undefined>;
  /** Our pods' states and log tails, for failure messages. */
  describe(): Promise<string>;
  /** From now on, finds the Deployments and pods at these names (after an upgrade renamed them). */
  rename(names: SystemNames): void;
  uninstall(): Promise<void>;
}

/** Deployments of the namespace that are not fully rolled out, in words ([] when all are). */
async function rolloutProblems(
  client: KubeClient,
  namespace: string,
  deployments: Record<Component, string>,
): Promise<string[]> {
  const list = await client.list<
    KubeObject & {
      spec?: { replicas?: number };
      status?: {
        readyReplicas?: number;
        updatedReplicas?: number;
        replicas?: number;
        observedGeneration?: number;
      };
    }
  >(`/apis/apps/v1/namespaces/${namespace}/deployments`);
  const problems: string[] = [];
  for (const c of Object.keys(deployments) as Component[]) {
    const d = list.items.find((x) => x.metadata?.name === deployments[c]);
    if (!d) {
      problems.push(`Deployment ${deployments[c]} missing`);
      continue;
    }
    const want = d.spec?.replicas ?? 1;
    const s = d.status ?? {};
    if (
      (s.readyReplicas ?? 0) < want || (s.updatedReplicas ?? 0) < want ||
      (s.observedGeneration ?? 0) < (d.metadata?.generation ?? 0)
    ) {
      problems.push(
        `${deployments[c]}: ${s.readyReplicas ?? 0}/${want} ready, ${
          s.updatedReplicas ?? 0
        } updated`,
      );
    }
  }
  return problems;
}

export async function installSystem(
  cluster: Cluster,
  options: InstallSystemOptions,
): Promise<SystemInstall> {
  const { namespace, client, log } = options;
  const k = (args: string[]) => kubectl(options.kubectl, cluster.kubeconfigPath, args);
  const t0 = Date.now();
  let helm: SystemInstall["helm"];
  let helmHome: string | undefined;
  const release = options.helm?.release ?? HELM_RELEASE;
  if (options.helm && options.patches?.length) {
    throw new Error(
      "installSystem: `patches` apply to the kustomize overlay, not to a helm install",
    );
  }
  if (options.helm) {
    const h = options.helm;
    const home = helmHome = await Deno.makeTempDir({ prefix: "kedahttp-e2e-helm-" });
    helm = helmRunner(h.binary, cluster.kubeconfigPath, namespace, home);
    const installed = await helm([
      "install",
      release,
      h.chart ?? CHART,
      ...helmImageValues(await imageNames(options.images)),
      ...(h.args ?? []),
    ]);
    if (installed.code !== 0) {
      // A failed install may have created some objects (release status "failed").
      await helm(["uninstall", release]).catch(() => {});
      await Deno.remove(home, { recursive: true }).catch(() => {});
      throw new Error(`helm install of the chart into ${namespace} failed:\n${installed.err}`);
    }
  } else {
    const dir = await writeOverlay(options);
    const applied = await k(["apply", "--server-side", "--force-conflicts", "-k", dir]);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    if (applied.code !== 0) {
      throw new Error(`kubectl apply -k of k8s/ into ${namespace} failed:\n${applied.err}`);
    }
  }

  let names = options.names ?? OUR_NAMES;
  const listPods = async (component: Component) => {
    const list = await client.list<PodObject>(`/api/v1/namespaces/${namespace}/pods`, {
      query: { labelSelector: names.podSelectors[component] },
    });
    return list.items.map(podInfo).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  };

  const describe = async (): Promise<string> => {
    const lines: string[] = [];
    try {
      lines.push(
        ...(await rolloutProblems(client, namespace, names.deployments)).map((p) => `- ${p}`),
      );
      const pods = await client.list<PodObject>(`/api/v1/namespaces/${namespace}/pods`);
      for (const p of pods.items) {
        const name = p.metadata?.name ?? "";
        const cs = (p.status?.containerStatuses ?? []).map((c) => {
          const [state, d] = Object.entries(c.state ?? {})[0] ?? ["unknown", {}];
          const last = c.lastState?.terminated;
          return `${c.name}: ${state}${d.reason ? ` (${d.reason})` : ""} ready=${c.ready} ` +
            `restarts=${c.restartCount}${last ? ` last exit ${last.exitCode}` : ""}`;
        });
        lines.push(
          `- pod ${name}: ${p.status?.phase}${
            p.metadata?.deletionTimestamp ? " (terminating)" : ""
          }; ${cs.join("; ")}`,
        );
        if (cluster.stateDir) {
          // The last lines, each cut short: enough to see why, not a wall of text.
          const tail = (await cluster.podLogs(namespace, name).catch(() => "")).trimEnd()
            .split("\n").slice(-8).map((l) => (l.length > 300 ? `${l.slice(0, 300)}…` : l))
            .join("\n    ");
          if (tail) lines.push(`    ${tail}`);
        }
      }
    } catch (e) {
      lines.push(`- (could not describe ${namespace}: ${(e as Error).message})`);
    }
    return lines.join("\n");
  };

  const handle: SystemInstall = {
    namespace,
    ...(helm ? { helm, release } : {}),
    pods: listPods,
    async readyPods(component) {
      return (await listPods(component)).filter((p) => p.ready && !p.deleting);
    },
    async waitSettled(component, replicas, timeoutMs = 120_000) {
      try {
        return await cluster.waitFor(async () => {
          const pods = await listPods(component);
          const live = pods.filter((p) => !p.deleting);
          return pods.length === replicas && live.length === replicas &&
            live.every((p) => p.ready) && live;
        }, {
          what: `${replicas} ready ${component} pod(s) and no others`,
          timeoutMs,
          intervalMs: 250,
        });
      } catch (e) {
        throw new Error(`${(e as Error).message}\n--- ${namespace} ---\n${await describe()}`);
      }
    },
    async restartPod(component, pod, timeoutMs = 120_000) {
      const before = new Set((await listPods(component)).map((p) => p.name));
      await client.delete(`/api/v1/namespaces/${namespace}/pods/${pod}`);
      try {
        return await cluster.waitFor(async () => {
          const pods = await listPods(component);
          return pods.find((p) => !before.has(p.name) && p.ready && !p.deleting);
        }, { what: `a ready replacement for ${component} pod ${pod}`, timeoutMs, intervalMs: 250 });
      } catch (e) {
        throw new Error(`${(e as Error).message}\n--- ${namespace} ---\n${await describe()}`);
      }
    },
    async crashPod(component, pod, timeoutMs = 120_000) {
      if (!cluster.stateDir) {
        throw new Error("crashPod needs the local cluster (the node agent's process records)");
      }
      const before = (await listPods(component)).find((p) => p.name === pod);
      if (!before) throw new Error(`no ${component} pod ${pod}`);
      const container = component;
      const pgid = Number(
        (await Deno.readTextFile(`${cluster.stateDir}/pods/${namespace}_${pod}/${container}.pid`))
          .trim(),
      );
      // The whole process group: the program and its worker processes, if any.
      Deno.kill(-pgid, "SIGKILL");
      try {
        await cluster.waitFor(async () => {
          const p = (await listPods(component)).find((x) => x.name === pod);
          return p && p.restarts > before.restarts && p.ready;
        }, { what: `${component} pod ${pod} to restart and be ready`, timeoutMs, intervalMs: 250 });
      } catch (e) {
        throw new Error(`${(e as Error).message}\n--- ${namespace} ---\n${await describe()}`);
      }
    },
    async operatorLeader() {
      // Whatever the Lease is called (KEDA_HTTP_OPERATOR_LEASE_NAME): the one
      // an operator pod holds.
      const pods = new Set((await listPods("operator")).map((p) => p.name));
      const leases = await client.list<{ spec?: { holderIdentity?: string } }>(
        `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`,
      );
      return leases.items.map((l) => l.spec?.holderIdentity ?? "").find((h) => pods.has(h));
    },
    describe,
    rename(next) {
      names = next;
    },
    async uninstall() {
      if (helm) {
        // The chart keeps the CRDs (helm.sh/resource-policy: keep); what is
        // left after it (a failed install) goes as below.
        const r = await helm(["uninstall", release]);
        if (r.code !== 0 && !/not found/.test(r.err)) {
          log.warn("helm uninstall failed", { release, namespace, error: r.err.trim() });
        }
        if (helmHome) await Deno.remove(helmHome, { recursive: true }).catch(() => {});
      }
      // Not `kubectl delete -k`: that would delete the CRD the whole cluster shares.
      await client.delete(`/api/v1/namespaces/${namespace}`).catch((e) => {
        if (!isNotFound(e)) throw e;
      });
      for (const kind of ["clusterrolebindings", "clusterroles"]) {
        const list = await client.list(`/apis/rbac.authorization.k8s.io/v1/${kind}`);
        for (const o of list.items) {
          const name = o.metadata?.name ?? "";
          if (CLUSTER_SCOPED_PREFIXES.some((p) => name.startsWith(p))) {
            await client.delete(`/apis/rbac.authorization.k8s.io/v1/${kind}/${name}`).catch(
              () => {},
            );
          }
        }
      }
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline) {
        try {
          await client.get(`/api/v1/namespaces/${namespace}`);
        } catch (e) {
          if (isNotFound(e)) return;
        }
        await sleep(500);
      }
      log.warn("our install namespace is still terminating after 90 s", { namespace });
    },
    async [Symbol.asyncDispose]() {
      await handle.uninstall();
    },
  };

  // Ready: every Deployment rolled out, and KEDA has taken the interceptor's ScaledObject.
  const timeoutMs = options.timeoutMs ?? 180_000;
  try {
    await cluster.waitFor(async () => {
      return (await rolloutProblems(client, namespace, names.deployments)).length === 0;
    }, {
      what: `our Deployments in ${namespace} to be ready`,
      timeoutMs,
      intervalMs: 500,
      signal: options.signal,
    });
    await cluster.waitFor(async () => {
      const so = await client.get<
        { status?: { conditions?: Array<{ type: string; status: string }> } }
      >(
        `/apis/keda.sh/v1alpha1/namespaces/${namespace}/scaledobjects/${INTERCEPTOR_SCALEDOBJECT}`,
      );
      return so.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
    }, {
      what: `KEDA to accept the interceptor's ScaledObject (Ready=True)`,
      timeoutMs: 60_000,
      intervalMs: 500,
      signal: options.signal,
    });
  } catch (e) {
    const text = `${(e as Error).message}\n--- ${namespace} ---\n${await describe()}`;
    await handle.uninstall().catch(() => {});
    throw new Error(text);
  }
  log.info("system installed", { namespace, by: helm ? "helm" : "kubectl", ms: Date.now() - t0 });
  return handle;
}

/**
 * Writes the kustomize overlay of k8s/ for an install (namespace, images,
 * extra patches) to a new temporary directory, which the caller removes.
 */
async function writeOverlay(
  options: Pick<InstallSystemOptions, "namespace" | "images" | "patches">,
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "kedahttp-e2e-overlay-" });
  const base = relativePath(dir, repoPath("k8s"));
  const kustomization = overlay(await imageNames(options.images), options.namespace, base);
  if (options.patches?.length) {
    kustomization.patches = [...(kustomization.patches as unknown[] ?? []), ...options.patches];
  }
  await Deno.writeTextFile(`${dir}/kustomization.yaml`, stringify(kustomization));
  return dir;
}

/** The objects `kubectl apply -k` of the install's overlay would apply (`kubectl kustomize`). */
export async function renderOverlay(
  kubectlBinary: string,
  options: Pick<InstallSystemOptions, "namespace" | "images" | "patches">,
): Promise<KubeObject[]> {
  const dir = await writeOverlay(options);
  try {
    const o = await new Deno.Command(kubectlBinary, {
      args: ["kustomize", dir],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!o.success) {
      throw new Error(`kubectl kustomize of k8s/ failed:\n${new TextDecoder().decode(o.stderr)}`);
    }
    return parseAllDocuments(new TextDecoder().decode(o.stdout)).map((d) => d.toJS() as KubeObject)
      .filter((x) => x);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** The relative path from directory `from` to `to` (both absolute). */
export function relativePath(from: string, to: string): string {
  const a = from.split("/").filter(Boolean);
  const b = to.split("/").filter(Boolean);
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return [...a.slice(i).map(() => ".."), ...b.slice(i)].join("/") || ".";
}

/**
 * Deploys the demo app `app` (at 0 replicas, routed by `host`) into `appNs`
 * and waits until every ready interceptor routes it and KEDA has accepted its
 * ScaledObject; throws if the app is not at 0 replicas then.
 */
export async function deployAppAtZero(opts: {
  cluster: Cluster;
  client: KubeClient;
  system: SystemInstall;
  access: ClusterAccess;
  /** The system's namespace (the interceptors' pods). */
  namespace: string;
  appNs: string;
  host: string;
}): Promise<void> {
  const { cluster, client, system, access, namespace, appNs } = opts;
  await cluster.applyYaml(appYaml(appNs, { name: "app", hosts: [opts.host] }), {
    namespace: appNs,
  });
  await cluster.waitFor(async () => {
    for (const pod of await system.readyPods("interceptor")) {
      const admin = await access.pod(namespace, pod.name, 9090, pod.ip);
      const r = await httpGet(admin, { host: "admin", path: "/routing_table" });
      const table = JSON.parse(r.body) as { routes: Record<string, unknown> };
      if (!table.routes[`${appNs}/app`]) return false;
    }
    return true;
  }, { what: `the interceptors to route ${appNs}/app`, timeoutMs: 60_000, intervalMs: 250 });
  await cluster.waitFor(async () => {
    const so = await client.get<
      { status?: { conditions?: Array<{ type: string; status: string }> } }
    >(`/apis/keda.sh/v1alpha1/namespaces/${appNs}/scaledobjects/app`);
    return so.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
  }, { what: "KEDA to accept the app's ScaledObject", timeoutMs: 60_000 });
  const d = await client.get<{ spec?: { replicas?: number } }>(
    `/apis/apps/v1/namespaces/${appNs}/deployments/app`,
  );
  if ((d.spec?.replicas ?? 0) !== 0) {
    throw new Error(`the app starts at ${d.spec?.replicas} replicas, not 0`);
  }
}

/**
 * The demo app deployed at 0 replicas (deployAppAtZero), then its first
 * request through the interceptor's proxy Service: held while KEDA scales
 * 0 -> 1, answered 200 by the app with `X-KEDA-HTTP-Cold-Start: true`.
 * Returns the request's time to answer, ms.
 */
export async function coldStartThroughProxy(
  opts: Parameters<typeof deployAppAtZero>[0] & { step(what: string): void },
): Promise<number> {
  opts.step(`deploy ${opts.appNs}/app at 0 replicas; wait for its route and its ScaledObject`);
  await deployAppAtZero(opts);
  opts.step("first request through the proxy Service (held while KEDA scales 0 -> 1)");
  const proxy = await opts.access.proxy(opts.namespace, PROXY_SERVICE, 8080);
  const tSent = Date.now();
  const r = await httpGet(proxy, { host: opts.host, path: "/hello", timeoutMs: 90_000 });
  const ms = Date.now() - tSent;
  if (r.status !== 200) throw new Error(`the held request: ${r.status} ${r.body.slice(0, 300)}`);
  let text: unknown;
  try {
    text = (JSON.parse(r.body) as { text?: unknown }).text;
  } catch {
    text = undefined;
  }
  if (text !== "app") throw new Error(`not the app's answer: ${r.body.slice(0, 300)}`);
  if (r.headers.get("x-keda-http-cold-start") !== "true") {
    throw new Error("the held request lacks X-KEDA-HTTP-Cold-Start: true");
  }
  return ms;
}
