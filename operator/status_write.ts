/**
 * The one way the operator writes a status: a merge patch of /status that
 * carries the resourceVersion it was computed from, only when it differs;
 * on a conflict the object is read again and the status recomputed, unless
 * its generation moved on (then its own watch event queued it again).
 */
import { isConflict, isNotFound, type KubeClient, type KubeObject } from "../shared/kube.ts";

export interface StatusWrite<T extends KubeObject> {
  client: KubeClient;
  /** The object's path (its /status is patched). */
  path: string;
  current: T;
  /** The status to write for this version of the object; null when it already has it. */
  desired(current: T): unknown | null;
  /** Throws when this process may not write (leader election). */
  guard(): void;
  /** Remembers an object just written or read (the fresh-store overlay). */
  wrote(obj: T): void;
  /** Counts a write. */
  counted(): void;
  fieldManager: string;
  signal: AbortSignal;
}

/** True when it wrote; false when nothing had to change or the object is gone. */
export async function writeStatus<T extends KubeObject>(w: StatusWrite<T>): Promise<boolean> {
  let current = w.current;
  for (let attempt = 0;; attempt++) {
    const status = w.desired(current);
    if (status === null) return false;
    w.guard();
    try {
      const updated = await w.client.patch<T>(`${w.path}/status`, {
        metadata: { resourceVersion: current.metadata?.resourceVersion },
        status,
      }, { query: { fieldManager: w.fieldManager }, signal: w.signal });
      w.wrote(updated);
      w.counted();
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      if (!isConflict(e) || attempt >= 4) throw e;
    }
    let fresh: T;
    try {
      fresh = await w.client.get<T>(w.path, { signal: w.signal });
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
    w.wrote(fresh);
    if (fresh.metadata?.generation !== current.metadata?.generation) return false;
    current = fresh;
  }
}
