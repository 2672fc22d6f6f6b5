/**
 * The data plane of one isolate: HTTP/1.1 over raw connections, forwarded
 * straight to ready pod addresses over pooled keep-alive connections.
 *
 * Per request: route lookup -> count -> pick the least-loaded ready endpoint
 * (targets.ts; or hold until the EndpointSlice watch reports one, hold.ts)
 * -> one write of head and buffered body upstream -> one write of response
 * head and buffered body back (upstream_leg.ts). Time bounds come from
 * deadlines.ts, checked by one coarse ticker over all connections instead
 * of a timer per request.
 */
import type { Logger } from "../shared/log.ts";
import type { SpanHandle, Tracing } from "../shared/tracing.ts";
import { formatDuration } from "../shared/duration.ts";
import { BufferFull, type ByteConn, closeQuietly, writeAll } from "./conn_io.ts";
import type { SharedCounters } from "./counters.ts";
import { holdDeadline, holdMs, LINGER_MS, requestDeadline, TICK_MS } from "./deadlines.ts";
import { ClientConn, Exchange, Phase, releasePod, stalled, useEndpoint } from "./exchange.ts";
import { Gone, ProxyFailure } from "./exchange_errors.ts";
import { type Fields, H2Conn, type H2Stream } from "./h2_conn.ts";
import { MalformedMessage, requestOf, ServerStreamConn } from "./h2_bridge.ts";
import { ERROR_NAMES, ErrorCode, goawayFrame, PREFACE, PREFACE_LINE_LENGTH } from "./h2_frames.ts";
import { H2Upstreams } from "./h2_upstream.ts";
import { binaryString, findHeadEnd, utf8Of } from "./http1_bytes.ts";
import { HttpError, MAX_HEAD_BYTES } from "./http1_fields.ts";
import { parseRequestHead, type RequestHead } from "./http1_request.ts";
import { plainResponse, responseBytes } from "./http1_response.ts";
import { Holding } from "./hold.ts";
import type { RequestMetrics } from "./metrics.ts";
import type {
  LiveResponse,
  LiveRoute,
  LiveStaticRoute,
  ProxyConfig,
  TargetUpdate,
} from "./proxy_contract.ts";
import { RouteIndex, routingPath, ruleEntriesOf, ruleMatches, type RuleOf } from "./routing.ts";
import { chooseResponse } from "./static_response.ts";
import { type Target, Targets } from "./targets.ts";
import {
  noResponse,
  quickResponseHead,
  type ResponseRead,
  sendFailed,
  UpstreamLeg,
  upstreamTlsFor,
} from "./upstream_leg.ts";
import { Pools, type UpstreamConn } from "./upstream_pool.ts";

export interface ProxyOptions {
  config: ProxyConfig;
  counters: SharedCounters;
  metrics: RequestMetrics;
  log: Logger;
  /** A route's concurrency went 0 -> 1 (true) or back to 0 (false). */
  onActivity: (slot: number, active: boolean) => void;
}

type RuleEntry = RuleOf<LiveRoute>;

/** The first static route of `route` that matches the request, if any. */
function staticRouteFor(
  route: LiveRoute,
  req: RequestHead,
  path: string,
): LiveStaticRoute | undefined {
  for (const s of route.staticRoutes) {
    for (const rule of s.rules) if (ruleMatches(rule, req.host, path, req.headers)) return s;
  }
  return undefined;
}

/** Bodies above this go out in a write of their own, shared, rather than copied per request. */
const COPY_BODY_MAX = 16 * 1024;

export class HttpProxy {
  /** OpenTelemetry traces (isolate.ts sets it when enabled): a server span per forwarded request. */
  tracing: Tracing | null = null;
  readonly #cfg: ProxyConfig;
  readonly #counters: SharedCounters;
  readonly #metrics: RequestMetrics;
  readonly #log: Logger;
  readonly #onActivity: (slot: number, active: boolean) => void;
  #routes = new RouteIndex<RuleEntry>([]);
  readonly #pools = new Pools();
  readonly #targets: Targets;
  readonly #holding: Holding;
  readonly #leg: UpstreamLeg;
  readonly #conns = new Set<ClientConn>();
  /** HTTP/2 client connections; their streams are ClientConns in #conns too. */
  readonly #h2 = new Map<H2Conn, ClientConn>();
  #streams = 0;
  readonly #h2up: H2Upstreams;
  #ticker: ReturnType<typeof setInterval> | undefined;
  #draining = false;
  /** Set once drain() has closed what was left: a connection arriving later is not served. */
  #drainDone = false;
  #drained: (() => void) | null = null;
  #accepted = 0;
  /** Connections accepted before this close after their next response. */
  #recycleBelow = 0;

  constructor(opts: ProxyOptions) {
    this.#cfg = opts.config;
    this.#counters = opts.counters;
    this.#metrics = opts.metrics;
    this.#log = opts.log;
    this.#onActivity = opts.onActivity;
    this.#targets = new Targets(opts.counters, this.#pools, opts.config.podConcurrencyLimit);
    this.#holding = new Holding(opts.counters, this.#targets, opts.config.maxHeldRequests);
    this.#h2up = new H2Upstreams(opts.log);
    this.#leg = new UpstreamLeg({
      config: opts.config,
      counters: opts.counters,
      log: opts.log,
      targets: this.#targets,
      pools: this.#pools,
      draining: () => this.#draining,
      closing: (c) => this.#closing(c),
      h2: this.#h2up,
      rehold: (ex, target) => this.#rehold(ex, target),
    });
  }

  /** Client connections (an HTTP/2 one counts once, not per stream). */
  get connections(): number {
    return this.#conns.size - this.#streams;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Swaps the routing table (the index is built before the swap). */
  setRoutes(routes: LiveRoute[]): void {
    const index = new RouteIndex<RuleEntry>(ruleEntriesOf(routes));
    this.#routes = index;
    for (const p of index.problems) {
      this.#log.warn("route host ignored", { route: p.key, host: p.host, problem: p.problem });
    }
    this.#metrics.retain(new Set(routes.map((r) => r.key)));
  }

  /** Applies endpoint changes and wakes requests held for those targets. */
  setTargets(updates: TargetUpdate[]): void {
    this.#targets.apply(updates);
  }

  /**
   * Serves one accepted connection until it closes; never throws. `h2`: TLS
   * chose HTTP/2 by ALPN; otherwise a connection that starts with the
   * HTTP/2 preface is HTTP/2 (prior knowledge), and any other is HTTP/1.1.
   */
  serve(conn: ByteConn, remoteIp: string, proto: "http" | "https" = "http", h2 = false): void {
    const c = new ClientConn(conn, remoteIp, proto);
    c.seq = ++this.#accepted;
    // A connection accepted while draining is still answered (its request gets
    // Connection: close): the client completed its handshake with us, and
    // closing it unanswered would fail a request no other isolate can retry.
    if (this.#drainDone) {
      c.close();
      return;
    }
    this.#conns.add(c);
    this.#ensureTicker();
    const run = h2 ? this.#serveAlpnH2(c) : this.#serveFirst(c);
    run.catch((e) => this.#log.error("connection failed", { error: e }));
  }

  /** The first bytes decide the protocol; HTTP/1.1 then runs as if they had not been looked at. */
  async #serveFirst(c: ClientConn): Promise<void> {
    const r = c.reader;
    // Only a connection whose first byte is "P" can be HTTP/2: the rest go straight on.
    if (r.buffered === 0) {
      c.deadline(this.#cfg.idleTimeoutMs, c.closeNow);
      await r.fill();
      c.clearDeadline();
    }
    if (r.buffered > 0 && r.buf[r.start] === PREFACE[0]) {
      const kind = await this.#preface(c);
      if (kind === "h2") return this.#serveH2(c);
      if (kind === "bad") return this.#badPreface(c);
    }
    return this.#serve(c);
  }

  /** TLS chose h2: the connection must start with the preface (RFC 9113 3.4). */
  async #serveAlpnH2(c: ClientConn): Promise<void> {
    if ((await this.#preface(c)) === "h2") return this.#serveH2(c);
    return this.#badPreface(c);
  }

  /** Reads until the buffered bytes are the HTTP/2 preface, something else, or a broken one. */
  async #preface(c: ClientConn): Promise<"h2" | "http1" | "bad"> {
    const r = c.reader;
    c.deadline(this.#cfg.headTimeoutMs, c.closeNow);
    try {
      while (true) {
        const n = Math.min(r.buffered, PREFACE.length);
        for (let i = 0; i < n; i++) {
          if (r.buf[r.start + i] !== PREFACE[i]) return i >= PREFACE_LINE_LENGTH ? "bad" : "http1";
        }
        if (n === PREFACE.length) {
          r.start += PREFACE.length;
          return "h2";
        }
        if ((await r.fill()) === 0) return "http1";
      }
    } finally {
      c.clearDeadline();
    }
  }

  /** "PRI * HTTP/2.0" and then not the rest of the preface: RFC 9113 3.4. */
  async #badPreface(c: ClientConn): Promise<void> {
    try {
      await writeAll(c, goawayFrame(0, ErrorCode.Protocol, "invalid HTTP/2 connection preface"));
    } catch {
      // Gone already.
    } finally {
      c.close();
      this.#conns.delete(c);
      if (this.#conns.size === 0 && this.#drained) this.#drained();
    }
  }

  /** An HTTP/2 connection: each stream is an exchange of its own (h2_bridge.ts). */
  async #serveH2(c: ClientConn): Promise<void> {
    c.idle = false;
    const h2 = new H2Conn(c.conn, {
      role: "server",
      limits: { idleTimeoutMs: this.#cfg.idleTimeoutMs },
      onStream: (s, fields, end) => this.#stream(c, s, fields, end),
      onProblem: (problem, code) =>
        this.#log.debug("HTTP/2 connection problem", {
          client: c.remoteIp,
          problem,
          code: ERROR_NAMES[code] ?? code,
        }),
    }, c.reader);
    this.#h2.set(h2, c);
    if (this.#draining || this.#closing(c)) h2.goaway();
    try {
      await h2.run();
    } finally {
      this.#h2.delete(h2);
      c.close();
      this.#conns.delete(c);
      if (this.#conns.size === 0 && this.#drained) this.#drained();
    }
  }

  /** A client opened a stream: served like an HTTP/1.1 connection carrying one request. */
  #stream(parent: ClientConn, s: H2Stream, fields: Fields, end: boolean): void {
    let conn: ServerStreamConn;
    try {
      conn = new ServerStreamConn(s, requestOf(fields, end));
    } catch (e) {
      // One stream's failure is never its connection's: the others go on.
      const malformed = e instanceof MalformedMessage;
      if (malformed) {
        this.#log.debug("malformed HTTP/2 request", {
          client: parent.remoteIp,
          problem: e.message,
        });
      } else this.#log.error("HTTP/2 stream failed", { client: parent.remoteIp, error: e });
      this.#metrics.record("", "_OTHER", malformed ? 400 : 500, 0);
      s.reset(malformed ? ErrorCode.Protocol : ErrorCode.Internal);
      s.release();
      return;
    }
    // A stream carries one exchange: a small first buffer keeps the garbage per stream low.
    const c = new ClientConn(conn, parent.remoteIp, parent.proto, 2048);
    c.seq = parent.seq;
    c.h2 = true;
    this.#conns.add(c);
    this.#streams++;
    this.#serve(c).catch((e) => this.#log.error("stream failed", { error: e })).finally(() => {
      this.#streams--;
    });
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
    // HTTP/2 clients are told with GOAWAY; they finish their streams and reconnect.
    for (const h2 of this.#h2.keys()) h2.goaway();
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
    for (const h2 of this.#h2.keys()) h2.goaway();
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
    this.#drainDone = true;
    for (const h2 of [...this.#h2.keys()]) h2.close();
    for (const c of this.#conns) c.close();
    this.#pools.closeAll();
    this.#h2up.closeAll();
  }

  /** Stops the ticker and closes everything (tests, shutdown). */
  close(): void {
    for (const h2 of [...this.#h2.keys()]) h2.close();
    for (const c of this.#conns) c.close();
    this.#pools.closeAll();
    this.#h2up.closeAll();
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
    this.#pools.sweep(now);
    for (const h2 of this.#h2.keys()) h2.tick(now);
    this.#h2up.sweep(now);
    if (this.#conns.size === 0 && this.#h2up.connections === 0 && this.#ticker !== undefined) {
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
        const path = routingPath(req.path);
        if (path === null) {
          await this.#reject(
            c,
            400,
            "the request target has a fragment (#) or a malformed percent-escape",
          );
          break;
        }
        const route = this.#routes.lookup(req.host, path, req.headers)?.route;
        if (!route) {
          if (!(await this.#noRoute(c, req, t0)) || this.#draining) break;
          continue;
        }
        // Static routes, then the placeholder (InterceptorRoute; both rare, so one test each).
        let counted = true;
        if (route.staticRoutes.length > 0) {
          const sr = staticRouteFor(route, req, path);
          if (sr !== undefined) {
            if (sr.always || this.#targets.get(route.targetKey).endpoints.length === 0) {
              const keep = await this.#answerStatic(c, req, path, route, sr.response, t0, false);
              if (!keep || this.#draining) break;
              continue;
            }
            // WhenUnavailable with a ready app: forwarded, but never counted for scaling.
            counted = false;
          }
        }
        if (
          counted && route.placeholder !== undefined &&
          this.#targets.get(route.targetKey).endpoints.length === 0
        ) {
          const keep = await this.#answerStatic(c, req, path, route, route.placeholder, t0, true);
          if (!keep || this.#draining) break;
          continue;
        }
        const ex = this.#begin(c, req, route, t0, counted);
        try {
          // The common case first: a ready endpoint, plain HTTP/1.1 upstream.
          let target: Target | null = this.#targets.get(route.targetKey);
          const ep = this.#targets.pick(target);
          if (ep !== null) useEndpoint(ex, this.#counters, ep);
          else target = await this.#forward(ex);
          if (target !== null) {
            // HTTP/1.1 forwarding over a pooled or new connection.
            const body = this.#leg.requestStart(ex);
            const tls = upstreamTlsFor(target, c);
            let up: UpstreamConn;
            let head: ResponseRead;
            let pump: Promise<void> | null;
            for (let tries = 0;; tries++) {
              ex.phase = Phase.Connect;
              up = this.#pools.take(ex.ep!.addr, tls) ?? await this.#leg.connect(ex, target, tls);
              if (ex.retarget !== null) {
                target = ex.retarget;
                ex.retarget = null;
              }
              ex.up = up;
              if (ex.gone) throw new Gone();
              let written = false;
              try {
                const n = await up.write(body.first);
                written = n > 0;
                if (n < body.first.length) await writeAll(up, body.first.subarray(n));
              } catch (e) {
                this.#leg.upstreamBroke(ex, up, body, tries, written, sendFailed(target, up, e));
                continue; // #upstreamBroke throws unless the request can be re-sent.
              }
              pump = this.#leg.requestSent(ex, up, body);
              // Usually the whole head arrives in one read: look at it here.
              const ur = up.reader;
              const got =
                (ur.buffered === 0 && (await ur.fill()) > 0 ? quickResponseHead(ur) : null) ??
                  await this.#leg.readResponseHead(ex, up, target);
              if (got !== "retry") {
                head = got;
                break;
              }
              this.#leg.upstreamBroke(ex, up, body, tries, true, noResponse(target, up));
            }
            ex.span?.event("response head", { "http.response.status_code": head.info.status });
            if (head.info.status === 101) {
              await this.#leg.upgraded(ex, up, head, target, pump);
            } else {
              const rel = this.#leg.responseStart(ex, up, head, body, target);
              // A client that does not read is bounded like one that stops mid-body.
              this.#leg.stallWatch(ex);
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
                this.#leg.abort(ex);
              }
              if (!rel.done && !ex.gone) {
                this.#leg.stallWatch(ex);
                rel.upstreamOk = await this.#leg.relayResponseBody(ex, up, rel);
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
                    releasePod(ex, this.#counters);
                    ex.stallWatch = false;
                    c.deadline(LINGER_MS, c.closeNow);
                  }
                  await pump;
                }
                this.#leg.proxyEnd(ex, up, body, rel);
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
              this.#metrics.record("", "_OTHER", 408, this.#cfg.headTimeoutMs / 1000);
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
    this.#metrics.record("", "_OTHER", status, 0);
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
  #begin(
    c: ClientConn,
    req: RequestHead,
    route: LiveRoute,
    t0: number,
    counted: boolean,
  ): Exchange {
    const ex = new Exchange(c, req, route, t0, requestDeadline(this.#cfg, route, t0));
    c.exchange = ex;
    ex.counted = counted;
    if (this.tracing !== null) {
      // Unsampled: no span to carry, and the head is forwarded as it came.
      const span = this.#startSpan(this.tracing, c, req, route);
      if (span.sampled) ex.span = span;
    }
    if (counted && this.#counters.begin(route.slot)) this.#onActivity(route.slot, true);
    return ex;
  }

  /**
   * Answers a static response (a static route's, or the placeholder while
   * the app has no ready endpoint). `counted`: the request counts for
   * scaling (the placeholder: so the app wakes), as one that ends at once.
   * Returns whether the connection stays open.
   */
  async #answerStatic(
    c: ClientConn,
    req: RequestHead,
    path: string,
    route: LiveRoute,
    resp: LiveResponse,
    t0: number,
    counted: boolean,
  ): Promise<boolean> {
    if (counted && this.#counters.begin(route.slot)) this.#onActivity(route.slot, true);
    const span = this.tracing === null ? null : this.#startSpan(this.tracing, c, req, route);
    span?.set({ "keda.answer": counted ? "placeholder" : "static" });
    const chosen = chooseResponse(resp, path);
    const hasBody = req.contentLength > 0 || req.chunked;
    // An unread request body would be taken for the next request: close instead.
    const close = !req.keepAlive || hasBody || this.#closing(c);
    const opts = { close, http10: req.minor === 0, head: req.method === "HEAD" };
    let head: Uint8Array;
    let body: Uint8Array | null = null;
    if (chosen.problem !== undefined) {
      // Configuration problems are logged once by the control side; a path naming no key is the
      // client's doing and must not flood the log.
      this.#log.debug("static response failed", { route: route.key, problem: chosen.problem });
      head = plainResponse(500, `${chosen.problem}\n`, opts);
    } else if (chosen.body.length > COPY_BODY_MAX && !opts.head) {
      head = responseBytes(chosen.status, chosen.headers, chosen.body, {
        ...opts,
        contentType: chosen.contentType,
        withoutBody: true,
      });
      body = chosen.body;
    } else {
      head = responseBytes(chosen.status, chosen.headers, chosen.body, {
        ...opts,
        contentType: chosen.contentType,
      });
    }
    let ok = true;
    c.deadline(this.#cfg.idleTimeoutMs, c.closeNow);
    try {
      await writeAll(c.conn, head);
      if (body !== null) await writeAll(c.conn, body);
    } catch {
      ok = false;
    } finally {
      c.clearDeadline();
      if (counted && this.#counters.end(route.slot)) this.#onActivity(route.slot, false);
    }
    if (ok && close && hasBody) await this.#linger(c);
    const status = ok ? (chosen.problem !== undefined ? 500 : chosen.status) : 499;
    const secs = (Date.now() - t0) / 1000;
    this.#metrics.record(route.key, req.method, status, secs);
    if (span !== null) {
      span.set({ "http.response.status_code": status, "keda.cold_start": false });
      if (chosen.problem !== undefined) span.fail(chosen.problem);
      span.end();
    }
    if (this.#cfg.logRequests) {
      this.#logRequest(c, req, route.key, status, secs, false, span?.traceId);
    }
    return ok && !close;
  }

  /**
   * Before closing a connection whose request body is partly unread: stop
   * sending, then read and drop what the client still sends for a bounded
   * time. Closing with unread bytes would reset the connection, and a reset
   * destroys whatever of our answer is still on its way.
   */
  async #linger(c: ClientConn): Promise<void> {
    try {
      await c.conn.closeWrite();
    } catch {
      return; // Gone already.
    }
    const r = c.reader;
    c.deadline(LINGER_MS, c.closeNow);
    try {
      while (!c.closed) {
        r.start = r.end;
        if ((await r.fill()) === 0) break;
      }
    } catch {
      // A full buffer or a reset ends the linger.
    } finally {
      c.clearDeadline();
    }
  }

  /** KEDA_HTTP_LOG_REQUESTS: one access-log line per request. */
  #logRequest(
    c: ClientConn,
    req: RequestHead,
    route: string,
    status: number,
    secs: number,
    cold: boolean,
    traceId?: string,
  ): void {
    this.#log.info("request", {
      route,
      client: c.remoteIp,
      method: req.method,
      host: utf8Of(req.host).slice(0, 200),
      path: utf8Of(req.path).slice(0, 500),
      proto: c.h2 ? "HTTP/2.0" : `HTTP/1.${req.minor}`,
      status,
      ms: Math.round(secs * 1000),
      coldStart: cold,
      userAgent: utf8Of(req.headers.get("user-agent") ?? "").slice(0, 200),
      ...(traceId ? { traceId } : {}),
    });
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

  /** The request's server span: a child of the client's trace context when it sent one. */
  #startSpan(tracing: Tracing, c: ClientConn, req: RequestHead, route: LiveRoute): SpanHandle {
    const h = req.headers;
    return tracing.server(
      "keda-http-interceptor",
      { traceparent: h.get("traceparent"), tracestate: h.get("tracestate") },
      () => ({
        "http.request.method": req.method,
        "url.path": utf8Of(req.path).slice(0, 500),
        "server.address": utf8Of(req.host).slice(0, 200),
        "network.protocol.version": c.h2 ? "2" : `1.${req.minor}`,
        "client.address": c.remoteIp,
        "keda.route": route.key,
      }),
    );
  }

  /** Every exchange ends here, however it went: counters back down, metrics, the 499 log. */
  #end(ex: Exchange): void {
    const { c, req, route } = ex;
    ex.phase = Phase.Done;
    c.exchange = null;
    c.clearDeadline();
    if (ex.ep) this.#counters.podEnd(ex.ep.slot);
    if (ex.up) closeQuietly(ex.up.conn);
    if (ex.counted && this.#counters.end(route.slot)) this.#onActivity(route.slot, false);
    if (ex.gone && ex.status !== 101) ex.status = 499;
    const secs = (Date.now() - ex.t0) / 1000;
    this.#metrics.record(route.key, req.method, ex.status, secs);
    if (ex.span !== null) {
      ex.span.set({ "http.response.status_code": ex.status, "keda.cold_start": ex.cold });
      if (ex.status >= 500) ex.span.fail(`answered ${ex.status}`);
      ex.span.end();
    }
    if (this.#cfg.logRequests) {
      this.#logRequest(c, req, route.key, ex.status, secs, ex.cold, ex.span?.traceId);
    }
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
    if (close && hasBody) await this.#linger(c);
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

  /**
   * An early endpoint refused: hold again until the deadline, then fall back
   * as a first hold would (over the same protocol: the connection is being set up for it).
   */
  async #rehold(ex: Exchange, target: Target): Promise<Target> {
    const route = ex.route;
    ex.cold = true;
    if (ex.req.raw !== null) ex.req.raw = ex.req.raw.slice();
    const deadline = holdDeadline(this.#cfg, route, ex.t0, ex.requestDeadline);
    const r = await this.#holding.hold(ex, target, deadline);
    if (r === "ready") return target;
    if (r === "aborted") throw new Gone();
    if (r === "timeout") {
      const fb = this.#fallback(ex);
      if (fb && fb.h2c === target.h2c && fb.tls === target.tls) return fb;
    }
    throw this.#holdFailure(ex, r);
  }

  /**
   * After a hold timed out: the route's fallback Service with an endpoint in
   * use, or undefined when it has none configured or the request's time is up.
   * Throws 503 when the fallback has no ready endpoint.
   */
  #fallback(ex: Exchange): Target | undefined {
    const route = ex.route;
    const fb = route.fallbackKey !== undefined ? route.fallback : undefined;
    if (!fb || route.fallbackKey === undefined || Date.now() >= ex.requestDeadline) {
      return undefined;
    }
    const target = this.#targets.get(route.fallbackKey);
    const ep = this.#targets.pick(target);
    if (!ep) {
      throw new ProxyFailure(
        503,
        `${route.key} did not become ready within ${
          formatDuration(holdMs(this.#cfg, route))
        } and its fallback Service ${fb.service} has no ready endpoint`,
      );
    }
    useEndpoint(ex, this.#counters, ep);
    return target;
  }

  /** What a hold that ended without an endpoint answers: full (503) or timed out (504). */
  #holdFailure(ex: Exchange, r: "full" | "timeout"): ProxyFailure {
    const route = ex.route;
    if (r === "full") {
      return new ProxyFailure(
        503,
        `too many requests are waiting for ${route.key} to become ready; retry later`,
        [["Retry-After", String(this.#cfg.retryAfterSeconds)]],
      );
    }
    return new ProxyFailure(
      504,
      `${route.key} did not become ready within ${
        formatDuration(Math.min(holdMs(this.#cfg, route), ex.requestDeadline - ex.t0))
      }; the app may still be starting, retry later`,
    );
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
    let target = this.#targets.get(route.targetKey);
    const first = this.#targets.pick(target);
    if (first) {
      useEndpoint(ex, this.#counters, first);
    } else {
      ex.cold = target.endpoints.length === 0;
      const deadline = holdDeadline(this.#cfg, route, ex.t0, ex.requestDeadline);
      const r = await this.#holding.hold(ex, target, deadline);
      if (r === "aborted") return null;
      if (r === "full") throw this.#holdFailure(ex, r);
      if (r === "timeout") {
        const fb = this.#fallback(ex);
        if (!fb) throw this.#holdFailure(ex, r);
        target = fb;
      }
    }
    return target;
  }
}
