/**
 * Removes what crashed clusters left behind: their processes (from pid files,
 * checked against the command line), state dirs, and — when the owner of the
 * pod network is dead — its netns, veths, bridge and iptables rules. Live
 * clusters (other test runs, the dev cluster) are never touched.
 */

import type { Logger } from "../../shared/log.ts";
import { findBinary } from "./binaries.ts";
import { cleanupDeadNodeNetwork } from "./network.ts";
import { POD_PROCESS_MARKER } from "./node_agent.ts";
import { killRecorded } from "./processes.ts";
import { stateDirFor } from "./paths.ts";
import { isLive, listClusterIds } from "./state.ts";

/**
 * Kills the process groups of a dead cluster's containers (pid files in
 * pods/<ns>_<pod>/), checked by the marker in their environment.
 */
function killPodProcesses(dir: string): number[] {
  const killed: number[] = [];
  let pods: Deno.DirEntry[] = [];
  try {
    pods = [...Deno.readDirSync(`${dir}/pods`)];
  } catch {
    return killed;
  }
  for (const pod of pods) {
    let files: Deno.DirEntry[] = [];
    try {
      files = [...Deno.readDirSync(`${dir}/pods/${pod.name}`)];
    } catch {
      continue;
    }
    for (const f of files.filter((f) => f.name.endsWith(".pid"))) {
      try {
        const pid = Number(Deno.readTextFileSync(`${dir}/pods/${pod.name}/${f.name}`).trim());
        const environ = Deno.readTextFileSync(`/proc/${pid}/environ`);
        if (pid > 1 && environ.includes(`${POD_PROCESS_MARKER}=${dir}\0`)) {
          Deno.kill(-pid, "SIGKILL");
          killed.push(pid);
        }
      } catch {
        // Gone already or not ours.
      }
    }
  }
  return killed;
}

export async function cleanupLeftovers(log: Logger, except?: string): Promise<string[]> {
  const removed: string[] = [];
  for (const id of listClusterIds()) {
    if (id === except || isLive(id)) continue;
    const dir = stateDirFor(id);
    const killed = [...await killRecorded(`${dir}/pids`, dir), ...killPodProcesses(dir)];
    if (killed.length) log.info("killed processes of a dead cluster", { id, pids: killed });
    await Deno.remove(dir, { recursive: true }).catch((e) =>
      log.warn("could not remove a leftover state dir", { dir, error: e })
    );
    removed.push(id);
  }
  let kubeProxy: string | undefined;
  try {
    kubeProxy = findBinary("kube-proxy");
  } catch {
    // A bad TEST_ASSET_KUBE_PROXY only costs the kube-proxy --cleanup step.
  }
  await cleanupDeadNodeNetwork(log, kubeProxy);
  if (removed.length) log.info("removed leftovers of dead clusters", { ids: removed });
  return removed;
}
