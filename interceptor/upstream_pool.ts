/**
 * Connections to app pods: one upstream connection, and the keep-alive pool
 * per pod address, which alone decides when a connection may be reused.
 * TLS and plain connections to one address are kept apart: a request picks
 * the kind it needs.
 */
import { type ByteConn, closeQuietly, ConnReader, type WriteFn, writerFor } from "./conn_io.ts";
import { POOL_IDLE_MS } from "./deadlines.ts";

const IDLE_POOL_MAX = 256;

export class UpstreamConn {
  readonly reader: ConnReader;
  /** Drops the connection when it closes (or talks) while idle in its pool. */
  poolWatch: ((n: number) => void) | null = null;
  idle = false;
  idleSince = 0;
  reused = false;
  /** Writes to the app (Deno's op directly when possible; see conn_io). */
  readonly write: WriteFn;
  constructor(
    readonly conn: Deno.TcpConn | ByteConn,
    readonly addr: string,
    /** Over TLS (its pool list is the TLS one). */
    readonly tls = false,
  ) {
    this.reader = new ConnReader(conn);
    this.write = writerFor(conn, this.reader.rid);
  }
}

/** Idle keep-alive connections to one pod address. */
class Pool {
  readonly idle: UpstreamConn[] = [];
  readonly idleTls: UpstreamConn[] = [];
  /** Targets that list this address; the pool closes when none do. */
  refs = 0;

  take(tls: boolean): UpstreamConn | undefined {
    const idle = tls ? this.idleTls : this.idle;
    while (idle.length > 0) {
      const u = idle.pop()!;
      u.idle = false;
      u.reader.watch = null;
      if (!u.reader.eof && u.reader.buffered === 0) {
        u.reused = true;
        return u;
      }
      closeQuietly(u.conn);
    }
    return undefined;
  }

  release(u: UpstreamConn): void {
    const idle = u.tls ? this.idleTls : this.idle;
    if (idle.length >= IDLE_POOL_MAX) {
      closeQuietly(u.conn);
      return;
    }
    u.idle = true;
    u.idleSince = Date.now();
    idle.push(u);
    // The read that will carry the next response also tells us when the app
    // closes an idle connection, so a dead one is never handed out.
    u.poolWatch ??= (n) => {
      if (u.idle && (n === 0 || u.reader.buffered > 0)) this.#drop(u);
    };
    u.reader.watch = u.poolWatch;
    u.reader.fill();
  }

  #drop(u: UpstreamConn): void {
    const idle = u.tls ? this.idleTls : this.idle;
    const i = idle.indexOf(u);
    if (i >= 0) idle.splice(i, 1);
    u.idle = false;
    closeQuietly(u.conn);
  }

  sweep(now: number): void {
    for (const idle of [this.idle, this.idleTls]) {
      for (let i = idle.length - 1; i >= 0; i--) {
        const u = idle[i]!;
        if (now - u.idleSince > POOL_IDLE_MS) this.#drop(u);
      }
    }
  }

  closeAll(): void {
    for (const u of [...this.idle.splice(0), ...this.idleTls.splice(0)]) {
      u.idle = false;
      closeQuietly(u.conn);
    }
  }
}

/**
 * The pools of every pod address some target lists, reference-counted by
 * the targets: a pool closes when no target lists its address any more.
 */
export class Pools {
  readonly #pools = new Map<string, Pool>();
  #lastSweep = 0;

  /** A target now lists `addr`. */
  ref(addr: string): void {
    let p = this.#pools.get(addr);
    if (!p) this.#pools.set(addr, p = new Pool());
    p.refs++;
  }

  /** A target no longer lists `addr`. */
  unref(addr: string): void {
    const p = this.#pools.get(addr);
    if (p && --p.refs <= 0) {
      p.closeAll();
      this.#pools.delete(addr);
    }
  }

  /** An idle connection to `addr` (over TLS when `tls`) that is still open, if any. */
  take(addr: string, tls = false): UpstreamConn | undefined {
    return this.#pools.get(addr)?.take(tls);
  }

  /** Keeps a connection for reuse, or closes it (draining, or its pod is gone). */
  release(u: UpstreamConn, draining: boolean): void {
    const p = this.#pools.get(u.addr);
    if (p && !draining) p.release(u);
    else closeQuietly(u.conn);
  }

  /** Closes connections idle for too long; cheap enough to call on every tick. */
  sweep(now: number): void {
    if (now - this.#lastSweep <= 5_000) return;
    this.#lastSweep = now;
    for (const p of this.#pools.values()) p.sweep(now);
  }

  closeAll(): void {
    for (const p of this.#pools.values()) p.closeAll();
  }
}
