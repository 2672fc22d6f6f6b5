/**
 * state.json of one cluster (STATE_ROOT/<id>/state.json): who runs it and
 * whether it is ready. Written by the launcher first, then by the daemon.
 */

import { aliveWith } from "./processes.ts";
import { STATE_ROOT, stateDirFor } from "./paths.ts";

export type ClusterStatus = "launching" | "starting" | "ready" | "failed" | "stopping";

export interface ClusterState {
  id: string;
  status: ClusterStatus;
  /** The process that asked for the cluster (startCluster / `cluster up`). */
  launcherPid: number;
  /** The cluster daemon (tests/cluster/daemon.ts), once started. */
  daemonPid?: number;
  node: boolean;
  controllers: boolean;
  detached: boolean;
  server?: string;
  kubeconfigPath?: string;
  error?: string;
  /** True while the daemon waits for another cluster to free the pod network. */
  waitingForNetwork?: boolean;
  startedAt: string;
  readyAt?: string;
  startupMs?: number;
}

export function statePath(id: string): string {
  return `${stateDirFor(id)}/state.json`;
}

export function readState(id: string): ClusterState | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(statePath(id))) as ClusterState;
  } catch {
    return undefined;
  }
}

/** Atomic write (rename), so readers never see half a file. */
export function writeState(state: ClusterState): void {
  const path = statePath(state.id);
  Deno.writeTextFileSync(`${path}.tmp`, JSON.stringify(state, null, 2));
  Deno.renameSync(`${path}.tmp`, path);
}

export function updateState(id: string, patch: Partial<ClusterState>): ClusterState | undefined {
  const s = readState(id);
  if (!s) return undefined;
  const next = { ...s, ...patch };
  writeState(next);
  return next;
}

/** True when the daemon (or, before it exists, the launcher) of a cluster runs. */
export function isLive(id: string): boolean {
  const s = readState(id);
  const dir = stateDirFor(id);
  if (!s) {
    // A directory without state.json may be one being created right now.
    try {
      const age = Date.now() - (Deno.statSync(dir).mtime?.getTime() ?? 0);
      return age < 30_000;
    } catch {
      return false;
    }
  }
  // The daemon's command line carries --id=<id> (not the state dir path).
  if (s.daemonPid && aliveWith(s.daemonPid, `--id=${id} `)) return true;
  if (s.status === "launching") {
    try {
      Deno.statSync(`/proc/${s.launcherPid}`);
      return true;
    } catch {
      return false;
    }
  }
  return false;
}

/** Ids of all clusters with a state dir (live or not). */
export function listClusterIds(): string[] {
  try {
    return [...Deno.readDirSync(STATE_ROOT)].filter((e) => e.isDirectory).map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}
