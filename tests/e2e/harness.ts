/**
 * The end-to-end environment: a cluster with KEDA and our system installed
 * from k8s/, and what the cases do with it: apps in fresh namespaces,
 * requests through the interceptor, waits that fail with a diagnosis, and a
 * per-case timeout that names the step that hung.
 */
import { ensureBinaries } from "../cluster/binaries.ts";
import { type Cluster, startCluster } from "../cluster/mod.ts";
import { installKeda, type KedaInstallation } from "../keda/mod.ts";
import { isNotFound, type KubeClient } from "../../shared/kube.ts";
import { sleep } from "../../shared/lifetime.ts";
import { createLogger, type Logger, loggerFromEnv } from "../../shared/log.ts";
import { parseQueueCounts, type QueueCounts } from "../../shared/queue_counts.ts";
import { ClusterAccess } from "./access.ts";
import { type AppSpec, appYaml, DeploymentWatch, diagnoseApp } from "./apps.ts";
import { httpGet, type HttpResponse, type HttpTarget } from "./http_client.ts";
import {
  ADMIN_SERVICE,
  installSystem,
  INTERCEPTOR_SCALEDOBJECT,
  POD_LABELS,
  PROXY_SERVICE,
  SCALER_SERVICE,
  systemImages,
  type SystemInstall,
} from "./system.ts";

/** Install namespace of our system (its own, so it never meets tests/deploy_test.ts's). */
export const SYSTEM_NAMESPACE = Deno.env.get("KEDAHTTP_E2E_NAMESPACE") ?? "kedahttp-e2e";

export const EXISTING = Deno.env.get("KEDAHTTP_USE_EXISTING_CLUSTER") === "true";

export function e2eLogger(component = "e2e"): Logger {
  return Deno.env.get("LOG_LEVEL")
    ? loggerFromEnv(component)
    : createLogger({ level: "info", fields: { component } });
}

export interface E2EOptions {
  log?: Logger;
}

export class E2E implements AsyncDisposable {
  readonly #namespaces = new Set<string>();
  #proxy: HttpTarget | undefined;

  private constructor(
    readonly cluster: Cluster,
    readonly keda: KedaInstallation,
    readonly system: SystemInstall,
    readonly access: ClusterAccess,
    readonly client: KubeClient,
    readonly log: Logger,
  ) {}

  /** Cluster (started, or attached), KEDA, and our system; each step's time is logged. */
  static async start(options: E2EOptions = {}): Promise<E2E> {
    const log = options.log ?? e2eLogger();
    const t0 = Date.now();
    const cluster = await startCluster();
    try {
      if (!cluster.node) {
        throw new Error(
          "the e2e suite needs a cluster that runs pods: run as root (the local node agent) or " +
            "attach to one with KEDAHTTP_USE_EXISTING_CLUSTER=true",
        );
      }
      const local = cluster.stateDir !== undefined;
      const kubectl = local
        ? (await ensureBinaries(["kubectl"])).kubectl!
        : Deno.env.get("KUBECTL") ?? "kubectl";
      const tCluster = Date.now();
      const keda = await installKeda(cluster);
      const tKeda = Date.now();
      try {
        const client = keda.client;
        // A namespace left by an interrupted run would make apply fail half-way.
        await waitNamespaceGone(client, SYSTEM_NAMESPACE, 120_000);
        await waitOtherInstallsGone(client, SYSTEM_NAMESPACE, log);
        const system = await installSystem(cluster, {
          namespace: SYSTEM_NAMESPACE,
          kubectl,
          client,
          log,
          images: systemImages(local),
        });
        const access = new ClusterAccess({
          client,
          direct: local,
          kubectl,
          kubeconfigPath: cluster.kubeconfigPath,
        });
        log.info("e2e environment ready", {
          clusterMs: tCluster - t0,
          kedaMs: tKeda - tCluster,
          kedaManaged: keda.managed,
          systemMs: Date.now() - tKeda,
        });
        return new E2E(cluster, keda, system, access, client, log);
      } catch (e) {
        await Promise.resolve(keda[Symbol.asyncDispose]()).catch(() => {});
        throw e;
      }
    } catch (e) {
      await Promise.resolve(cluster[Symbol.asyncDispose]()).catch(() => {});
      throw e;
    }
  }

  /** A fresh namespace for a case's apps; deleted (with their HTTPScaledObjects) at the end. */
  async namespace(prefix: string): Promise<string> {
    const ns = await this.cluster.createNamespace(prefix);
    this.#namespaces.add(ns);
    return ns;
  }

  /**
   * Deletes a case namespace and waits until it is gone: the operator must
   * still run to take its finalizer off the HTTPScaledObjects.
   */
  async dropNamespace(ns: string): Promise<void> {
    await this.client.delete(`/api/v1/namespaces/${ns}`).catch((e) => {
      if (!isNotFound(e)) throw e;
    });
    if (!(await waitNamespaceGone(this.client, ns, 90_000))) {
      this.log.warn("case namespace still terminating after 90 s", { namespace: ns });
    }
    this.#namespaces.delete(ns);
  }

  async deploy(ns: string, ...apps: AppSpec[]): Promise<void> {
    for (const app of apps) await this.cluster.applyYaml(appYaml(ns, app), { namespace: ns });
  }

  watch(ns: string, app: string): DeploymentWatch {
    return new DeploymentWatch(this.client, ns, app, this.log.with({ watch: `${ns}/${app}` }));
  }

  /** The interceptor proxy as clients reach it (the Service). */
  async proxy(): Promise<HttpTarget> {
    this.#proxy ??= await this.access.proxy(this.system.namespace, PROXY_SERVICE, 8080);
    return this.#proxy;
  }

  /** Each ready interceptor pod's proxy and admin addresses. */
  async interceptors(): Promise<Array<{ pod: string; proxy: HttpTarget; admin: HttpTarget }>> {
    const pods = await this.system.readyPods("interceptor");
    return await Promise.all(pods.map(async (p) => ({
      pod: p.name,
      proxy: await this.access.pod(this.system.namespace, p.name, 8080, p.ip),
      admin: await this.access.pod(this.system.namespace, p.name, 9090, p.ip),
    })));
  }

  async interceptorQueue(admin: HttpTarget): Promise<QueueCounts> {
    const r = await httpGet(admin, { host: "admin", path: "/queue", timeoutMs: 5_000 });
    return parseQueueCounts(r.body);
  }

  /** The scaler's gRPC address as KEDA uses it. */
  async scalerGrpc(): Promise<string> {
    const t = await this.access.service(this.system.namespace, SCALER_SERVICE, 9090);
    return `${t.hostname}:${t.port}`;
  }

  async scalerHttp(): Promise<HttpTarget> {
    return await this.access.service(this.system.namespace, SCALER_SERVICE, 9091);
  }

  /** The admin Service (interceptors' /queue), for completeness of diagnoses. */
  async adminService(): Promise<HttpTarget> {
    return await this.access.service(this.system.namespace, ADMIN_SERVICE, 9090);
  }

  /** Waits until every ready interceptor routes each `ns/name` with `check` true. */
  async waitRoutes(
    keys: string[],
    options: { timeoutMs?: number; check?: (route: Record<string, unknown>) => boolean } = {},
  ): Promise<void> {
    let last = "";
    await this.cluster.waitFor(async () => {
      const all = await this.interceptors();
      if (!all.length) {
        last = "no ready interceptor";
        return false;
      }
      for (const i of all) {
        const r = await httpGet(i.admin, {
          host: "admin",
          path: "/routing_table",
          timeoutMs: 5_000,
        });
        const table = JSON.parse(r.body) as { routes: Record<string, Record<string, unknown>> };
        for (const key of keys) {
          const route = table.routes[key];
          if (!route || (options.check && !options.check(route))) {
            last = `interceptor ${i.pod} routes: ${Object.keys(table.routes).join(", ") || "none"}`;
            return false;
          }
        }
      }
      return true;
    }, {
      what: `interceptors to route ${keys.join(", ")}`,
      timeoutMs: options.timeoutMs ?? 60_000,
      intervalMs: 250,
    }).catch((e) => {
      throw new Error(`${(e as Error).message} (${last})`);
    });
  }

  /** One request through the proxy Service. */
  async get(
    host: string,
    path: string,
    options: { headers?: Record<string, string>; timeoutMs?: number; via?: HttpTarget } = {},
  ): Promise<HttpResponse> {
    return await httpGet(options.via ?? (await this.proxy()), {
      host,
      path,
      headers: options.headers,
      timeoutMs: options.timeoutMs ?? 90_000,
    });
  }

  /** Polls a request until `ok` holds (for changes that propagate). */
  async until(
    what: string,
    host: string,
    path: string,
    ok: (r: HttpResponse) => boolean,
    options: { headers?: Record<string, string>; timeoutMs?: number } = {},
  ): Promise<HttpResponse> {
    let last = "no answer";
    return await this.cluster.waitFor(async () => {
      const r = await this.get(host, path, { headers: options.headers, timeoutMs: 60_000 });
      last = `${r.status} ${r.body.slice(0, 200).trim()}`;
      return ok(r) && r;
    }, { what, timeoutMs: options.timeoutMs ?? 60_000, intervalMs: 500 }).catch((e) => {
      throw new Error(`${(e as Error).message}; last answer: ${last}`);
    });
  }

  /** Sets the interceptor's minimum replica count (its ScaledObject, as users do) and waits. */
  async interceptorReplicas(n: number): Promise<void> {
    await this.client.patch(
      `/apis/keda.sh/v1alpha1/namespaces/${this.system.namespace}/scaledobjects/${INTERCEPTOR_SCALEDOBJECT}`,
      { spec: { minReplicaCount: n } },
      { contentType: "application/merge-patch+json" },
    );
    await this.system.waitSettled("interceptor", n, 180_000);
  }

  /** The app's state, KEDA's and ours, for a failure message. */
  async diagnose(ns: string, app: string): Promise<string> {
    const parts = [await diagnoseApp(this.client, ns, app)];
    try {
      const scaler = await this.scalerHttp();
      const q = await httpGet(scaler, { host: "scaler", path: "/queue", timeoutMs: 5_000 });
      parts.push(`scaler /queue: ${q.body.trim().slice(0, 400)}`);
    } catch (e) {
      parts.push(`scaler /queue: ${(e as Error).message}`);
    }
    return parts.join("\n");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    // Apps first, while the operator runs (HTTPScaledObject finalizers) and
    // KEDA runs (ScaledObject finalizers); then our system; then KEDA.
    for (const ns of [...this.#namespaces]) {
      await this.dropNamespace(ns).catch((e) =>
        this.log.warn("deleting a case namespace failed", { namespace: ns, error: e })
      );
    }
    await this.access[Symbol.asyncDispose]();
    await this.system.uninstall().catch((e) =>
      this.log.warn("uninstalling our system failed", { error: e })
    );
    await Promise.resolve(this.keda[Symbol.asyncDispose]()).catch((e: unknown) =>
      this.log.warn("uninstalling KEDA failed", { error: e })
    );
    await this.cluster[Symbol.asyncDispose]();
  }
}

/**
 * Every operator reconciles every HTTPScaledObject it can see, so a second
 * install (another test's, still terminating) would fight ours over the
 * ScaledObjects. Waits for terminating ones; refuses to run beside a live one.
 */
async function waitOtherInstallsGone(client: KubeClient, ours: string, log: Logger): Promise<void> {
  const selector = `app.kubernetes.io/name in (${Object.values(POD_LABELS).join(",")})`;
  const deadline = Date.now() + 120_000;
  let told = false;
  while (true) {
    const pods = (await client.list<
      { metadata?: { namespace?: string; name?: string; deletionTimestamp?: string } }
    >("/api/v1/pods", { query: { labelSelector: selector } })).items.filter((p) =>
      p.metadata?.namespace !== ours
    );
    if (!pods.length) return;
    const namespaces = [...new Set(pods.map((p) => p.metadata?.namespace ?? ""))];
    const terminating = await Promise.all(namespaces.map(async (ns) => {
      const o = await client.get<{ status?: { phase?: string } }>(`/api/v1/namespaces/${ns}`)
        .catch(() => undefined);
      return !o || o.status?.phase === "Terminating";
    }));
    const live = namespaces.filter((_, i) => !terminating[i]);
    if (live.length) {
      throw new Error(
        `another install of the add-on runs in namespace(s) ${live.join(", ")}: its operator ` +
          `would reconcile the suite's HTTPScaledObjects too; remove it (or use a cluster of ` +
          `your own) and run again`,
      );
    }
    if (Date.now() > deadline) {
      throw new Error(
        `pods of a previous install in ${namespaces.join(", ")} are still terminating after 120 s`,
      );
    }
    if (!told) {
      log.info("waiting for another install of the add-on to finish terminating", { namespaces });
      told = true;
    }
    await sleep(500);
  }
}

export async function waitNamespaceGone(
  client: KubeClient,
  ns: string,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      await client.get(`/api/v1/namespaces/${ns}`);
    } catch (e) {
      if (isNotFound(e)) return true;
    }
    await sleep(500);
  }
  return false;
}

/** What a case gets: a signal aborted on timeout, and a way to say where it is. */
export interface CaseContext {
  signal: AbortSignal;
  /** Names the current step; a timeout message quotes the last one. */
  step(text: string): void;
}

/**
 * Runs a case with a timeout. On timeout the signal aborts (load stops) and
 * the error names the case, the step it was in and `diagnose()`'s output.
 */
export async function withTimeout(
  name: string,
  timeoutMs: number,
  fn: (ctx: CaseContext) => Promise<void>,
  diagnose: () => Promise<string> = () => Promise.resolve(""),
): Promise<void> {
  const controller = new AbortController();
  let step = "starting";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort(new Error(`case "${name}" timed out`));
      reject(new Error(`case "${name}" did not finish within ${timeoutMs / 1000} s`));
    }, timeoutMs);
  });
  try {
    await Promise.race([fn({ signal: controller.signal, step: (s) => (step = s) }), timeout]);
  } catch (e) {
    const detail = await diagnose().catch((d) => `(diagnosis failed: ${(d as Error).message})`);
    const err = new Error(
      `${(e as Error).message}\n  case: ${name}\n  step: ${step}${detail ? `\n${detail}` : ""}`,
      { cause: e },
    );
    throw err;
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}
