/**
 * A real Kubernetes cluster on this machine for tests, without Docker.
 *
 *   await using cluster = await startCluster();            // with a node
 *   await using cp = await startCluster({ node: false });  // control plane only
 *
 * With KEDAHTTP_TEST_KUBECONFIG set (by `deno task test` or `deno task
 * cluster up`), startCluster attaches to that cluster and disposing it only
 * deletes the namespaces the test created. With KEDAHTTP_USE_EXISTING_CLUSTER
 * =true and KUBECONFIG, it attaches to any existing cluster (e.g. kind).
 * Otherwise it launches tests/cluster/daemon.ts, which owns the cluster and
 * stops it when disposed (or when this process dies). See README.md.
 */

import { KubeConfig } from "@kubernetes/client-node";
import { sleep } from "../../shared/lifetime.ts";
import { createLogger, type Logger, loggerFromEnv } from "../../shared/log.ts";
import { type BinaryName, ensureBinaries } from "./binaries.ts";
import { cleanupLeftovers } from "./cleanup.ts";
import { KubeClient, type KubeObject } from "./kube_client.ts";
import { CLUSTER_DIR, REPO_ROOT, stateDirFor } from "./paths.ts";
import { type ClusterState, readState, writeState } from "./state.ts";

export { KubeClient, KubeError, parseManifests } from "./kube_client.ts";
export type { KubeObject, WatchEvent } from "./kube_client.ts";

export interface StartClusterOptions {
  signal?: AbortSignal;
  /** Run the node agent, kube-proxy and the pod network (needs root). Default true. */
  node?: boolean;
  /** Run kube-controller-manager and kube-scheduler. Default true. */
  controllers?: boolean;
  /** Survive this process (used by `deno task cluster up`). Default false. */
  detached?: boolean;
  /** Cluster id (state dir name); default a fresh unique one. */
  id?: string;
  /** Start-up timeout once binaries exist. Default 120 s. */
  timeoutMs?: number;
  log?: Logger;
}

export interface WaitForOptions {
  /** Default 30 s. */
  timeoutMs?: number;
  /** Default 200 ms. */
  intervalMs?: number;
  /** What is awaited, for the timeout message ("2 ready pods"). */
  what: string;
  signal?: AbortSignal;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Cluster extends AsyncDisposable {
  /** Cluster id; undefined when attached to a cluster not started by us. */
  readonly id: string | undefined;
  /** True when attached to a cluster someone else owns (dispose is a no-op). */
  readonly attached: boolean;
  /** True when pods actually run (a node agent or a real cluster). */
  readonly node: boolean;
  /** STATE_ROOT/<id>, when the cluster is one of ours. */
  readonly stateDir: string | undefined;
  readonly kubeconfigPath: string;
  /** @kubernetes/client-node config, ready for makeApiClient / Watch. */
  readonly kubeConfig: KubeConfig;
  /** The apiserver URL. */
  readonly server: string;
  /** The small fetch-based client the cluster tooling uses. */
  readonly client: KubeClient;
  /** Server-side applies YAML text or objects; returns the applied objects. */
  applyYaml(
    input: string | KubeObject | KubeObject[],
    options?: { namespace?: string },
  ): Promise<KubeObject[]>;
  /** Polls fn until it returns a truthy value; throws a clear error on timeout. */
  waitFor<T>(
    fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
    options: WaitForOptions,
  ): Promise<T>;
  /** Creates a fresh namespace (deleted on dispose); returns its name. */
  createNamespace(prefix?: string): Promise<string>;
  /** Where the node agent writes a container's stdout/stderr. */
  podLogPath(namespace: string, pod: string, container?: string): string;
  /** That log file's text ("" when it does not exist yet). */
  podLogs(namespace: string, pod: string, container?: string): Promise<string>;
  /** The network namespace of a running pod (`ip netns exec <it> …`). */
  podNetns(namespace: string, pod: string): Promise<string>;
  /**
   * Runs a command in a pod (like `kubectl exec`): in the network and mount
   * namespace of its first (or the named) container; the file system is the
   * host's plus the pod's volume mounts.
   */
  execInPod(
    namespace: string,
    pod: string,
    command: string[],
    options?: { container?: string },
  ): Promise<ExecResult>;
  stop(): Promise<void>;
}

/** Polls fn until it returns a truthy value; throws a clear error on timeout. */
export async function waitFor<T>(
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  options: WaitForOptions,
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (true) {
    options.signal?.throwIfAborted();
    try {
      const v = await fn();
      if (v) return v;
      lastError = undefined;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() >= deadline) {
      const detail = lastError ? `; last error: ${(lastError as Error).message ?? lastError}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${options.what}${detail}`);
    }
    await sleep(options.intervalMs ?? 200, options.signal);
  }
}

function quietLogger(): Logger {
  return Deno.env.get("LOG_LEVEL") ? loggerFromEnv("cluster") : createLogger({
    level: "warn",
    fields: { component: "cluster" },
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

function randomSuffix(n = 6): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return [...bytes].map((b) => alphabet[b % alphabet.length]).join("");
}

export async function startCluster(options: StartClusterOptions = {}): Promise<Cluster> {
  const attachTo = Deno.env.get("KEDAHTTP_TEST_KUBECONFIG");
  if (attachTo) return await attach(attachTo);
  const kubeconfig = Deno.env.get("KUBECONFIG");
  if (Deno.env.get("KEDAHTTP_USE_EXISTING_CLUSTER") === "true") {
    if (!kubeconfig) {
      throw new Error(
        "KEDAHTTP_USE_EXISTING_CLUSTER=true needs KUBECONFIG to point at the cluster",
      );
    }
    return await attach(kubeconfig.split(":")[0]!);
  }
  return await launchCluster(options);
}

/** Attaches to a running cluster by kubeconfig; dispose deletes only our namespaces. */
async function attach(kubeconfigPath: string): Promise<Cluster> {
  const dir = kubeconfigPath.replace(/\/[^/]*$/, "");
  let state: ClusterState | undefined;
  try {
    state = JSON.parse(await Deno.readTextFile(`${dir}/state.json`)) as ClusterState;
  } catch {
    // Not one of ours (e.g. kind).
  }
  return await makeCluster({
    id: state?.id,
    attached: true,
    node: state ? state.node : true,
    controllers: state ? state.controllers : true,
    stateDir: state ? dir : undefined,
    kubeconfigPath,
    stopDaemon: async () => {},
  });
}

/** Always starts a new cluster (ignores KEDAHTTP_TEST_KUBECONFIG); see startCluster. */
export async function launchCluster(options: StartClusterOptions = {}): Promise<Cluster> {
  const log = options.log ?? quietLogger();
  const node = options.node ?? true;
  const controllers = options.controllers ?? true;
  const id = options.id ?? `t-${Date.now().toString(36)}-${randomSuffix()}`;
  const stateDir = stateDirFor(id);
  const t0 = Date.now();

  await cleanupLeftovers(log);
  if (readState(id)) {
    throw new Error(
      `a cluster with id "${id}" is already running (${stateDir}); stop it first ` +
        `(deno task cluster down) or attach with KEDAHTTP_TEST_KUBECONFIG=${stateDir}/kubeconfig`,
    );
  }
  const needed: BinaryName[] = ["etcd", "kube-apiserver"];
  if (controllers) needed.push("kube-controller-manager", "kube-scheduler");
  if (node) needed.push("kube-proxy");
  await ensureBinaries(needed, { signal: options.signal });
  const tBinaries = Date.now();

  await Deno.mkdir(`${stateDir}/logs`, { recursive: true });
  writeState({
    id,
    status: "launching",
    launcherPid: Deno.pid,
    node,
    controllers,
    detached: options.detached ?? false,
    startedAt: new Date().toISOString(),
  });
  const daemonLog = `${stateDir}/daemon.log`;
  const daemonArgs = [
    "run",
    "-A",
    "--quiet",
    `--config=${REPO_ROOT}/deno.json`,
    `${CLUSTER_DIR}/daemon.ts`,
    `--id=${id}`,
    ...(node ? ["--node"] : []),
    ...(controllers ? [] : ["--no-controllers"]),
    ...(options.detached ? [] : [`--parent-pid=${Deno.pid}`]),
  ];
  const argv = [
    ...(options.detached ? ["setsid"] : []),
    "sh",
    "-c",
    `exec "$@" >>'${daemonLog}' 2>&1`,
    "sh",
    Deno.execPath(),
    ...daemonArgs,
  ];
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited: Deno.CommandStatus | undefined;
  const status = child.status.then((s) => (exited = s));
  if (options.detached) child.unref();

  const stopDaemon = async () => {
    try {
      Deno.kill(child.pid, "SIGTERM");
    } catch {
      // Already gone.
    }
    const deadline = Date.now() + 60_000;
    while (!exited && Date.now() < deadline) await sleep(50);
    if (!exited) {
      try {
        Deno.kill(child.pid, "SIGKILL");
      } catch {
        // Gone.
      }
      await status;
      await cleanupLeftovers(log);
    }
  };

  const tail = async () => {
    try {
      return (await Deno.readTextFile(daemonLog)).split("\n").slice(-30).join("\n");
    } catch {
      return "(no daemon log)";
    }
  };
  const timeoutMs = options.timeoutMs ?? 120_000;
  let deadlineBase = tBinaries;
  let toldWaiting = false;
  try {
    while (true) {
      options.signal?.throwIfAborted();
      const s = readState(id);
      if (s?.status === "ready") break;
      if (s?.status === "failed") {
        throw new Error(
          `cluster failed to start: ${s.error}\n--- ${daemonLog} ---\n${await tail()}`,
        );
      }
      if (exited) {
        throw new Error(
          `cluster daemon exited (code ${exited.code}) before the cluster was ready\n` +
            `--- ${daemonLog} ---\n${await tail()}`,
        );
      }
      // Waiting for another cluster to release the pod network is not start-up.
      if (s?.waitingForNetwork) {
        deadlineBase = Date.now();
        if (!toldWaiting) {
          log.warn(
            "another local cluster with a node is running; waiting for it to stop " +
              "(KEDAHTTP_NODE_WAIT_MS, default 10 min) " +
              "(share one instead: deno task cluster up + KEDAHTTP_TEST_KUBECONFIG)",
            { id },
          );
          toldWaiting = true;
        }
      }
      if (Date.now() - deadlineBase > timeoutMs) {
        throw new Error(
          `cluster not ready within ${timeoutMs} ms\n--- ${daemonLog} ---\n${await tail()}`,
        );
      }
      await sleep(50, options.signal);
    }
  } catch (e) {
    await stopDaemon();
    throw e;
  }
  log.info("cluster started", { id, ms: Date.now() - t0 });
  const state = readState(id)!;
  return await makeCluster({
    id,
    attached: false,
    node,
    controllers,
    stateDir,
    kubeconfigPath: state.kubeconfigPath!,
    stopDaemon,
  });
}

interface MakeClusterInput {
  id: string | undefined;
  attached: boolean;
  node: boolean;
  /** kube-controller-manager runs (namespaces get a default ServiceAccount). */
  controllers: boolean;
  stateDir: string | undefined;
  kubeconfigPath: string;
  stopDaemon: () => Promise<void>;
}

async function makeCluster(input: MakeClusterInput): Promise<Cluster> {
  const client = await KubeClient.fromKubeconfig(input.kubeconfigPath);
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(input.kubeconfigPath);
  const namespaces: string[] = [];
  let stopped = false;

  const needState = (what: string): string => {
    if (!input.stateDir) {
      throw new Error(
        `${what} only works with clusters started by tests/cluster (not ${input.kubeconfigPath})`,
      );
    }
    return input.stateDir;
  };
  const podLogPath = (namespace: string, pod: string, container?: string): string => {
    const dir = `${needState("podLogPath")}/pods/${namespace}_${pod}`;
    if (container) return `${dir}/${container}.log`;
    try {
      const first = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".log"))
        .sort()[0];
      if (first) return `${dir}/${first}`;
    } catch {
      // Pod not started yet.
    }
    return `${dir}/(container).log`;
  };
  const podNetns = async (namespace: string, pod: string): Promise<string> => {
    const file = `${needState("podNetns")}/pods/${namespace}_${pod}/netns`;
    try {
      return (await Deno.readTextFile(file)).trim();
    } catch {
      throw new Error(
        `pod ${namespace}/${pod} has no network namespace (not running on our node?)`,
      );
    }
  };

  const cluster: Cluster = {
    id: input.id,
    attached: input.attached,
    node: input.node,
    stateDir: input.stateDir,
    kubeconfigPath: input.kubeconfigPath,
    kubeConfig,
    server: client.server,
    client,
    applyYaml: (text, options = {}) => client.apply(text, { namespace: options.namespace }),
    waitFor,
    async createNamespace(prefix = "test") {
      const name = `${prefix}-${randomSuffix()}`;
      await client.create("/api/v1/namespaces", {
        apiVersion: "v1",
        kind: "Namespace",
        metadata: { name, labels: { "keda-http-deno/test": "true" } },
      });
      namespaces.push(name);
      if (input.controllers) {
        // Pods are rejected until the serviceaccount controller has made the
        // namespace's "default" ServiceAccount; tests should not race it.
        await waitFor(
          () => client.getOrUndefined(`/api/v1/namespaces/${name}/serviceaccounts/default`),
          { what: `ServiceAccount ${name}/default`, timeoutMs: 15_000, intervalMs: 50 },
        );
      }
      return name;
    },
    podLogPath,
    async podLogs(namespace, pod, container) {
      try {
        return await Deno.readTextFile(podLogPath(namespace, pod, container));
      } catch {
        return "";
      }
    },
    podNetns,
    async execInPod(namespace, pod, command, options = {}) {
      const dir = `${needState("execInPod")}/pods/${namespace}_${pod}`;
      // Enter a container's mount namespace too, so its volume mounts
      // (service account token, …) and /etc/hosts are what the command sees.
      let pid: string | undefined;
      try {
        const pidFiles = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
          n.endsWith(".pid")
        ).sort();
        const file = options.container ? `${options.container}.pid` : pidFiles[0];
        if (file) pid = (await Deno.readTextFile(`${dir}/${file}`)).trim();
      } catch {
        // Not started: fall back to the netns below (which then fails clearly).
      }
      const inContainer = pid !== undefined && (await exists(`/proc/${pid}`));
      const args = inContainer
        ? ["nsenter", `--target=${pid}`, "--mount", "--net", "--", ...command]
        : ["ip", "netns", "exec", await podNetns(namespace, pod), ...command];
      // The container's own environment (KUBERNETES_SERVICE_HOST, its env:).
      let env: Record<string, string> | undefined;
      if (inContainer) {
        try {
          env = Object.fromEntries(
            (await Deno.readTextFile(`/proc/${pid}/environ`)).split("\0").filter(Boolean).map(
              (kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)],
            ),
          );
        } catch {
          // Exited meanwhile; nsenter fails below and says so.
        }
      }
      const out = await new Deno.Command(args[0]!, {
        args: args.slice(1),
        ...(env ? { env, clearEnv: true } : {}),
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      return {
        code: out.code,
        stdout: new TextDecoder().decode(out.stdout),
        stderr: new TextDecoder().decode(out.stderr),
      };
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (input.attached) {
        // Someone else owns the cluster: only remove what this test made.
        await Promise.all(
          namespaces.map((n) => client.delete(`/api/v1/namespaces/${n}`).catch(() => {})),
        );
      }
      client.close();
      await input.stopDaemon();
    },
    async [Symbol.asyncDispose]() {
      await cluster.stop();
    },
  };
  return cluster;
}
