/**
 * deno task cluster up|down|status|kubectl
 *
 *   up [--no-node] [--no-controllers]  start the dev cluster in the background;
 *                                      the last line printed is
 *                                      `export KUBECONFIG=<path>`
 *   down [--all]                       stop it (--all: every local cluster) and
 *                                      remove leftovers of crashed runs
 *   status                             what runs, where its logs are
 *   kubectl <args…>                    kubectl (built on first use) against the
 *                                      dev cluster (or $KUBECONFIG)
 */

import { sleep } from "../../shared/lifetime.ts";
import { loggerFromEnv } from "../../shared/log.ts";
import { ensureBinaries } from "./binaries.ts";
import { cleanupLeftovers } from "./cleanup.ts";
import { launchCluster } from "./mod.ts";
import { listPodNetns } from "./network.ts";
import { DEV_CLUSTER_ID, NODE_OWNER_FILE, STATE_ROOT, stateDirFor } from "./paths.ts";
import { aliveWith } from "./processes.ts";
import { isLive, listClusterIds, readState } from "./state.ts";

const log = loggerFromEnv("cluster-cli");
const encoder = new TextEncoder();
const out = (line: string) => Deno.stdout.writeSync(encoder.encode(line + "\n"));
const err = (line: string) => Deno.stderr.writeSync(encoder.encode(line + "\n"));

async function up(args: string[]): Promise<number> {
  const existing = readState(DEV_CLUSTER_ID);
  if (existing && isLive(DEV_CLUSTER_ID) && existing.status === "ready") {
    err(`dev cluster already running (${existing.server}); logs in ${stateDirFor(DEV_CLUSTER_ID)}`);
    out(`export KUBECONFIG=${existing.kubeconfigPath}`);
    return 0;
  }
  const t0 = Date.now();
  const cluster = await launchCluster({
    id: DEV_CLUSTER_ID,
    detached: true,
    node: !args.includes("--no-node"),
    controllers: !args.includes("--no-controllers"),
    log,
  });
  const dir = cluster.stateDir!;
  err(`cluster ready in ${((Date.now() - t0) / 1000).toFixed(1)}s: ${cluster.server}`);
  err(`  logs:       ${dir}/logs/ (control plane), ${dir}/pods/<ns>_<pod>/<container>.log`);
  err(`  stop with:  deno task cluster down`);
  err(`  kubectl:    deno task cluster kubectl get pods -A`);
  cluster.client.close();
  out(`export KUBECONFIG=${cluster.kubeconfigPath}`);
  return 0;
}

async function stopDaemon(id: string): Promise<boolean> {
  const s = readState(id);
  if (!s?.daemonPid || !aliveWith(s.daemonPid, `--id=${id} `)) return false;
  Deno.kill(s.daemonPid, "SIGTERM");
  const deadline = Date.now() + 60_000;
  while (aliveWith(s.daemonPid, `--id=${id} `) && Date.now() < deadline) await sleep(100);
  if (aliveWith(s.daemonPid, `--id=${id} `)) {
    log.warn("cluster daemon did not stop in 60s; killing it", { id, pid: s.daemonPid });
    Deno.kill(s.daemonPid, "SIGKILL");
    await sleep(200);
  }
  return true;
}

async function down(args: string[]): Promise<number> {
  const ids = args.includes("--all") ? listClusterIds() : [DEV_CLUSTER_ID];
  for (const id of ids) {
    if (await stopDaemon(id)) err(`stopped cluster ${id}`);
  }
  const removed = await cleanupLeftovers(log);
  if (removed.length) err(`removed leftovers: ${removed.join(", ")}`);
  const left = listClusterIds().filter(isLive);
  if (left.length) err(`still running (not ours to stop without --all): ${left.join(", ")}`);
  return 0;
}

async function status(): Promise<number> {
  const ids = listClusterIds();
  if (!ids.length) out(`no clusters (state root ${STATE_ROOT})`);
  for (const id of ids) {
    const s = readState(id);
    const live = isLive(id);
    out(
      `${id}: ${
        live ? s?.status ?? "starting" : "dead (leftover; removed by the next start or down)"
      }` +
        (s ? ` node=${s.node} daemon=${s.daemonPid ?? "-"}` : ""),
    );
    if (s?.server) out(`  server:     ${s.server}`);
    if (s?.kubeconfigPath) out(`  kubeconfig: ${s.kubeconfigPath}`);
    if (s?.startupMs) out(`  started in: ${(s.startupMs / 1000).toFixed(1)}s at ${s.startedAt}`);
    out(`  logs:       ${stateDirFor(id)}/daemon.log, logs/, pods/`);
    if (s?.error) out(`  error:      ${s.error}`);
  }
  try {
    out(`pod network owner: ${Deno.readTextFileSync(NODE_OWNER_FILE)}`);
  } catch {
    out("pod network: not in use");
  }
  const netns = await listPodNetns();
  if (netns.length) out(`pod network namespaces: ${netns.join(" ")}`);
  return 0;
}

async function kubectl(args: string[]): Promise<number> {
  const { kubectl: bin } = await ensureBinaries(["kubectl"]);
  const env: Record<string, string> = {};
  if (!Deno.env.get("KUBECONFIG")) {
    const s = readState(DEV_CLUSTER_ID);
    if (!s?.kubeconfigPath) {
      err("no dev cluster; run `deno task cluster up` first or set KUBECONFIG");
      return 1;
    }
    env.KUBECONFIG = s.kubeconfigPath;
  }
  const res = await new Deno.Command(bin!, { args, env, stdin: "inherit" }).spawn().status;
  return res.code;
}

const [cmd, ...rest] = Deno.args;
let code: number;
switch (cmd) {
  case "up":
    code = await up(rest);
    break;
  case "down":
    code = await down(rest);
    break;
  case "status":
    code = await status();
    break;
  case "kubectl":
    code = await kubectl(rest);
    break;
  default:
    err("usage: deno task cluster up [--no-node] | down [--all] | status | kubectl <args…>");
    code = 2;
}
Deno.exit(code);
