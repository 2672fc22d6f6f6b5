/**
 * The main isolate's handle on the data plane: one isolate here and the
 * rest in workers, all on one port. Broadcasts routes and endpoints (with a
 * version each isolate acks, so counter slots are reused only when safe),
 * collects metrics, drains, and replaces a worker that crashes, replaying
 * the current state to it.
 */
import type { TracingConfig } from "../shared/config.ts";
import type { Level, Logger, LogSettings } from "../shared/log.ts";
import type { SharedCounters } from "./counters.ts";
import {
  type FromIsolate,
  type InitMessage,
  reusePortAvailable,
  type TlsSettings,
  type ToIsolate,
} from "./dataplane_protocol.ts";
import type { MetricsSnapshot } from "./metrics.ts";
import type { LiveRoute, ProxyConfig, TargetUpdate } from "./proxy_contract.ts";
import { DataPlaneIsolate } from "./isolate.ts";

export interface DataPlaneOptions {
  workers: number;
  config: ProxyConfig;
  listen: { hostname: string; port: number };
  tls: TlsSettings | null;
  counters: SharedCounters;
  log: Logger;
  logLevel: Level;
  logSettings?: LogSettings;
  tracing?: TracingConfig;
  onActivity: (slot: number, active: boolean) => void;
}

/** A data-plane isolate: this one (index 0) or a worker. */
interface Slot {
  index: number;
  acked: number;
  alive: boolean;
  send(msg: ToIsolate): void;
  terminate(): void;
}

const START_TIMEOUT_MS = 30_000;

export class DataPlane {
  readonly #opts: DataPlaneOptions;
  readonly #slots: Slot[] = [];
  #version = 0;
  #routes: { version: number; routes: LiveRoute[] } | null = null;
  readonly #targets = new Map<string, TargetUpdate>();
  #targetsVersion = 0;
  #port = 0;
  #tlsPort: number | undefined;
  #nextId = 1;
  readonly #pending = new Map<number, (m: FromIsolate) => void>();
  #stopping = false;
  #resizing = false;
  readonly #ackWaiters = new Set<() => void>();

  constructor(opts: DataPlaneOptions) {
    this.#opts = opts;
  }

  get port(): number {
    return this.#port;
  }

  get tlsPort(): number | undefined {
    return this.#tlsPort;
  }

  /** Version of the last state message sent. */
  get version(): number {
    return this.#version;
  }

  /** Data-plane isolates, this one included. */
  get isolates(): number {
    return this.#slots.filter((s) => s.alive).length;
  }

  /** The oldest state version every live isolate has applied. */
  get minAcked(): number {
    let min = this.#version;
    for (const s of this.#slots) if (s.alive && s.acked < min) min = s.acked;
    return min;
  }

  /**
   * Starts the isolates: the first runs in this isolate (a worker costs
   * memory: README Measured) and picks the port when it is 0; the workers share the port.
   */
  async start(): Promise<void> {
    let n = Math.max(1, this.#opts.workers);
    if (n > 1 && !reusePortAvailable()) {
      this.#opts.log.warn(
        'one data-plane isolate only: sharing the proxy port needs SO_REUSEPORT, which Deno enables with --unstable-net (or "unstable": ["net"] in deno.json)',
        { requestedIsolates: n },
      );
      n = 1;
    }
    await this.#spawn(0, this.#opts.listen.port);
    await Promise.all(Array.from({ length: n - 1 }, (_, i) => this.#spawn(i + 1, this.#port)));
  }

  /** Whether more isolates can share the port (SO_REUSEPORT). */
  get canGrow(): boolean {
    return reusePortAvailable();
  }

  /**
   * Adds an isolate on the shared port, then has the others recycle their
   * client connections: keep-alive clients would otherwise stay where they
   * are and the new isolate would only see connections opened from now on.
   */
  async grow(): Promise<void> {
    if (this.#stopping || this.#resizing) return;
    this.#resizing = true;
    try {
      const index = this.#slots.length;
      await this.#spawn(index, this.#port);
      for (const s of this.#slots) {
        if (s.alive && s.index !== index) s.send({ type: "recycle" } satisfies ToIsolate);
      }
    } finally {
      this.#resizing = false;
    }
  }

  /**
   * Removes the newest worker: it stops accepting, finishes what it has
   * (idle connections close at once; clients reconnect to the other
   * isolates), then terminates. The first isolate is never removed.
   */
  async shrink(drainTimeoutMs: number): Promise<void> {
    const slot = this.#slots.at(-1);
    if (this.#stopping || this.#resizing || !slot || slot.index === 0) return;
    this.#resizing = true;
    try {
      await this.#drainSlot(slot, drainTimeoutMs);
      slot.alive = false;
      slot.terminate();
      this.#slots.pop();
    } finally {
      this.#resizing = false;
    }
  }

  #drainSlot(s: Slot, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      // A little longer than the isolate's own timeout, which closes what is left.
      const timer = setTimeout(resolve, timeoutMs + 2000);
      this.#pending.set(-1 - s.index, () => {
        clearTimeout(timer);
        this.#pending.delete(-1 - s.index);
        resolve();
      });
      s.send({ type: "drain", timeoutMs } satisfies ToIsolate);
    });
  }

  #spawn(index: number, port: number): Promise<void> {
    const init: InitMessage = {
      type: "init",
      index,
      config: this.#opts.config,
      counters: { buffer: this.#opts.counters.buffer, layout: this.#opts.counters.layout },
      listen: { hostname: this.#opts.listen.hostname, port },
      tls: index === 0 ? this.#opts.tls : null,
      logLevel: this.#opts.logLevel,
      ...(this.#opts.logSettings ? { logSettings: this.#opts.logSettings } : {}),
      ...(this.#opts.tracing?.enabled ? { tracing: this.#opts.tracing } : {}),
    };
    return new Promise<void>((resolve, reject) => {
      let started = false;
      let slot: Slot;
      const timer = setTimeout(() => {
        if (!started) reject(new Error(`data-plane isolate ${index} did not start in time`));
      }, START_TIMEOUT_MS);
      const onMessage = (m: FromIsolate) => {
        if (m.type === "listening") {
          started = true;
          clearTimeout(timer);
          if (index === 0) {
            this.#port = m.port;
            this.#tlsPort = m.tlsPort;
          }
          this.#replay(slot);
          resolve();
        } else if (m.type === "failed") {
          clearTimeout(timer);
          slot.alive = false;
          slot.terminate();
          reject(
            new Error(
              `the proxy could not listen on ${this.#opts.listen.hostname}:${port}: ${m.message}`,
            ),
          );
        } else {
          this.#onMessage(slot, m);
        }
      };
      if (index === 0) {
        const isolate = new DataPlaneIsolate(init, onMessage);
        slot = {
          index,
          acked: 0,
          alive: true,
          send: (msg) => {
            isolate.handle(msg).catch((e) =>
              this.#opts.log.error("data plane message failed", { type: msg.type, error: e })
            );
          },
          terminate: () => slot.send({ type: "stop" }),
        };
        this.#slots[index] = slot;
        isolate.start();
        return;
      }
      const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
      slot = {
        index,
        acked: 0,
        alive: true,
        send: (msg) => worker.postMessage(msg),
        terminate: () => worker.terminate(),
      };
      this.#slots[index] = slot;
      worker.onmessage = (e: MessageEvent<FromIsolate>) => onMessage(e.data);
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        this.#opts.log.error("data-plane worker crashed", { worker: index, error: e.message });
        slot.alive = false;
        worker.terminate();
        if (!started) {
          clearTimeout(timer);
          reject(new Error(`data-plane worker ${index} failed to start: ${e.message}`));
        } else if (!this.#stopping) {
          this.#spawn(index, this.#port).catch((err) =>
            this.#opts.log.error("data-plane worker not replaced", { worker: index, error: err })
          );
        }
      };
      worker.postMessage(init);
    });
  }

  /** A new (or replaced) worker gets the current routes and endpoints. */
  #replay(slot: Slot): void {
    if (this.#routes) {
      slot.send({ type: "routes", ...this.#routes } satisfies ToIsolate);
    }
    if (this.#targets.size > 0) {
      slot.send(
        {
          type: "targets",
          version: this.#targetsVersion,
          updates: [...this.#targets.values()],
        } satisfies ToIsolate,
      );
    }
    slot.acked = Math.max(slot.acked, this.#version);
  }

  #onMessage(slot: Slot, m: FromIsolate): void {
    switch (m.type) {
      case "ack":
        if (m.version > slot.acked) slot.acked = m.version;
        for (const w of [...this.#ackWaiters]) w();
        break;
      case "activity":
        this.#opts.onActivity(m.slot, m.active);
        break;
      case "metrics":
      case "drained":
        this.#pending.get(m.type === "metrics" ? m.id : -1 - m.index)?.(m);
        break;
    }
  }

  #broadcast(msg: ToIsolate): void {
    for (const s of this.#slots) if (s.alive) s.send(msg);
  }

  /** Resolves once every live worker has applied `version` (false on timeout). */
  applied(version: number, timeoutMs = 10_000): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.minAcked >= version) {
          clearTimeout(timer);
          this.#ackWaiters.delete(check);
          resolve(true);
        }
      };
      const timer = setTimeout(() => {
        this.#ackWaiters.delete(check);
        resolve(false);
      }, timeoutMs);
      this.#ackWaiters.add(check);
      check();
    });
  }

  /** Sends a new table; returns its version. */
  setRoutes(routes: LiveRoute[]): number {
    const version = ++this.#version;
    this.#routes = { version, routes };
    this.#broadcast({ type: "routes", version, routes });
    return version;
  }

  /** Sends endpoint changes (an empty list removes a target's endpoints). */
  setTargets(updates: TargetUpdate[]): number {
    const version = ++this.#version;
    for (const u of updates) {
      if (u.endpoints.length === 0) this.#targets.delete(u.key);
      else this.#targets.set(u.key, u);
    }
    this.#targetsVersion = version;
    this.#broadcast({ type: "targets", version, updates });
    return version;
  }

  /** Every worker's metrics; a worker that does not answer in time is left out. */
  async metrics(timeoutMs = 2000): Promise<{ snapshots: MetricsSnapshot[]; connections: number }> {
    const live = this.#slots.filter((s) => s.alive);
    const answers = await Promise.all(live.map((s) => {
      const id = this.#nextId++;
      return new Promise<FromIsolate | null>((resolve) => {
        const timer = setTimeout(() => {
          this.#pending.delete(id);
          resolve(null);
        }, timeoutMs);
        this.#pending.set(id, (m) => {
          clearTimeout(timer);
          this.#pending.delete(id);
          resolve(m);
        });
        s.send({ type: "metrics", id } satisfies ToIsolate);
      });
    }));
    const snapshots: MetricsSnapshot[] = [];
    let connections = 0;
    for (const a of answers) {
      if (a?.type === "metrics") {
        snapshots.push(a.snapshot);
        connections += a.connections;
      }
    }
    return { snapshots, connections };
  }

  /** Stops accepting and lets in-flight requests finish, up to the timeout. */
  async drain(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    const live = this.#slots.filter((s) => s.alive);
    await Promise.all(live.map((s) => this.#drainSlot(s, timeoutMs)));
  }

  /** Terminates the workers (after drain, or at once). */
  stop(): void {
    this.#stopping = true;
    for (const s of this.#slots) {
      if (!s.alive) continue;
      s.alive = false;
      s.terminate();
    }
  }
}
