/**
 * One client connection and the exchange in progress on it: the connection's
 * reader, writer and scratch buffers, its single deadline (the ticker checks
 * one per connection instead of a timer per request), the exchange's phase
 * and state, and what a hang-up or a passed deadline means for it.
 */
import { type ByteConn, closeQuietly, ConnReader, type WriteFn, writerFor } from "./conn_io.ts";
import type { SharedCounters } from "./counters.ts";
import { MAX_HEAD_BYTES } from "./http1_fields.ts";
import { forwardedLines, type ForwardOptions, type RequestHead } from "./http1_request.ts";
import type { LiveRoute } from "./proxy_contract.ts";
import type { Endpoint, Target } from "./targets.ts";
import type { SpanHandle } from "../shared/tracing.ts";
import type { UpstreamConn } from "./upstream_pool.ts";

const EMPTY = new Uint8Array(0);
/** Larger writes get their own buffer instead of growing a connection's scratch. */
const SCRATCH_MAX = 32 * 1024;

/**
 * A reusable write buffer: returns a view of `n` bytes of it, the same view
 * again when the size repeats (exchanges of one app are often alike).
 */
function scratch(min: number): (n: number) => Uint8Array {
  let buf: Uint8Array | null = null;
  let view: Uint8Array = EMPTY;
  return (n) => {
    if (n > SCRATCH_MAX) return new Uint8Array(n);
    if (buf === null || buf.length < n) {
      buf = new Uint8Array(Math.max(n, min));
    } else if (view.length === n) {
      return view; // Always a view of the current buf: a new buf gets a new view below.
    }
    return view = buf.subarray(0, n);
  };
}

/** One client connection; also the unit the ticker watches for timeouts. */
export class ClientConn {
  readonly reader: ConnReader;
  /** Accept order in this isolate: recycle() closes those accepted before a point. */
  seq = 0;
  /** Deadline (Date.now() ms) and what to do when it passes. */
  at = Infinity;
  onTimeout: ((c: ClientConn) => void) | null = null;
  /** Waiting for the next request with nothing buffered. */
  idle = true;
  closed = false;
  /** An HTTP/2 stream (h2_bridge.ts) carrying one exchange. */
  h2 = false;
  exchange: Exchange | null = null;
  /**
   * Reused for what we write upstream and back to the client: one exchange
   * at a time per connection, and each write is awaited before the next.
   */
  readonly upAlloc: (n: number) => Uint8Array;
  #fwdHost = "";
  #fwdLines: Uint8Array | null = null;
  /** X-Forwarded-* lines for this client, cached while its Host stays the same. */
  readonly forwardedLines = (host: string): Uint8Array => {
    if (this.#fwdLines === null || host !== this.#fwdHost) {
      this.#fwdHost = host;
      this.#fwdLines = forwardedLines(this.fwd, host);
    }
    return this.#fwdLines;
  };
  readonly outAlloc: (n: number) => Uint8Array;
  /** Writes to the client (Deno's op directly when possible; see conn_io). */
  readonly write: WriteFn;
  /** What the X-Forwarded-* fields say about this client. */
  readonly fwd: ForwardOptions;
  constructor(
    readonly conn: ByteConn,
    readonly remoteIp: string,
    readonly proto: "http" | "https",
    /** First read buffer size (an HTTP/2 stream's is small: it grows if a head needs more). */
    readSize = 16 * 1024,
  ) {
    this.reader = new ConnReader(conn, readSize, MAX_HEAD_BYTES);
    // A connection with a small first buffer (an HTTP/2 stream: one exchange) sizes writes exactly.
    const small = readSize < 16 * 1024;
    this.upAlloc = scratch(small ? 0 : 1024);
    this.outAlloc = scratch(small ? 0 : 2048);
    this.write = writerFor(conn, this.reader.rid);
    this.fwd = { clientIp: remoteIp, proto };
  }

  deadline(ms: number, fn: (c: ClientConn) => void): void {
    this.at = Date.now() + ms;
    this.onTimeout = fn;
  }

  deadlineAt(at: number, fn: (c: ClientConn) => void): void {
    this.at = at;
    this.onTimeout = fn;
  }

  clearDeadline(): void {
    this.at = Infinity;
    this.onTimeout = null;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeQuietly(this.conn);
  }

  readonly closeNow = (): void => this.close();

  /** What a completed hang-up watch read means for the current exchange. */
  readonly hangupWatch = (n: number): void => {
    const ex = this.exchange;
    if (ex === null) return;
    if (n === 0) clientGone(ex);
    else if (ex.phase === Phase.Hold) watchHangup(ex);
  };
}

/** Deadline handlers shared by all connections (no closure per request). */
export function headerTimedOut(c: ClientConn): void {
  const ex = c.exchange;
  if (ex === null || ex.phase !== Phase.AwaitHead) return;
  ex.timedOut = true;
  if (ex.up) closeQuietly(ex.up.conn);
  // A 1xx relay blocked on a client that does not read would outlive the exchange.
  if (ex.interimWrite) c.close();
}

export function stalled(c: ClientConn): void {
  const ex = c.exchange;
  if (ex !== null) {
    ex.stalled = true;
    if (ex.up) closeQuietly(ex.up.conn);
  }
  c.close();
}

/** Phases of an exchange, for deciding what a hang-up or a timeout means. */
export const enum Phase {
  Route,
  Hold,
  Connect,
  AwaitHead,
  Body,
  Upgraded,
  Done,
}

export class Exchange {
  phase = Phase.Route;
  /** Counted for scaling (a static route's forwarded request is not). */
  counted = true;
  /** Status for metrics and logs: what the client got, or 499. */
  status = 0;
  cold = false;
  gone = false;
  timedOut = false;
  stalled = false;
  /** The client broke its own request body's framing (answered 400 when still possible). */
  clientFault: string | null = null;
  responseStarted = false;
  /** An interim (1xx) response is being written to the client. */
  interimWrite = false;
  keepClient = false;
  ep: Endpoint | null = null;
  up: UpstreamConn | null = null;
  wake: ((why: "wake" | "timeout" | "aborted") => void) | null = null;
  /** Called when the client hangs up mid-exchange (e.g. to abort a fetch). */
  onGone: (() => void) | null = null;
  /** The client deadline is an inactivity one, pushed back on progress. */
  stallWatch = false;
  /** Ends at the response head: hold + connect + response header wait. */
  requestDeadline: number;
  /** Set when a re-hold fell back to the route's fallback: the target connect() chose. */
  retarget: Target | null = null;
  /** The request's server span, when tracing is on. */
  span: SpanHandle | null = null;

  constructor(
    readonly c: ClientConn,
    readonly req: RequestHead,
    readonly route: LiveRoute,
    readonly t0: number,
    requestDeadline: number,
  ) {
    this.requestDeadline = requestDeadline;
  }
}

/** The client hung up mid-exchange: wake whatever waits, stop the upstream side. */
export function clientGone(ex: Exchange): void {
  if (ex.c.exchange !== ex || ex.gone) return;
  if (ex.phase === Phase.Done || ex.phase === Phase.Upgraded) return;
  ex.gone = true;
  ex.wake?.("aborted");
  ex.onGone?.();
  if (ex.up) closeQuietly(ex.up.conn);
}

/** Starts noticing a client that hangs up (the read is the next request's read). */
export function watchHangup(ex: Exchange): void {
  const r = ex.c.reader;
  if (r.reading || r.eof) {
    if (r.eof) clientGone(ex);
    return;
  }
  if (r.end === r.buf.length) return; // Full: we cannot read without buffering more.
  r.watch = ex.c.hangupWatch;
  r.fill();
}

/** The exchange goes to `ep`: the pod's in-flight count moves with it. */
export function useEndpoint(ex: Exchange, counters: SharedCounters, ep: Endpoint): void {
  if (ex.ep) counters.podEnd(ex.ep.slot);
  ex.ep = ep;
  counters.podBegin(ep.slot);
}

/** The pod's in-flight count ends before the exchange does (an early response's linger). */
export function releasePod(ex: Exchange, counters: SharedCounters): void {
  if (ex.ep) counters.podEnd(ex.ep.slot);
  ex.ep = null;
}
