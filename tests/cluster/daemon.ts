/**
 * The cluster daemon: one process that owns one cluster. It starts etcd, the
 * apiserver, controller-manager and scheduler, installs the CRDs and (with a
 * node) sets up the pod network, kube-proxy and the in-process node agent;
 * then it waits until SIGTERM/SIGINT (or, when launched by a test, until the
 * launching process is gone) and removes everything again.
 *
 *   deno run -A tests/cluster/daemon.ts --id=<id> [--node] [--no-controllers]
 *     [--parent-pid=<pid>]
 *
 * Progress and errors go to <state>/daemon.log (JSON lines) and to
 * <state>/state.json, which startCluster() polls.
 */

import { LifetimeGroup, osSignals, sleep } from "../../shared/lifetime.ts";
import { loggerFromEnv } from "../../shared/log.ts";
import { type BinaryName, findBinary } from "./binaries.ts";
import { startControlPlane } from "./control_plane.ts";
import { installCrds } from "./crds.ts";
import {
  acquireNodeNetwork,
  ensureHostTools,
  releaseNodeNetwork,
  setupHostNetwork,
  teardownHostNetwork,
} from "./network.ts";
import { NodeAgent } from "./node_agent.ts";
import { BRIDGE_IP, NODE_NAME, POD_CIDR, stateDirFor } from "./paths.ts";
import { freePort, type ManagedProcess, startProcess } from "./processes.ts";
import { readState, updateState } from "./state.ts";

function flag(name: string): string | undefined {
  for (const a of Deno.args) {
    if (a === `--${name}`) return "true";
    if (a.startsWith(`--${name}=`)) return a.slice(name.length + 3);
  }
  return undefined;
}

const id = flag("id");
if (!id) throw new Error("daemon.ts: --id=<cluster id> is required");
const node = flag("node") === "true";
const controllers = flag("no-controllers") !== "true";
const parentPid = flag("parent-pid") ? Number(flag("parent-pid")) : undefined;
const stateDir = stateDirFor(id);
const log = loggerFromEnv("cluster").with({ cluster: id });

if (!readState(id)) {
  throw new Error(
    `daemon.ts: ${stateDir}/state.json is missing; start clusters via startCluster()`,
  );
}
updateState(id, { status: "starting", daemonPid: Deno.pid });

const t0 = Date.now();
const cleanups: Array<{ what: string; run: () => Promise<void> }> = [];
const group = new LifetimeGroup();
let exitCode = 0;

function binary(name: BinaryName): string {
  const path = findBinary(name);
  if (!path) {
    throw new Error(`${name} binary not found; run tests/cluster/build_binaries.sh ${name}`);
  }
  return path;
}

async function start(): Promise<void> {
  const binaries = {
    etcd: binary("etcd"),
    "kube-apiserver": binary("kube-apiserver"),
    ...(controllers
      ? {
        "kube-controller-manager": binary("kube-controller-manager"),
        "kube-scheduler": binary("kube-scheduler"),
      }
      : {}),
  };
  const kubeProxy = node ? binary("kube-proxy") : undefined;

  if (node) {
    await ensureHostTools(log);
    await acquireNodeNetwork(id!, Deno.pid, log, {
      kubeProxy,
      onWait: (waiting) => updateState(id!, { waitingForNetwork: waiting }),
    });
    cleanups.push({
      what: "pod network",
      run: async () => {
        await teardownHostNetwork(log, kubeProxy);
        await releaseNodeNetwork(id!);
      },
    });
    // We own the network now; start from a clean slate in case a crashed
    // run left parts of it.
    await teardownHostNetwork(log, kubeProxy);
    await setupHostNetwork(log);
  }

  const cp = await startControlPlane({
    stateDir,
    binaries,
    apiAddress: node ? BRIDGE_IP : "127.0.0.1",
    controllers,
    log,
  });
  cleanups.push({ what: "control plane", run: () => cp.stop() });
  cleanups.push({ what: "client", run: () => Promise.resolve(cp.client.close()) });
  for (const p of cp.processes) watchProcess(p);

  const crds = installCrds(cp.client, log);
  if (node) {
    const agent = new NodeAgent({
      client: cp.client,
      stateDir,
      log: log.with({ part: "node-agent" }),
      caPem: await Deno.readTextFile(cp.pki.caCert),
      nodeName: NODE_NAME,
      // The apiserver's cert names the bridge IP too; reuse it for port 10250.
      servingCertPem: await Deno.readTextFile(cp.pki.servingCert),
      servingKeyPem: await Deno.readTextFile(cp.pki.servingKey),
    });
    await agent.register();
    // Stop pods before the network goes (cleanups run in reverse order).
    cleanups.push({ what: "pods", run: () => agent.stopAllPods() });
    group.add("node-agent", (signal) => agent.run(signal));

    const proxy = startProcess({
      name: "kube-proxy",
      command: kubeProxy!,
      args: [
        `--kubeconfig=${cp.kubeconfigPath}`,
        `--hostname-override=${NODE_NAME}`,
        `--cluster-cidr=${POD_CIDR}`,
        `--proxy-mode=iptables`,
        `--healthz-bind-address=127.0.0.1:${freePort()}`,
        `--metrics-bind-address=127.0.0.1:${freePort()}`,
        // Leave the host's sysctls alone (conntrack table size, timeouts,
        // route_localnet), so stopping the cluster leaves nothing changed.
        `--conntrack-max-per-core=0`,
        `--conntrack-tcp-timeout-established=0`,
        `--conntrack-tcp-timeout-close-wait=0`,
        `--iptables-localhost-nodeports=false`,
        `--iptables-min-sync-period=0s`,
        `--v=1`,
      ],
      logPath: `${stateDir}/logs/kube-proxy.log`,
      pidDir: `${stateDir}/pids`,
    });
    cleanups.push({ what: "kube-proxy", run: () => proxy.stop(5_000) });
    watchProcess(proxy);
  }
  await crds;
  updateState(id!, {
    status: "ready",
    server: cp.server,
    kubeconfigPath: cp.kubeconfigPath,
    readyAt: new Date().toISOString(),
    startupMs: Date.now() - t0,
  });
  log.info("cluster ready", { ms: Date.now() - t0, server: cp.server, node });
}

/** A control-plane process that exits on its own ends the cluster. */
function watchProcess(p: ManagedProcess): void {
  group.add(p.name, async (signal) => {
    const status = await Promise.race([
      p.status,
      new Promise<undefined>((r) => signal.addEventListener("abort", () => r(undefined))),
    ]);
    if (status) {
      throw new Error(`${p.name} exited unexpectedly (code ${status.code}); log ${p.logPath}`);
    }
  });
}

group.add(
  "signals",
  osSignals((s) => log.info("stopping on signal", { signal: s }), ["SIGTERM", "SIGINT", "SIGHUP"]),
);
if (parentPid) {
  group.add("parent", async (signal) => {
    // Tests that crash (or are killed) must not leave a cluster running.
    while (!signal.aborted) {
      try {
        Deno.statSync(`/proc/${parentPid}`);
      } catch {
        log.info("launching process is gone; stopping", { parentPid });
        return;
      }
      await sleep(500, signal);
    }
  });
}

try {
  await start();
} catch (e) {
  log.error("cluster start failed", { error: e });
  updateState(id, { status: "failed", error: (e as Error).message });
  exitCode = 1;
}

if (exitCode === 0) {
  try {
    const first = await group.run();
    log.info("cluster stopping", { because: first });
  } catch (e) {
    log.error("cluster failed", { error: e });
    exitCode = 1;
  }
}

updateState(id, { status: exitCode === 0 ? "stopping" : "failed" });
for (const c of cleanups.reverse()) {
  try {
    await c.run();
  } catch (e) {
    log.warn(`cleanup of ${c.what} failed`, { error: e });
  }
}
const keepLogs = Deno.env.get("KEDAHTTP_KEEP_CLUSTER_LOGS");
if (keepLogs) {
  const dest = `${keepLogs}/${id}`;
  await Deno.mkdir(dest, { recursive: true });
  await new Deno.Command("cp", { args: ["-r", `${stateDir}/logs`, `${stateDir}/pods`, dest] })
    .output().catch(() => {});
  log.info("kept cluster logs", { dir: dest });
}
if (exitCode === 0) {
  await Deno.remove(stateDir, { recursive: true }).catch(() => {});
} else {
  // Keep state.json (the launcher reads the error from it) and the logs; the
  // next cluster start removes the directory as a leftover.
  await Deno.remove(`${stateDir}/etcd`, { recursive: true }).catch(() => {});
}
log.info("cluster stopped", { id });
Deno.exit(exitCode);
