/**
 * Removes what crashed clusters left behind: their processes (from pid files,
 * checked against the command line), state dirs, and — when the owner of the
 * pod network is dead — its netns, veths, bridge and iptables rules. Live
 * clusters (other test runs, the dev cluster) are never touched.
 */

import type { Logger } from "../../shared/log.ts";
import { findBinary } from "./binaries.ts";
import { cleanupDeadNodeNetwork } from "./network.ts";
import { killRecorded } from "./processes.ts";
import { stateDirFor } from "./paths.ts";
import { isLive, listClusterIds } from "./state.ts";

export async function cleanupLeftovers(log: Logger, except?: string): Promise<string[]> {
  const removed: string[] = [];
  for (const id of listClusterIds()) {
    if (id === except || isLive(id)) continue;
    const dir = stateDirFor(id);
    const killed = await killRecorded(`${dir}/pids`, dir);
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
