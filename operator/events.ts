/**
 * Kubernetes Events (core/v1) about HTTPScaledObjects, so `kubectl describe`
 * shows what is wrong. A Warning is emitted once per problem: the same
 * reason and message for the same object is not repeated on every
 * reconcile; it is emitted again only after the problem went away and came
 * back. Events are written in the background (a few at a time, the rest
 * dropped with a log line when the API server falls behind), so they never
 * slow a reconcile down, and failing to write one never fails it.
 */
import { isAlreadyExists, type KubeClient, type KubeObject } from "../shared/kube.ts";
import type { Logger } from "../shared/log.ts";

export interface EventRecorderOptions {
  client: KubeClient;
  log: Logger;
  component: string;
  /** Which replica wrote it (reportingInstance). */
  instance: string;
  /** Called after each Event written (for the write counter). */
  onWrite?: () => void;
}

export class EventRecorder {
  readonly #o: EventRecorderOptions;
  /** uid → reason → message last emitted. */
  readonly #emitted = new Map<string, Map<string, string>>();
  /** Events waiting to be written, oldest first. */
  readonly #queue: Array<[KubeObject, string, string, string, string?]> = [];
  #writers = 0;
  #idle: Array<() => void> = [];
  static readonly WRITERS = 4;
  static readonly MAX_QUEUED = 1000;

  constructor(options: EventRecorderOptions) {
    this.#o = options;
  }

  /** Emits a Warning unless this exact problem was already reported for the object. */
  warning(obj: KubeObject, reason: string, message: string): void {
    const uid = obj.metadata?.uid ?? "";
    let seen = this.#emitted.get(uid);
    if (seen?.get(reason) === message) return;
    if (!seen) this.#emitted.set(uid, seen = new Map());
    seen.set(reason, message);
    this.#send(obj, "Warning", reason, message);
  }

  /**
   * Emits a Warning under a name made of the object's name, the reason and
   * the object's uid, so it exists at most once per object while Events are
   * kept (the API server's TTL, 1 h by default): a second create, say after
   * a restart or by a new leader, is refused as AlreadyExists, which counts
   * as done and is no write. Callers keep their own once-per-process record.
   */
  warningOnce(obj: KubeObject, reason: string, message: string): void {
    const meta = obj.metadata ?? {};
    const suffix = `.${reason.toLowerCase().replace(/[^a-z0-9-]/g, "-")}.${meta.uid ?? "no-uid"}`;
    const base = (meta.name ?? "object").slice(0, 253 - suffix.length).replace(/[-.]+$/, "");
    this.#send(obj, "Warning", reason, message, base + suffix);
  }

  /** Emits a Normal event (for actions taken, which happen once each). */
  normal(obj: KubeObject, reason: string, message: string): void {
    this.#send(obj, "Normal", reason, message);
  }

  /** Forgets problems no longer present, so they are reported again if they return. */
  resolved(uid: string, stillActive: Iterable<string>): void {
    const seen = this.#emitted.get(uid);
    if (!seen) return;
    const keep = new Set(stillActive);
    for (const reason of [...seen.keys()]) if (!keep.has(reason)) seen.delete(reason);
    if (seen.size === 0) this.#emitted.delete(uid);
  }

  forget(uid: string): void {
    this.#emitted.delete(uid);
  }

  /** Resolves once every queued Event has been written (or failed). */
  flush(): Promise<void> {
    if (this.#writers === 0 && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #send(obj: KubeObject, type: string, reason: string, message: string, name?: string) {
    if (this.#queue.length >= EventRecorder.MAX_QUEUED) {
      const [dropped] = this.#queue.splice(0, 1);
      this.#o.log.warn("the API server is not keeping up with Events; dropped the oldest", {
        object: `${dropped?.[0].metadata?.namespace}/${dropped?.[0].metadata?.name}`,
        reason: dropped?.[2],
      });
    }
    this.#queue.push([obj, type, reason, message, name]);
    if (this.#writers < EventRecorder.WRITERS) {
      this.#writers++;
      void this.#drain();
    }
  }

  async #drain() {
    for (let next = this.#queue.shift(); next; next = this.#queue.shift()) {
      await this.#write(...next);
    }
    this.#writers--;
    if (this.#writers === 0) { for (const resolve of this.#idle.splice(0)) resolve(); }
  }

  async #write(obj: KubeObject, type: string, reason: string, message: string, name?: string) {
    const meta = obj.metadata ?? {};
    const ns = meta.namespace ?? "default";
    const now = new Date();
    const ts = now.toISOString().replace(/\.\d+Z$/, "Z");
    const event = {
      apiVersion: "v1",
      kind: "Event",
      metadata: {
        // client-go's naming: object name, then a unique hex suffix.
        name: name ??
          `${meta.name}.${(now.getTime() * 1000 + Math.floor(Math.random() * 1000)).toString(16)}`,
        namespace: ns,
      },
      involvedObject: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        name: meta.name,
        namespace: ns,
        uid: meta.uid,
        resourceVersion: meta.resourceVersion,
      },
      type,
      reason,
      message: message.length > 1000 ? message.slice(0, 997) + "..." : message,
      source: { component: this.#o.component },
      reportingComponent: this.#o.component,
      reportingInstance: this.#o.instance,
      firstTimestamp: ts,
      lastTimestamp: ts,
      count: 1,
    };
    try {
      await this.#o.client.create(`/api/v1/namespaces/${ns}/events`, event, {
        signal: AbortSignal.timeout(10_000),
      });
      this.#o.onWrite?.();
    } catch (e) {
      if (name && isAlreadyExists(e)) {
        this.#o.log.debug("Event already recorded", { object: `${ns}/${meta.name}`, reason });
        return;
      }
      this.#o.log.warn("could not write an Event", {
        object: `${ns}/${meta.name}`,
        reason,
        error: e,
      });
    }
  }
}
