/**
 * Byte-level connection I/O for the data plane: a reader with one buffer and
 * at most one read in flight (so a read started to notice a hang-up is the
 * same read that later returns the next request), and a write loop.
 */

/** What the data plane needs from a connection; Deno.Conn and TlsConn fit. */
export interface ByteConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
  closeWrite(): Promise<void>;
}

type IoOp = (rid: number, buf: Uint8Array) => Promise<number>;

/**
 * Deno's Conn.read wraps the read op in an async function that also tracks
 * the promise in a Set (only for unref()), which allocates on every read,
 * and young-generation GC is a large part of the data plane's CPU. Conn.write
 * wraps the write op in an async function too, and the op itself usually returns
 * an already settled promise. Deno pins one version (deno.json, .ci), so we
 * call the ops directly when this runtime exposes them, and fall back to the
 * Conn methods otherwise (conn_io_test asserts the fast path is live).
 */
const [readOp, writeOp]: [IoOp | null, IoOp | null] = (() => {
  const internal = (Deno as unknown as { internal?: symbol }).internal;
  const core = internal === undefined ? undefined : (Deno as unknown as Record<
    symbol,
    { core?: { read?: unknown; write?: unknown } } | undefined
  >)[internal]?.core;
  if (typeof core?.read !== "function" || typeof core.write !== "function") return [null, null];
  return [(core.read as IoOp).bind(core), (core.write as IoOp).bind(core)];
})();

/** Deno's own-property symbol for a connection's resource id, found on the first connection. */
let ridSymbol: symbol | undefined;

/** The resource id behind a Deno connection, when the fast read path can use it. */
function ridOf(conn: object): number | null {
  if (readOp === null) return null;
  ridSymbol ??= Object.getOwnPropertySymbols(conn).find((s) =>
    s.description === "Deno.internal.rid"
  );
  const rid = ridSymbol === undefined ? undefined : (conn as Record<symbol, unknown>)[ridSymbol];
  return typeof rid === "number" ? rid : null;
}

/** Whether reads on `conn` skip Deno's Conn.read wrapper (for tests). */
export function readsDirectly(reader: ConnReader): boolean {
  return reader.rid !== null;
}

/** Writes some of `p` and resolves with how many bytes; like Deno.Conn.write. */
export type WriteFn = (p: Uint8Array) => Promise<number>;

/** Something writable: a connection, or the data plane's wrapper around one. */
export interface Writable {
  write: WriteFn;
}

/** Whether writes to `conn` skip Deno's Conn.write wrapper (for tests). */
export function writesDirectly(conn: ByteConn): boolean {
  return writeOp !== null && ridOf(conn) !== null;
}

/** A write function for `conn` that calls Deno's write op directly when it can. */
export function writerFor(conn: ByteConn, rid: number | null = ridOf(conn)): WriteFn {
  if (rid === null || writeOp === null) return (p) => conn.write(p);
  const op = writeOp;
  return (p) => op(rid, p);
}

export class BufferFull extends Error {
  constructor(readonly size: number) {
    super(`more than ${size} bytes without the end of a message head`);
    this.name = "BufferFull";
  }
}

/**
 * Unread bytes live in buf[start, end). `fill()` reads more after `end`; a
 * call while a read is in flight returns that same read. Callers consume by
 * advancing `start` and must not touch the buffer while a read is in flight,
 * except for bytes before `end`.
 */
export class ConnReader {
  buf: Uint8Array;
  start = 0;
  end = 0;
  /** The peer closed its side (or the connection failed). */
  eof = false;
  error: unknown = undefined;
  #pending: Promise<number> | null = null;
  /**
   * Called once when the next read completes (bytes added, 0 at EOF), before
   * anyone awaiting it resumes; cheaper than chaining another promise.
   */
  watch: ((n: number) => void) | null = null;
  readonly #onRead = (n: number | null): number => {
    this.#pending = null;
    if (n === null || n === 0) {
      this.eof = true;
      n = 0;
    } else {
      this.end += n;
    }
    const w = this.watch;
    if (w !== null) {
      this.watch = null;
      w(n);
    }
    return n;
  };
  readonly #onError = (e: unknown): number => {
    this.#pending = null;
    this.eof = true;
    this.error = e;
    const w = this.watch;
    if (w !== null) {
      this.watch = null;
      w(0);
    }
    return 0;
  };

  /** Set when reads can call the op directly (see readOp). */
  readonly rid: number | null;

  constructor(readonly conn: ByteConn, size = 16 * 1024, readonly maxSize = 64 * 1024) {
    this.buf = new Uint8Array(size);
    this.rid = ridOf(conn);
  }

  get buffered(): number {
    return this.end - this.start;
  }

  get reading(): boolean {
    return this.#pending !== null;
  }

  /** Resolves with the number of bytes added; 0 means EOF or a failed read. */
  fill(): Promise<number> {
    if (this.#pending) return this.#pending;
    if (this.eof) return Promise.resolve(0);
    if (this.start === this.end) {
      this.start = this.end = 0;
    } else if (this.end === this.buf.length) {
      if (this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      } else if (this.buf.length < this.maxSize) {
        const bigger = new Uint8Array(Math.min(this.maxSize, this.buf.length * 2));
        bigger.set(this.buf.subarray(0, this.end));
        this.buf = bigger;
      } else {
        return Promise.reject(new BufferFull(this.maxSize));
      }
    }
    // The whole buffer when empty: no view to allocate.
    const into = this.end === 0 ? this.buf : this.buf.subarray(this.end);
    // The op resolves 0 at EOF, where conn.read resolves null.
    const read = this.rid !== null ? readOp!(this.rid, into) : this.conn.read(into);
    this.#pending = read.then(this.#onRead, this.#onError);
    return this.#pending;
  }

  /** Drops everything buffered (e.g. after a protocol error). */
  clear(): void {
    this.start = this.end;
  }
}

/** Writes all of `data`; throws when the connection fails. */
export async function writeAll(conn: Writable, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const n = await conn.write(off === 0 ? data : data.subarray(off));
    if (n <= 0) throw new Error("connection accepted no bytes");
    off += n;
  }
}

/** Closes a connection, ignoring "already closed". */
export function closeQuietly(conn: { close(): void }): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
