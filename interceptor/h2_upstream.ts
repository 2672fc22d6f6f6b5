/**
 * HTTP/2 connections to h2c apps (Service port appProtocol
 * kubernetes.io/h2c): one multiplexed connection per pod address, more only
 * when the app's SETTINGS_MAX_CONCURRENT_STREAMS is reached, closed after
 * the pool's idle time. Each exchange gets a stream as its upstream
 * connection (h2_bridge.ts), so the HTTP/1.1 leg drives it unchanged.
 */
import type { Logger } from "../shared/log.ts";
import { POOL_IDLE_MS } from "./deadlines.ts";
import { ClientStreamConn } from "./h2_bridge.ts";
import { H2Conn } from "./h2_conn.ts";
import { ERROR_NAMES } from "./h2_frames.ts";

interface Entry {
  conn: H2Conn;
  /** Streams handed out whose HEADERS are not sent yet. */
  reserved: number;
}

export class H2Upstreams {
  readonly #byAddr = new Map<string, Entry[]>();
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** A stream-to-be on a connection to `addr` (connecting if none has room). */
  async stream(
    ep: { ip: string; port: number; addr: string },
    connectTimeoutMs: number,
  ): Promise<ClientStreamConn> {
    const list = this.#byAddr.get(ep.addr) ?? [];
    let entry = list.find((e) =>
      e.conn.hasCapacity && e.conn.activeStreams + e.reserved < e.conn.peerMaxStreams
    );
    if (entry === undefined) {
      const tcp = await Deno.connect({
        hostname: ep.ip,
        port: ep.port,
        signal: AbortSignal.timeout(connectTimeoutMs),
      });
      tcp.setNoDelay(true);
      const conn = new H2Conn(tcp, {
        role: "client",
        // The app is ours to serve, not an attacker: its frames get a far larger budget.
        limits: {
          idleTimeoutMs: POOL_IDLE_MS,
          cheapFrameBurst: 100_000,
          cheapFramesPerSecond: 50_000,
        },
        onClose: (c) => this.#remove(ep.addr, c),
        onProblem: (message, code) =>
          this.#log.warn("h2c connection to an app ended with an error", {
            addr: ep.addr,
            problem: message,
            code: ERROR_NAMES[code] ?? code,
          }),
      });
      entry = { conn, reserved: 0 };
      list.push(entry);
      this.#byAddr.set(ep.addr, list);
      void conn.run();
    }
    const e = entry;
    e.reserved++;
    let opened = false;
    return new ClientStreamConn(() => {
      if (!opened) {
        opened = true;
        e.reserved--;
      }
      return e.conn.open({ onHeaders() {}, onData() {}, onReset() {} });
    }, "http");
  }

  #remove(addr: string, c: H2Conn): void {
    const list = this.#byAddr.get(addr);
    if (!list) return;
    const i = list.findIndex((e) => e.conn === c);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#byAddr.delete(addr);
  }

  /** Idle-timeout checks (the proxy's ticker). */
  sweep(now: number): void {
    for (const list of this.#byAddr.values()) for (const e of list) e.conn.tick(now);
  }

  get connections(): number {
    let n = 0;
    for (const list of this.#byAddr.values()) n += list.length;
    return n;
  }

  closeAll(): void {
    for (const list of [...this.#byAddr.values()]) for (const e of [...list]) e.conn.close();
    this.#byAddr.clear();
  }
}
