/**
 * The data plane of one isolate: HTTP/1.1 over raw connections, forwarded
 * straight to ready pod addresses over pooled keep-alive connections.
 *
 * Per request: route lookup -> count -> pick the least-loaded ready endpoint
 * (or hold until the EndpointSlice watch reports one) -> one write of head
 * and buffered body upstream -> one write of response head and buffered body
 * back. Bodies stream in both directions at once (an echoing app must not
 * deadlock us), framing is followed, not rewritten, so connections can be
 * reused.
 *
 * Timeouts are checked by one coarse ticker over all connections instead of
 * a timer per request.
 */
import type { Logger } from "../shared/log.ts";
import type { RouteEntry } from "../shared/routing_table.ts";
import { formatDuration } from "../shared/duration.ts";
import {
  BufferFull,
  type ByteConn,
  closeQuietly,
  ConnReader,
  writeAll,
  type WriteFn,
  writerFor,
} from "./conn_io.ts";
import type { SharedCounters } from "./counters.ts";
import { binaryBytes, binaryString, findHeadEnd, utf8Of } from "./http1_bytes.ts";
import { ChunkedScanner } from "./http1_chunked.ts";
import { HttpError, MAX_HEAD_BYTES } from "./http1_fields.ts";
import {
  forwardedLines,
  type ForwardOptions,
  isIdempotent,
  parseRequestHead,
  type RequestHead,
  spliceRequestHead,
  upstreamRequestHead,
} from "./http1_request.ts";
import {
  clientResponseHead,
  parseResponseHead,
  plainResponse,
  responseExtraLines,
  responseHasNoBody,
  type ResponseHead,
  type ResponseInfo,
  scanResponseBytes,
} from "./http1_response.ts";
import type { RequestMetrics } from "./metrics.ts";
import { RouteIndex } from "./routing.ts";
import { forwardH2c } from "./h2c.ts";
import { Gone, ProxyFailure } from "./exchange_errors.ts";

export interface ProxyConfig {
  /** Readiness wait when the route sets no conditionWait (already resolved from env). */
  readinessTimeoutMs: number;
  /** Bound on hold + connect + waiting for the response head; 0 = none. */
  requestTimeoutMs: number;
  responseHeaderTimeoutMs: number;
  connectTimeoutMs: number;
  coldStartHeader: boolean;
  maxHeldRequests: number;
  /** In-flight requests per pod; 0 = no cap. */
  podConcurrencyLimit: number;
  /** Idle keep-alive connections and stalled bodies are closed after this. */
  idleTimeoutMs: number;
  /** A request head must arrive within this once its first byte has. */
  headTimeoutMs: number;
  /** Retry-After seconds on the 503 answered when too many requests are held. */
  retryAfterSeconds: number;
}

/**
 * A route as the data plane sees it: what matching and forwarding need from
 * the table entry (kept small: every table change is copied to each worker),
 * plus its counter slot and target keys.
 */
export interface LiveRoute
  extends Pick<RouteEntry, "key" | "hosts" | "pathPrefixes" | "headers" | "timeouts"> {
  slot: number;
  targetKey: string;
  fallbackKey?: string;
  fallback?: { service: string; timeoutMs: number };
}

/** The data plane's view of a table entry. */
export function liveRouteOf(
  e: RouteEntry,
  slot: number,
  targetKey: string,
  fallbackKey?: string,
): LiveRoute {
  const r: LiveRoute = {
    key: e.key,
    hosts: e.hosts,
    pathPrefixes: e.pathPrefixes,
    headers: e.headers,
    timeouts: e.timeouts,
    slot,
    targetKey,
  };
  if (e.fallback && fallbackKey !== undefined) {
    r.fallbackKey = fallbackKey;
    r.fallback = { service: e.fallback.service, timeoutMs: e.fallback.timeoutMs };
  }
  return r;
}

export interface EndpointUpdate {
  ip: string;
  port: number;
  /** Pod counter slot (shared in-flight count). */
  slot: number;
}

export interface TargetUpdate {
  key: string;
  endpoints: EndpointUpdate[];
  h2c: boolean;
}

export interface Endpoint {
  ip: string;
  port: number;
  addr: string;
  slot: number;
}

type BodyMode = "none" | "length" | "chunked" | "close";

/** A response head read from the app: what it says, its text, and where its bytes are. */
interface ResponseRead {
  info: ResponseInfo;
  /** The head as a binary string; null when not decoded yet (see headText). */
  text: string | null;
  start: number;
  end: number;
}

interface RequestBody {
  remaining: number;
  scanner: ChunkedScanner | null;
  done: boolean;
  failed: boolean;
  /** The first write upstream: the head and what was buffered of the body. */
  first: Uint8Array;
  /** Sent whole in that one write, so it can be sent again on a fresh connection. */
  replayable: boolean;
}

const EMPTY = new Uint8Array(0);

/** How a response goes back to the client (one per exchange; fields, not frame registers). */
class Relay {
  mode: BodyMode = "none";
  /** Body bytes still to come when mode is "length". */
  left = 0;
  rs: ChunkedScanner | null = null;
  /** Chunked from the app, but the client speaks HTTP/1.0. */
  dechunk = false;
  closeClient = false;
  /** The app did not say Connection: close. */
  reusable = true;
  upstreamOk = true;
  done = false;
  /** Body bytes sent with the head, and the ranges sent after it when dechunking. */
  bodyBytes = 0;
  parts: Array<[number, number]> | null = null;
  out: Uint8Array = EMPTY;
}

function sendFailed(target: Target, up: UpstreamConn, e: unknown): string {
  return `sending the request to ${target.key} at ${up.addr} failed: ${(e as Error).message}`;
}

function noResponse(target: Target, up: UpstreamConn): string {
  return `${target.key} at ${up.addr} closed the connection without a response`;
}

/** Parses an app's response head; a malformed one is the app's fault: 502. */
function parseAppResponse(text: string, target: Target): ResponseHead {
  try {
    return parseResponseHead(text);
  } catch (e) {
    throw new ProxyFailure(
      502,
      `${target.key} sent a malformed response head: ${(e as Error).message}`,
    );
  }
}

/** A complete final response head found in the bytes just read, without decoding it. */
function quickResponseHead(ur: ConnReader): ResponseRead | null {
  const end = findHeadEnd(ur.buf, ur.start, ur.end);
  if (end < 0) return null;
  const info = scanResponseBytes(ur.buf, ur.start, end);
  if (info === null || info.status < 200) return null;
  const got = { info, text: null, start: ur.start, end };
  ur.start = end;
  return got;
}

interface Waiter {
  wake(): void;
}

class Target {
  endpoints: Endpoint[] = [];
  h2c = false;
  readonly waiters = new Set<Waiter>();
  rr = 0;
  constructor(readonly key: string) {}
}

const IDLE_POOL_MAX = 256;
/** Larger writes get their own buffer instead of growing a connection's scratch. */
const SCRATCH_MAX = 32 * 1024;
const POOL_IDLE_MS = 60_000;
const TICK_MS = 50;
/** How long an early-answered client may go on sending its body before we close. */
const LINGER_MS = 2_000;

export class UpstreamConn {
  readonly reader: ConnReader;
  /** Drops the connection when it closes (or talks) while idle in its pool. */
  poolWatch: ((n: number) => void) | null = null;
  idle = false;
  idleSince = 0;
  reused = false;
  /** Writes to the app (Deno's op directly when possible; see conn_io). */
  readonly write: WriteFn;
  constructor(readonly conn: Deno.TcpConn | ByteConn, readonly addr: string) {
    this.reader = new ConnReader(conn);
    this.write = writerFor(conn, this.reader.rid);
  }
}

class Pool {
  readonly idle: UpstreamConn[] = [];
  /** Targets that list this address; the pool closes when none do. */
  refs = 0;

  take(): UpstreamConn | undefined {
    while (this.idle.length > 0) {
      const u = this.idle.pop()!;
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
    if (this.idle.length >= IDLE_POOL_MAX) {
      closeQuietly(u.conn);
      return;
    }
    u.idle = true;
    u.idleSince = Date.now();
    this.idle.push(u);
    // The read that will carry the next response also tells us when the app
    // closes an idle connection, so a dead one is never handed out.
    u.poolWatch ??= (n) => {
      if (u.idle && (n === 0 || u.reader.buffered > 0)) this.#drop(u);
    };
    u.reader.watch = u.poolWatch;
    u.reader.fill();
  }

  #drop(u: UpstreamConn): void {
    const i = this.idle.indexOf(u);
    if (i >= 0) this.idle.splice(i, 1);
    u.idle = false;
    closeQuietly(u.conn);
  }

  sweep(now: number): void {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const u = this.idle[i]!;
      if (now - u.idleSince > POOL_IDLE_MS) this.#drop(u);
    }
  }

  closeAll(): void {
    for (const u of this.idle.splice(0)) {
      u.idle = false;
      closeQuietly(u.conn);
    }
  }
}

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
  exchange: Exchange | null = null;
  /**
   * Reused for what we write upstream and back to the client: one exchange
   * at a time per connection, and each write is awaited before the next.
   */
  readonly upAlloc = scratch(1024);
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
  readonly outAlloc = scratch(2048);
  /** Writes to the client (Deno's op directly when possible; see conn_io). */
  readonly write: WriteFn;
  /** What the X-Forwarded-* fields say about this client. */
  readonly fwd: ForwardOptions;
  constructor(
    readonly conn: ByteConn,
    readonly remoteIp: string,
    readonly proto: "http" | "https",
  ) {
    this.reader = new ConnReader(conn, 16 * 1024, MAX_HEAD_BYTES);
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
  /** Set by the Proxy: what a completed hang-up watch read means for the current exchange. */
  hangupWatch: ((n: number) => void) | null = null;
}

/** Deadline handlers shared by all connections (no closure per request). */
function headerTimedOut(c: ClientConn): void {
  const ex = c.exchange;
  if (ex === null || ex.phase !== Phase.AwaitHead) return;
  ex.timedOut = true;
  if (ex.up) closeQuietly(ex.up.conn);
}

function stalled(c: ClientConn): void {
  const ex = c.exchange;
  if (ex !== null) {
    ex.stalled = true;
    if (ex.up) closeQuietly(ex.up.conn);
  }
  c.close();
}

/** Phases of an exchange, for deciding what a hang-up or a timeout means. */
const enum Phase {
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
  /** Status for metrics and logs: what the client got, or 499. */
  status = 0;
  cold = false;
  gone = false;
  timedOut = false;
  stalled = false;
  /** The client broke its own request body's framing (answered 400 when still possible). */
  clientFault: string | null = null;
  responseStarted = false;
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

  constructor(
    readonly c: ClientConn,
    readonly req: RequestHead,
    readonly route: LiveRoute,
    readonly t0: number,
    requestTimeoutMs: number,
  ) {
    this.requestDeadline = requestTimeoutMs > 0 ? t0 + requestTimeoutMs : Infinity;
  }
}

export interface ProxyOptions {
  config: ProxyConfig;
  counters: SharedCounters;
  metrics: RequestMetrics;
  log: Logger;
  /** A route's concurrency went 0 -> 1 (true) or back to 0 (false). */
  onActivity: (slot: number, active: boolean) => void;
}

export class Proxy {
  readonly #cfg: ProxyConfig;
  readonly #counters: SharedCounters;
  readonly #metrics: RequestMetrics;
  readonly #log: Logger;
  readonly #onActivity: (slot: number, active: boolean) => void;
  #routes = new RouteIndex<LiveRoute>([]);
  readonly #targets = new Map<string, Target>();
  readonly #pools = new Map<string, Pool>();
  readonly #conns = new Set<ClientConn>();
  #ticker: ReturnType<typeof setInterval> | undefined;
  #draining = false;
  #drained: (() => void) | null = null;
  #accepted = 0;
  /** Connections accepted before this close after their next response. */
  #recycleBelow = 0;
  #lastSweep = 0;

  constructor(opts: ProxyOptions) {
    this.#cfg = opts.config;
    this.#counters = opts.counters;
    this.#metrics = opts.metrics;
    this.#log = opts.log;
    this.#onActivity = opts.onActivity;
  }

  get connections(): number {
    return this.#conns.size;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Swaps the routing table (the index is built before the swap). */
  setRoutes(routes: LiveRoute[]): void {
    const index = new RouteIndex(routes);
    this.#routes = index;
    for (const p of index.problems) {
      this.#log.warn("route host ignored", { route: p.key, host: p.host, problem: p.problem });
    }
    this.#metrics.retain(new Set(routes.map((r) => r.key)));
  }

  /** Applies endpoint changes and wakes requests held for those targets. */
  setTargets(updates: TargetUpdate[]): void {
    for (const u of updates) {
      let t = this.#targets.get(u.key);
      if (!t) this.#targets.set(u.key, t = new Target(u.key));
      const next: Endpoint[] = u.endpoints.map((e) => ({
        ip: e.ip,
        port: e.port,
        slot: e.slot,
        addr: e.ip.includes(":") ? `[${e.ip}]:${e.port}` : `${e.ip}:${e.port}`,
      }));
      for (const e of next) {
        let p = this.#pools.get(e.addr);
        if (!p) this.#pools.set(e.addr, p = new Pool());
        p.refs++;
      }
      for (const e of t.endpoints) {
        const p = this.#pools.get(e.addr);
        if (p && --p.refs <= 0) {
          p.closeAll();
          this.#pools.delete(e.addr);
        }
      }
      t.endpoints = next;
      t.h2c = u.h2c;
      if (next.length > 0) { for (const w of [...t.waiters]) w.wake(); }
    }
  }

  /** Serves one accepted connection until it closes; never throws. */
  serve(conn: ByteConn, remoteIp: string, proto: "http" | "https" = "http"): void {
    const c = new ClientConn(conn, remoteIp, proto);
    c.seq = ++this.#accepted;
    c.hangupWatch = (n) => {
      const ex = c.exchange;
      if (ex === null) return;
      if (n === 0) this.#clientGone(ex);
      else if (ex.phase === Phase.Hold) this.#watchHangup(ex);
    };
    if (this.#draining) {
      c.close();
      return;
    }
    this.#conns.add(c);
    this.#ensureTicker();
    this.#serve(c).catch((e) => this.#log.error("connection failed", { error: e }));
  }

  /**
   * Every connection open now closes after its next response (Connection:
   * close), so clients reconnect and the kernel spreads them over all the
   * isolates sharing the port, one that just started included. Idle ones are
   * not cut: a request may already be on its way; they close after answering
   * it, or at the idle timeout.
   */
  recycle(): void {
    this.#recycleBelow = this.#accepted + 1;
  }

  /** The client connection closes after this response. */
  #closing(c: ClientConn): boolean {
    return this.#draining || c.seq < this.#recycleBelow;
  }

  /**
   * Stops keep-alive: idle connections close now, busy ones after their
   * response. Resolves when none are left or the timeout passes (then the
   * rest are closed).
   */
  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    for (const c of this.#conns) if (c.idle && c.reader.buffered === 0) c.close();
    if (this.#conns.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
        timer = setTimeout(resolve, timeoutMs);
        if (this.#conns.size === 0) resolve();
      });
      clearTimeout(timer);
    }
    for (const c of this.#conns) c.close();
    for (const p of this.#pools.values()) p.closeAll();
  }

  /** Stops the ticker and closes everything (tests, shutdown). */
  close(): void {
    for (const c of this.#conns) c.close();
    for (const p of this.#pools.values()) p.closeAll();
    if (this.#ticker !== undefined) clearInterval(this.#ticker);
    this.#ticker = undefined;
  }

  #ensureTicker(): void {
    if (this.#ticker !== undefined) return;
    const ticker = setInterval(() => this.#tick(), TICK_MS);
    Deno.unrefTimer(ticker as unknown as number);
    this.#ticker = ticker;
  }

  #tick(): void {
    const now = Date.now();
    for (const c of this.#conns) {
      if (now >= c.at) {
        const fn = c.onTimeout;
        c.at = Infinity;
        c.onTimeout = null;
        try {
          fn?.(c);
        } catch (e) {
          this.#log.error("timeout handler failed", { error: e });
        }
      }
    }
    if (now - this.#lastSweep > 5_000) {
      this.#lastSweep = now;
      for (const p of this.#pools.values()) p.sweep(now);
    }
    if (this.#conns.size === 0 && this.#ticker !== undefined) {
      clearInterval(this.#ticker);
      this.#ticker = undefined;
    }
  }

  /**
   * A client connection's loop: read a request, forward it, repeat. The
   * common path of an exchange is inline here rather than in async methods of
   * its own: each async call allocates a frame with room for all of its
   * registers, live for the whole exchange, while this loop's frame is
   * allocated once per connection. Less young garbage per request is fewer
   * GCs, and each GC copies what in-flight exchanges hold.
   */
  async #serve(c: ClientConn): Promise<void> {
    try {
      const r = c.reader;
      while (!c.closed) {
        // The common case inline: wait for the next read (usually the hang-up
        // watch's, already in flight), then a complete head is in the buffer.
        let req: RequestHead | null | undefined = this.#bufferedRequest(c);
        if (req === undefined && r.buffered === 0 && !r.eof) {
          c.idle = true;
          c.deadline(this.#cfg.idleTimeoutMs, c.closeNow);
          const n = await r.fill();
          c.clearDeadline();
          if (n === 0) break;
          req = this.#bufferedRequest(c);
        }
        // A partial head, a bad one, or a slow client: the careful path.
        if (req === undefined) req = await this.#readRequest(c);
        if (req === null) break;

        // Millisecond clock (no op call): the histogram's smallest bucket is 1 ms.
        const t0 = Date.now();
        const route = this.#routes.lookup(req.host, req.path, req.headers);
        if (!route) {
          if (!(await this.#noRoute(c, req, t0)) || this.#draining) break;
          continue;
        }
        const ex = this.#begin(c, req, route, t0);
        try {
          // The common case first: a ready endpoint, plain HTTP/1.1 upstream.
          let target: Target | null = this.#target(route.targetKey);
          const ep = target.h2c ? null : this.#pick(target);
          if (ep !== null) this.#use(ex, ep);
          else target = await this.#forward(ex);
          if (target !== null) {
            // HTTP/1.1 forwarding over a pooled or new connection.
            const body = this.#requestStart(ex);
            let up: UpstreamConn;
            let head: ResponseRead;
            let pump: Promise<void> | null;
            for (let tries = 0;; tries++) {
              ex.phase = Phase.Connect;
              up = this.#pools.get(ex.ep!.addr)?.take() ?? await this.#connect(ex, target);
              ex.up = up;
              if (ex.gone) throw new Gone();
              let written = false;
              try {
                const n = await up.write(body.first);
                written = n > 0;
                if (n < body.first.length) await writeAll(up, body.first.subarray(n));
              } catch (e) {
                this.#upstreamBroke(ex, up, body, tries, written, sendFailed(target, up, e));
                continue; // #upstreamBroke throws unless the request can be re-sent.
              }
              pump = this.#requestSent(ex, up, body);
              // Usually the whole head arrives in one read: look at it here.
              const ur = up.reader;
              const got =
                (ur.buffered === 0 && (await ur.fill()) > 0 ? quickResponseHead(ur) : null) ??
                  await this.#readResponseHead(ex, up, target);
              if (got !== "retry") {
                head = got;
                break;
              }
              this.#upstreamBroke(ex, up, body, tries, true, noResponse(target, up));
            }
            if (head.info.status === 101) {
              await this.#upgraded(ex, up, head, target);
            } else {
              const rel = this.#responseStart(ex, up, head, body, target);
              // A client that does not read is bounded like one that stops mid-body.
              this.#stallWatch(ex);
              try {
                const n = await c.write(rel.out);
                if (n < rel.out.length) await writeAll(c, rel.out.subarray(n));
                if (rel.parts) {
                  for (const [a, b] of rel.parts) {
                    await writeAll(c, up.reader.buf.subarray(a, b));
                  }
                }
                up.reader.start += rel.bodyBytes;
              } catch {
                this.#abort(ex);
              }
              if (!rel.done && !ex.gone) {
                this.#stallWatch(ex);
                rel.upstreamOk = await this.#relayResponseBody(ex, up, rel);
              }
              if (!ex.gone) {
                // The client has its whole response: a hang-up from here on is no abort.
                ex.phase = Phase.Done;
                c.clearDeadline();
                if (pump !== null) {
                  if (!body.done) {
                    // The app answered before reading the whole body: stop sending it,
                    // free the pod, and read what the client still sends for a bounded
                    // linger (closing with unread bytes would reset the connection,
                    // which can destroy the response on its way).
                    body.failed = true;
                    closeQuietly(up.conn);
                    this.#releasePod(ex);
                    ex.stallWatch = false;
                    c.deadline(LINGER_MS, c.closeNow);
                  }
                  await pump;
                }
                this.#proxyEnd(ex, up, body, rel);
              }
            }
          }
        } catch (e) {
          await this.#failed(ex, e);
        } finally {
          this.#end(ex);
        }
        // A response sent without "Connection: close" promised the client it
        // may send another request: a recycle that came meanwhile waits for
        // the next response (closing now would drop a request already sent).
        if (!ex.keepClient || ex.gone || this.#draining) break;
      }
    } finally {
      c.close();
      this.#conns.delete(c);
      if (this.#conns.size === 0 && this.#drained) this.#drained();
    }
  }

  /** A complete, valid request head already in the buffer; undefined otherwise. */
  #bufferedRequest(c: ClientConn): RequestHead | undefined {
    const r = c.reader;
    if (r.buffered === 0 || c.closed) return undefined;
    const end = findHeadEnd(r.buf, r.start, r.end);
    if (end < 0) return undefined;
    let req: RequestHead;
    try {
      req = parseRequestHead(binaryString(r.buf, r.start, end));
    } catch {
      return undefined; // #readRequest answers the error.
    }
    if (req.simple) req.raw = r.buf.subarray(r.start, end);
    r.start = end;
    c.idle = false;
    return req;
  }

  /** Reads one request head; null when the connection should close. */
  async #readRequest(c: ClientConn): Promise<RequestHead | null> {
    const r = c.reader;
    let started = false;
    c.idle = true;
    c.deadline(this.#cfg.idleTimeoutMs, c.closeNow);
    try {
      while (true) {
        if (r.buffered > 0) {
          const end = findHeadEnd(r.buf, r.start, r.end);
          if (end >= 0) {
            const text = binaryString(r.buf, r.start, end);
            const start = r.start;
            r.start = end;
            c.clearDeadline();
            c.idle = false;
            try {
              const req = parseRequestHead(text);
              // For forwarding the head as received; a view, copied before any wait.
              if (req.simple) req.raw = r.buf.subarray(start, end);
              return req;
            } catch (e) {
              if (!(e instanceof HttpError)) throw e;
              await this.#reject(c, e.status, e.message, e.headers);
              return null;
            }
          }
          if (!started) {
            started = true;
            c.idle = false;
            c.deadline(this.#cfg.headTimeoutMs, () => {
              this.#metrics.record("", "OTHER", 408, this.#cfg.headTimeoutMs / 1000);
              // Best effort: the client is too slow to send a head, tell it why.
              c.write(plainResponse(408, "request head not received in time\n", {
                close: true,
              })).catch(() => {}).finally(() => c.close());
            });
          }
        }
        if (c.closed) return null;
        let n: number;
        try {
          n = await r.fill();
        } catch (e) {
          if (!(e instanceof BufferFull)) throw e;
          await this.#reject(c, 431, `request head larger than ${MAX_HEAD_BYTES} bytes`);
          return null;
        }
        if (n === 0) return null;
      }
    } finally {
      if (c.exchange === null) c.clearDeadline();
    }
  }

  async #reject(
    c: ClientConn,
    status: number,
    message: string,
    headers?: Array<[string, string]>,
  ): Promise<void> {
    this.#metrics.record("", "OTHER", status, 0);
    this.#log.debug("bad request", { status, problem: message, client: c.remoteIp });
    // A client that does not read its answer must not keep the connection forever.
    c.deadline(this.#cfg.idleTimeoutMs, c.closeNow);
    try {
      await writeAll(c, plainResponse(status, `${message}\n`, { close: true, headers }));
    } catch {
      // The client is gone; nothing to tell it.
    }
  }

  /** An exchange starts: it is counted from here until #end. */
  #begin(c: ClientConn, req: RequestHead, route: LiveRoute, t0: number): Exchange {
    const ex = new Exchange(c, req, route, t0, this.#cfg.requestTimeoutMs);
    c.exchange = ex;
    if (this.#counters.begin(route.slot)) this.#onActivity(route.slot, true);
    return ex;
  }

  /** What an exchange that threw answers, if the client can still be told. */
  async #failed(ex: Exchange, e: unknown): Promise<void> {
    if (e instanceof ProxyFailure) {
      await this.#fail(ex, e.status, e.message, e.headers);
    } else if (ex.gone) {
      ex.status = 499;
    } else {
      this.#log.error("request failed", { route: ex.route.key, error: e });
      await this.#fail(ex, 502, "the interceptor failed to forward this request");
    }
  }

  /** Every exchange ends here, however it went: counters back down, metrics, the 499 log. */
  #end(ex: Exchange): void {
    const { c, req, route } = ex;
    ex.phase = Phase.Done;
    c.exchange = null;
    c.clearDeadline();
    if (ex.ep) this.#counters.podEnd(ex.ep.slot);
    if (ex.up) closeQuietly(ex.up.conn);
    if (this.#counters.end(route.slot)) this.#onActivity(route.slot, false);
    if (ex.gone && ex.status !== 101) ex.status = 499;
    const secs = (Date.now() - ex.t0) / 1000;
    this.#metrics.record(route.key, req.method, ex.status, secs);
    if (ex.status === 499) {
      this.#log.info("client closed the request before the response was complete", {
        route: route.key,
        method: req.method,
        path: utf8Of(req.path).slice(0, 200),
        status: 499,
        ms: Math.round(secs * 1000),
        phase: ex.responseStarted ? "response" : "before response",
      });
    }
  }

  async #noRoute(c: ClientConn, req: RequestHead, t0: number): Promise<boolean> {
    const host = utf8Of(req.host).slice(0, 200);
    const path = utf8Of(req.path).slice(0, 200);
    const hasBody = req.contentLength > 0 || req.chunked;
    const close = !req.keepAlive || hasBody || this.#closing(c);
    c.deadline(this.#cfg.idleTimeoutMs, c.closeNow);
    try {
      await writeAll(
        c.conn,
        plainResponse(404, `no route for host "${host}" and path "${path}"\n`, {
          close,
          http10: req.minor === 0,
          head: req.method === "HEAD",
        }),
      );
    } catch {
      return false;
    } finally {
      c.clearDeadline();
    }
    this.#metrics.record("", req.method, 404, (Date.now() - t0) / 1000);
    return !close;
  }

  /** Answers with the proxy's own status when nothing has been sent yet. */
  async #fail(
    ex: Exchange,
    status: number,
    message: string,
    headers?: Array<[string, string]>,
  ): Promise<void> {
    if (ex.responseStarted || ex.gone) {
      ex.keepClient = false;
      return;
    }
    const { req } = ex;
    const hasBody = req.contentLength > 0 || req.chunked;
    // The body may be partly unread: only keep the connection if none was sent.
    const close = !req.keepAlive || hasBody || this.#closing(ex.c);
    const extra: Array<[string, string]> = [...(headers ?? [])];
    if (this.#cfg.coldStartHeader) extra.push(["X-KEDA-HTTP-Cold-Start", String(ex.cold)]);
    ex.status = status;
    ex.responseStarted = true;
    if (status >= 500) {
      this.#log.warn("request failed", {
        route: ex.route.key,
        status,
        problem: message,
        method: req.method,
        path: utf8Of(req.path).slice(0, 200),
      });
    }
    ex.c.deadline(this.#cfg.idleTimeoutMs, stalled);
    try {
      await writeAll(
        ex.c.conn,
        plainResponse(status, `${message}\n`, {
          close,
          http10: req.minor === 0,
          headers: extra,
          head: req.method === "HEAD",
        }),
      );
      ex.keepClient = !close;
    } catch {
      ex.gone = true;
      ex.keepClient = false;
    }
  }

  /** The readiness wait for a route: conditionWait, else the configured default. */
  #readinessMs(route: LiveRoute): number {
    return route.timeouts.conditionWaitMs ?? this.#cfg.readinessTimeoutMs;
  }

  #target(key: string): Target {
    let t = this.#targets.get(key);
    if (!t) this.#targets.set(key, t = new Target(key));
    return t;
  }

  /** Least in-flight ready endpoint (shared counts), rotating the start to spread ties. */
  #pick(t: Target, avoid?: Endpoint): Endpoint | null {
    const eps = t.endpoints;
    const n = eps.length;
    if (n === 0) return null;
    const cap = this.#cfg.podConcurrencyLimit;
    const start = t.rr++ % n;
    let best: Endpoint | null = null;
    let bestLoad = Infinity;
    for (let k = 0; k < n; k++) {
      const ep = eps[(start + k) % n]!;
      let load = this.#counters.podLoad(ep.slot);
      if (cap > 0 && load >= cap) continue;
      if (ep === avoid && n > 1) load += 0.5;
      if (load < bestLoad) {
        best = ep;
        bestLoad = load;
        if (load === 0) break;
      }
    }
    return best;
  }

  /** The pod's in-flight count ends before the exchange does (an early response's linger). */
  #releasePod(ex: Exchange): void {
    if (ex.ep) this.#counters.podEnd(ex.ep.slot);
    ex.ep = null;
  }

  #use(ex: Exchange, ep: Endpoint): void {
    if (ex.ep) this.#counters.podEnd(ex.ep.slot);
    ex.ep = ep;
    this.#counters.podBegin(ep.slot);
  }

  /** Starts noticing a client that hangs up (the read is the next request's read). */
  #watchHangup(ex: Exchange): void {
    const r = ex.c.reader;
    if (r.reading || r.eof) {
      if (r.eof) this.#clientGone(ex);
      return;
    }
    if (r.end === r.buf.length) return; // Full: we cannot read without buffering more.
    r.watch = ex.c.hangupWatch;
    r.fill();
  }

  #clientGone(ex: Exchange): void {
    if (ex.c.exchange !== ex || ex.gone) return;
    if (ex.phase === Phase.Done || ex.phase === Phase.Upgraded) return;
    ex.gone = true;
    ex.wake?.("aborted");
    ex.onGone?.();
    if (ex.up) closeQuietly(ex.up.conn);
  }

  /**
   * The slow path to an endpoint: hold until one is ready, or fail over. Returns
   * the target to forward to over HTTP/1.1, or null when the exchange is over
   * (the client left, or it went over h2c here).
   */
  async #forward(ex: Exchange): Promise<Target | null> {
    const route = ex.route;
    // The head's view into the client buffer would not survive the reads a wait makes.
    if (ex.req.raw !== null) ex.req.raw = ex.req.raw.slice();
    let target = this.#target(route.targetKey);
    const first = this.#pick(target);
    if (first) {
      this.#use(ex, first);
    } else {
      ex.cold = target.endpoints.length === 0;
      const fb = route.fallbackKey !== undefined ? route.fallback : undefined;
      const waitMs = fb ? fb.timeoutMs : this.#readinessMs(route);
      const deadline = Math.min(ex.t0 + waitMs, ex.requestDeadline);
      const r = await this.#hold(ex, target, deadline);
      if (r === "aborted") return null;
      if (r === "full") {
        throw new ProxyFailure(
          503,
          `too many requests are waiting for ${route.key} to become ready; retry later`,
          [["Retry-After", String(this.#cfg.retryAfterSeconds)]],
        );
      }
      if (r === "timeout") {
        if (fb && route.fallbackKey !== undefined && Date.now() < ex.requestDeadline) {
          target = this.#target(route.fallbackKey);
          const ep = this.#pick(target);
          if (!ep) {
            throw new ProxyFailure(
              503,
              `${route.key} did not become ready within ${
                formatDuration(waitMs)
              } and its fallback Service ${fb.service} has no ready endpoint`,
            );
          }
          this.#use(ex, ep);
        } else {
          throw new ProxyFailure(
            504,
            `${route.key} did not become ready within ${
              formatDuration(Math.min(waitMs, ex.requestDeadline - ex.t0))
            }; the app may still be starting, retry later`,
          );
        }
      }
    }
    if (target.h2c && ex.req.upgrade === null) {
      ex.phase = Phase.Connect;
      const deadline = Math.max(ex.t0 + this.#readinessMs(route), Date.now()) +
        this.#cfg.connectTimeoutMs;
      await forwardH2c(ex, this.#h2cContext(target, deadline));
      return null;
    }
    return target;
  }

  /** Waits for a usable endpoint; resolves how the wait ended. */
  async #hold(
    ex: Exchange,
    target: Target,
    deadline: number,
  ): Promise<"ready" | "timeout" | "aborted" | "full"> {
    const slot = ex.route.slot;
    if (!this.#counters.holdBegin(slot, this.#cfg.maxHeldRequests)) return "full";
    ex.phase = Phase.Hold;
    this.#watchHangup(ex);
    try {
      while (true) {
        if (ex.gone) return "aborted";
        const ep = this.#pick(target);
        if (ep) {
          this.#use(ex, ep);
          return "ready";
        }
        const now = Date.now();
        if (now >= deadline) return "timeout";
        // Endpoints exist but are all at the per-pod cap: releases in other
        // isolates do not wake us, so look again soon.
        const capped = target.endpoints.length > 0;
        const at = capped ? Math.min(deadline, now + 20) : deadline;
        const waiter: Waiter = { wake: () => {} };
        const why = await new Promise<"wake" | "timeout" | "aborted">((resolve) => {
          waiter.wake = () => resolve("wake");
          target.waiters.add(waiter);
          ex.wake = resolve;
          ex.c.deadlineAt(at, () => resolve(at < deadline ? "wake" : "timeout"));
        });
        target.waiters.delete(waiter);
        ex.wake = null;
        ex.c.clearDeadline();
        if (why === "aborted") return "aborted";
        if (why === "timeout") return "timeout";
      }
    } finally {
      ex.wake = null;
      this.#counters.holdEnd(slot);
    }
  }

  /** A live connection to the exchange's endpoint, retrying until the deadline. */
  async #connect(ex: Exchange, target: Target): Promise<UpstreamConn> {
    ex.phase = Phase.Connect;
    const deadline = Math.min(
      Math.max(ex.t0 + this.#readinessMs(ex.route), Date.now() + this.#cfg.connectTimeoutMs),
      ex.requestDeadline,
    );
    let attempt = 0;
    let lastError = "";
    while (true) {
      const ep = ex.ep!;
      const pooled = this.#pools.get(ep.addr)?.take();
      if (pooled) return pooled;
      try {
        const conn = await Deno.connect({
          hostname: ep.ip,
          port: ep.port,
          signal: AbortSignal.timeout(this.#cfg.connectTimeoutMs),
        });
        conn.setNoDelay(true);
        const u = new UpstreamConn(conn, ep.addr);
        if (ex.gone) {
          this.#release(u);
          throw new Gone();
        }
        return u;
      } catch (e) {
        if (e instanceof Gone || ex.gone) throw new Gone();
        lastError = (e as Error).name === "TimeoutError"
          ? `no answer within ${formatDuration(this.#cfg.connectTimeoutMs)}`
          : (e as Error).message;
      }
      const wait = Math.min(10 * 2 ** attempt++, 250);
      if (Date.now() + wait >= deadline) {
        throw new ProxyFailure(
          502,
          `could not connect to ${target.key} at ${ep.addr}: ${lastError}`,
        );
      }
      await new Promise<void>((resolve) => {
        ex.c.deadline(wait, () => resolve());
        ex.wake = () => resolve();
      });
      ex.wake = null;
      ex.c.clearDeadline();
      if (ex.gone) throw new Gone();
      const next = this.#pick(target, ep);
      if (next && next !== ep) this.#use(ex, next);
    }
  }

  #release(u: UpstreamConn): void {
    const p = this.#pools.get(u.addr);
    if (p && !this.#draining) p.release(u);
    else closeQuietly(u.conn);
  }

  #h2cContext(target: Target, deadline: number) {
    return {
      cfg: this.#cfg,
      log: this.#log,
      target: target.key,
      connectDeadline: deadline,
      setPhaseAwaitHead: (ex: Exchange) => (ex.phase = Phase.AwaitHead),
      setPhaseBody: (ex: Exchange) => (ex.phase = Phase.Body),
      watchHangup: (ex: Exchange) => this.#watchHangup(ex),
      closing: (ex: Exchange) => this.#closing(ex.c),
    };
  }

  /** Body framing of the request, and the first write: the head plus what is buffered of the body. */
  #requestStart(ex: Exchange): RequestBody {
    const { req, c } = ex;
    const r = c.reader;
    const body: RequestBody = {
      remaining: req.contentLength > 0 ? req.contentLength : 0,
      scanner: req.chunked ? new ChunkedScanner() : null,
      done: false,
      failed: false,
      first: EMPTY,
      replayable: false,
    };
    body.done = !req.chunked && body.remaining === 0;
    let take = 0;
    if (body.remaining > 0) {
      take = Math.min(body.remaining, r.buffered);
      body.remaining -= take;
      body.done = body.remaining === 0;
    } else if (body.scanner) {
      let e: number;
      try {
        e = body.scanner.scan(r.buf, r.start, r.end);
      } catch (err) {
        throw new ProxyFailure(400, this.#badChunkedBody(ex, err));
      }
      take = (e >= 0 ? e : r.end) - r.start;
      body.done = e >= 0;
    }
    let headLength: number;
    const spliced = spliceRequestHead(req, c.fwd, take, c.upAlloc, c.forwardedLines);
    if (spliced) {
      body.first = spliced.bytes;
      headLength = spliced.headLength;
    } else {
      const headText = upstreamRequestHead(req, c.fwd);
      body.first = binaryBytes(headText, take, c.upAlloc);
      headLength = headText.length;
    }
    if (take > 0) body.first.set(r.buf.subarray(r.start, r.start + take), headLength);
    r.start += take;
    body.replayable = body.done;
    return body;
  }

  /**
   * Sending or awaiting the response failed on `up`. When a pooled connection
   * turns out to have been closed by the app meanwhile, the request is sent
   * again (once) on a fresh one if none of it was written, or if it was sent
   * whole and is idempotent (RFC 9110 9.2.2: the app may have run it);
   * otherwise this throws.
   */
  #upstreamBroke(
    ex: Exchange,
    up: UpstreamConn,
    body: RequestBody,
    tries: number,
    written: boolean,
    message: string,
  ): void {
    ex.up = null;
    closeQuietly(up.conn);
    if (ex.gone) throw new Gone();
    if (ex.clientFault !== null) throw new ProxyFailure(400, ex.clientFault);
    if (up.reused && tries === 0 && (!written || (body.replayable && isIdempotent(ex.req)))) {
      return;
    }
    throw new ProxyFailure(502, message);
  }

  /** The request is out: watch for hang-ups and the header timeout, or start pumping the body. */
  #requestSent(ex: Exchange, up: UpstreamConn, body: RequestBody): Promise<void> | null {
    ex.phase = Phase.AwaitHead;
    if (body.done) {
      this.#watchHangup(ex);
      this.#armHeaderTimeout(ex, up);
      return null;
    }
    this.#stallWatch(ex);
    return this.#pumpRequestBody(ex, up, body).then(() => {
      if (ex.phase === Phase.AwaitHead && !ex.gone) this.#armHeaderTimeout(ex, up);
      this.#watchHangup(ex);
    }, (e) => {
      body.failed = true;
      if (!(e instanceof Gone)) {
        this.#log.debug("request body not fully sent", { route: ex.route.key, error: e });
      }
    });
  }

  /** How the response goes back: its framing, and the first write (head plus buffered body). */
  #responseStart(
    ex: Exchange,
    up: UpstreamConn,
    head: ResponseRead,
    body: RequestBody,
    target: Target,
  ): Relay {
    const { req, c } = ex;
    const res = head.info;
    ex.phase = Phase.Body;
    const http10 = req.minor === 0;
    const rel = new Relay();
    if (responseHasNoBody(req.method, res.status)) rel.mode = "none";
    else if (res.chunked) rel.mode = "chunked";
    else if (res.contentLength >= 0) {
      rel.mode = "length";
      rel.left = res.contentLength;
    } else rel.mode = "close";
    rel.dechunk = rel.mode === "chunked" && http10;
    // A response that comes before the whole request body closes the connection:
    // the rest of the body is not forwarded, and the client cannot reuse it.
    rel.closeClient = !req.keepAlive || this.#closing(c) || rel.mode === "close" ||
      rel.dechunk || body.failed || !body.done;
    rel.reusable = !res.close;
    const coldStart = this.#cfg.coldStartHeader ? ex.cold : null;
    const ur = up.reader;
    if (rel.mode === "chunked") rel.rs = new ChunkedScanner();
    rel.done = rel.mode === "none" || (rel.mode === "length" && rel.left === 0);
    // Body bytes already read go out with the head, in one write.
    let parts: Array<[number, number]> | null = null;
    if (!rel.done && ur.buffered > 0) {
      if (rel.mode === "length") {
        rel.bodyBytes = Math.min(rel.left, ur.buffered);
        rel.left -= rel.bodyBytes;
        rel.done = rel.left === 0;
      } else if (rel.rs) {
        if (rel.dechunk) parts = rel.parts = [];
        const e = rel.rs.scan(
          ur.buf,
          ur.start,
          ur.end,
          parts ? (a, b) => parts!.push([a, b]) : undefined,
        );
        rel.bodyBytes = (e >= 0 ? e : ur.end) - ur.start;
        rel.done = e >= 0;
      } else {
        rel.bodyBytes = ur.buffered;
      }
    }
    let out: Uint8Array;
    let outHead: number;
    if (res.spliceable && !http10) {
      // The app's head as received, our lines before its blank line.
      const extra = responseExtraLines(coldStart, rel.closeClient);
      const keep = head.end - head.start - 2;
      outHead = keep + extra.length;
      out = c.outAlloc(parts ? outHead : outHead + rel.bodyBytes);
      out.set(ur.buf.subarray(head.start, head.start + keep));
      out.set(extra, keep);
    } else {
      // Decoded only now: the bytes are still in the reader's buffer, untouched.
      const headText = head.text ?? binaryString(ur.buf, head.start, head.end);
      const text = clientResponseHead(parseAppResponse(headText, target), {
        coldStart,
        close: rel.closeClient,
        http10,
        dechunk: rel.dechunk,
        upgraded: false,
      });
      outHead = text.length;
      out = binaryBytes(text, parts ? 0 : rel.bodyBytes, c.outAlloc);
    }
    if (rel.bodyBytes > 0 && !parts) {
      out.set(ur.buf.subarray(ur.start, ur.start + rel.bodyBytes), outHead);
    }
    rel.out = out;
    ex.status = res.status;
    ex.responseStarted = true;
    return rel;
  }

  /** The exchange is complete: pool the upstream connection when it can be reused. */
  #proxyEnd(ex: Exchange, up: UpstreamConn, body: RequestBody, rel: Relay): void {
    const reusable = rel.upstreamOk && rel.mode !== "close" && rel.reusable && !body.failed &&
      up.reader.buffered === 0 && !ex.stalled;
    ex.up = null;
    if (reusable) this.#release(up);
    else closeQuietly(up.conn);
    ex.keepClient = !rel.closeClient && rel.upstreamOk && !body.failed;
  }

  #armHeaderTimeout(ex: Exchange, _up: UpstreamConn): void {
    ex.stallWatch = false;
    const ms = ex.route.timeouts.responseHeaderMs ?? this.#cfg.responseHeaderTimeoutMs;
    ex.c.deadlineAt(Math.min(Date.now() + ms, ex.requestDeadline), headerTimedOut);
  }

  /** From now on, no progress for the idle timeout ends the exchange. */
  #stallWatch(ex: Exchange): void {
    ex.stallWatch = true;
    ex.c.deadline(this.#cfg.idleTimeoutMs, stalled);
  }

  #progress(ex: Exchange): void {
    if (ex.stallWatch) ex.c.at = Date.now() + this.#cfg.idleTimeoutMs;
  }

  /** The client is gone (a write to it failed): stop both sides. */
  #abort(ex: Exchange): void {
    ex.gone = true;
    if (ex.up) closeQuietly(ex.up.conn);
    ex.c.close();
  }

  /** Reads the final response head, relaying interim (1xx) ones. */
  async #readResponseHead(
    ex: Exchange,
    up: UpstreamConn,
    target: Target,
  ): Promise<ResponseRead | "retry"> {
    const ur = up.reader;
    let sawBytes = false;
    while (true) {
      if (ur.buffered > 0) {
        sawBytes = true;
        const end = findHeadEnd(ur.buf, ur.start, ur.end);
        if (end >= 0) {
          const start = ur.start;
          const text = binaryString(ur.buf, start, end);
          // The byte scanner answers only for plainly valid heads; the parser decides the rest.
          let info = scanResponseBytes(ur.buf, start, end);
          let full: ResponseHead | null = null;
          if (info === null) {
            full = parseAppResponse(text, target);
            info = {
              status: full.status,
              minor: full.minor,
              contentLength: full.contentLength,
              chunked: full.chunked,
              close: full.close,
              spliceable: false,
            };
          }
          ur.start = end;
          if (info.status >= 100 && info.status < 200 && info.status !== 101) {
            if (ex.req.minor === 1) {
              const interim = clientResponseHead(full ?? parseAppResponse(text, target), {
                coldStart: null,
                close: false,
                http10: false,
                dechunk: false,
                upgraded: false,
              });
              try {
                await writeAll(ex.c, binaryBytes(interim));
              } catch {
                ex.gone = true;
                throw new Gone();
              }
            }
            continue;
          }
          return { info, text, start, end };
        }
      }
      let n: number;
      try {
        n = await ur.fill();
      } catch (e) {
        if (e instanceof BufferFull) {
          throw new ProxyFailure(
            502,
            `${target.key} sent a response head over ${MAX_HEAD_BYTES} bytes`,
          );
        }
        throw e;
      }
      if (n === 0) {
        if (ex.gone) throw new Gone();
        if (ex.clientFault !== null) throw new ProxyFailure(400, ex.clientFault);
        if (ex.timedOut) {
          const ms = ex.route.timeouts.responseHeaderMs ?? this.#cfg.responseHeaderTimeoutMs;
          throw new ProxyFailure(
            504,
            Date.now() >= ex.requestDeadline
              ? `${target.key} did not answer within the request timeout`
              : `${target.key} sent no response head within ${formatDuration(ms)}`,
          );
        }
        if (ex.stalled) {
          throw new ProxyFailure(504, `${target.key} stopped reading the request body`);
        }
        if (!sawBytes) return "retry";
        throw new ProxyFailure(
          502,
          `${target.key} closed the connection in the middle of a response head`,
        );
      }
    }
  }

  /**
   * Streams the rest of the request body to the app. Once the body has
   * failed (the app answered early), what the client still sends is read
   * and dropped, so the connection can close without a reset.
   */
  async #pumpRequestBody(ex: Exchange, up: UpstreamConn, body: RequestBody): Promise<void> {
    const r = ex.c.reader;
    while (true) {
      const n = await r.fill();
      if (n === 0) {
        if (body.failed) return;
        this.#clientGone(ex);
        throw new Gone();
      }
      let take: number;
      if (body.scanner) {
        let e: number;
        try {
          e = body.scanner.scan(r.buf, r.start, r.end);
        } catch (err) {
          // Malformed chunked framing from the client: never forwarded; 400 if not answered yet.
          ex.clientFault = this.#badChunkedBody(ex, err);
          if (ex.up) closeQuietly(ex.up.conn);
          throw err;
        }
        take = (e >= 0 ? e : r.end) - r.start;
        body.done = e >= 0;
      } else {
        take = Math.min(body.remaining, r.buffered);
        body.remaining -= take;
        body.done = body.remaining === 0;
      }
      if (!body.failed) {
        try {
          await writeAll(up, r.buf.subarray(r.start, r.start + take));
        } catch (e) {
          if (!body.failed) throw e;
        }
      }
      r.start += take;
      this.#progress(ex);
      if (body.done) return;
    }
  }

  /** A client's malformed chunked body: its fault, logged once, answered 400 if still possible. */
  #badChunkedBody(ex: Exchange, err: unknown): string {
    if (!(err instanceof HttpError)) throw err;
    const message = `malformed chunked request body: ${err.message}`;
    this.#log.warn("client sent a malformed request body", {
      route: ex.route.key,
      client: ex.c.remoteIp,
      problem: err.message,
    });
    return message;
  }

  /** Relays the rest of a response body; false when the upstream broke framing. */
  async #relayResponseBody(ex: Exchange, up: UpstreamConn, rel: Relay): Promise<boolean> {
    const { mode, rs, dechunk } = rel;
    const ur = up.reader;
    const c = ex.c;
    while (true) {
      const n = await ur.fill();
      if (n === 0) {
        if (ex.gone || ex.stalled) return false;
        if (mode === "close") return true;
        // Truncated: the client can only learn it from the connection closing.
        this.#log.warn("the app closed the connection in the middle of a response body", {
          route: ex.route.key,
          upstream: up.addr,
        });
        ex.keepClient = false;
        c.close();
        return false;
      }
      let take: number;
      let done = false;
      let parts: Array<[number, number]> | null = null;
      if (mode === "length") {
        take = Math.min(rel.left, ur.buffered);
        rel.left -= take;
        done = rel.left === 0;
      } else if (rs) {
        if (dechunk) parts = [];
        let e: number;
        try {
          e = rs.scan(ur.buf, ur.start, ur.end, parts ? (a, b) => parts!.push([a, b]) : undefined);
        } catch {
          this.#log.warn("the app sent malformed chunked framing", {
            route: ex.route.key,
            upstream: up.addr,
          });
          c.close();
          return false;
        }
        take = (e >= 0 ? e : ur.end) - ur.start;
        done = e >= 0;
      } else {
        take = ur.buffered;
      }
      try {
        if (parts) { for (const [a, b] of parts) await writeAll(c, ur.buf.subarray(a, b)); }
        else await writeAll(c, ur.buf.subarray(ur.start, ur.start + take));
      } catch {
        this.#abort(ex);
        return false;
      }
      ur.start += take;
      this.#progress(ex);
      if (done) return true;
    }
  }

  /** After a 101: bytes flow both ways until both sides are done. */
  async #upgraded(
    ex: Exchange,
    up: UpstreamConn,
    got: ResponseRead,
    target: Target,
  ): Promise<void> {
    if (ex.req.upgrade === null) {
      throw new ProxyFailure(502, `${target.key} switched protocols without being asked to`);
    }
    const head = clientResponseHead(parseAppResponse(got.text!, target), {
      coldStart: this.#cfg.coldStartHeader ? ex.cold : null,
      close: false,
      http10: false,
      dechunk: false,
      upgraded: true,
    });
    ex.status = 101;
    ex.responseStarted = true;
    ex.phase = Phase.Upgraded;
    ex.c.clearDeadline();
    const ur = up.reader;
    const out = binaryBytes(head, ur.buffered);
    out.set(ur.buf.subarray(ur.start, ur.end), head.length);
    ur.start = ur.end;
    try {
      await writeAll(ex.c, out);
    } catch {
      return;
    }
    ex.keepClient = false;
    const pipe = async (from: ConnReader, to: ClientConn | UpstreamConn) => {
      try {
        while (true) {
          if (from.buffered > 0) {
            await writeAll(to, from.buf.subarray(from.start, from.end));
            from.start = from.end;
          }
          const n = await from.fill();
          if (n === 0) break;
        }
        await to.conn.closeWrite();
      } catch {
        // Either side failing ends both directions.
        closeQuietly(up.conn);
        ex.c.close();
      }
    };
    await Promise.all([pipe(ex.c.reader, up), pipe(ur, ex.c)]);
    closeQuietly(up.conn);
    ex.up = null;
  }
}

export { Phase as ExchangePhase };
