/**
 * The HTTP/1.1 leg of an exchange, from the pod to the client: connecting
 * (with retries until the connect deadline), the request head and body sent
 * upstream, the response head read back, and the response relayed to the
 * client. Bodies stream in both directions at once (an echoing app must not
 * deadlock us); framing is followed by the readers in http1_*.ts and what
 * goes out is generated from what they decided.
 */
import type { Logger } from "../shared/log.ts";
import { formatDuration } from "../shared/duration.ts";
import { BufferFull, closeQuietly, type ConnReader, writeAll } from "./conn_io.ts";
import type { SharedCounters } from "./counters.ts";
import {
  connectBackoffMs,
  connectDeadline,
  responseHeaderDeadline,
  responseHeaderMs,
} from "./deadlines.ts";
import {
  type ClientConn,
  clientGone,
  type Exchange,
  headerTimedOut,
  Phase,
  releasePod,
  stalled,
  useEndpoint,
  watchHangup,
} from "./exchange.ts";
import { Gone, ProxyFailure } from "./exchange_errors.ts";
import type { H2Upstreams } from "./h2_upstream.ts";
import { binaryBytes, binaryString, findHeadEnd } from "./http1_bytes.ts";
import { ChunkedScanner } from "./http1_chunked.ts";
import { HttpError, MAX_HEAD_BYTES } from "./http1_fields.ts";
import { isIdempotent, spliceRequestHead, upstreamRequestHead } from "./http1_request.ts";
import {
  clientResponseHead,
  parseResponseHead,
  responseExtraLines,
  responseHasNoBody,
  type ResponseHead,
  type ResponseInfo,
  scanResponseBytes,
} from "./http1_response.ts";
import type { ProxyConfig } from "./proxy_contract.ts";
import type { Target, Targets } from "./targets.ts";
import { type Pools, UpstreamConn } from "./upstream_pool.ts";
import { connectTls, tlsFailureText, UpstreamTlsError } from "./upstream_tls.ts";

type BodyMode = "none" | "length" | "chunked" | "close";

/** A response head read from the app: what it says, its text, and where its bytes are. */
export interface ResponseRead {
  info: ResponseInfo;
  /** The head as a binary string; null when not decoded yet (see headText). */
  text: string | null;
  start: number;
  end: number;
}

export interface RequestBody {
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
export class Relay {
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

/**
 * Whether an exchange's connection to `target` uses TLS: its port says
 * https, or the client came over TLS (Go HEAD forwards every request from its
 * TLS listener as https) and the port does not declare cleartext h2c.
 */
export function upstreamTlsFor(target: Target, c: ClientConn): boolean {
  return target.tls || (c.proto === "https" && !target.h2c);
}

export function sendFailed(target: Target, up: UpstreamConn, e: unknown): string {
  return `sending the request to ${target.key} at ${up.addr} failed: ${(e as Error).message}`;
}

export function noResponse(target: Target, up: UpstreamConn): string {
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
export function quickResponseHead(ur: ConnReader): ResponseRead | null {
  const end = findHeadEnd(ur.buf, ur.start, ur.end);
  if (end < 0) return null;
  const info = scanResponseBytes(ur.buf, ur.start, end);
  if (info === null || info.status < 200) return null;
  const got = { info, text: null, start: ur.start, end };
  ur.start = end;
  return got;
}

export interface UpstreamLegOptions {
  config: ProxyConfig;
  counters: SharedCounters;
  log: Logger;
  targets: Targets;
  pools: Pools;
  /** The proxy is draining: no connection goes back to a pool. */
  draining: () => boolean;
  /** The client connection closes after this response (draining, or recycled). */
  closing: (c: ClientConn) => boolean;
  /** Streams to h2c apps. */
  h2: H2Upstreams;
  /**
   * Holds the exchange again until the target has a usable endpoint (then
   * ex.ep is set); resolves the target to go on with (the route's fallback
   * after its timeout) or throws as a first hold's end would (504, 503, Gone).
   */
  rehold: (ex: Exchange, target: Target) => Promise<Target>;
}

export class UpstreamLeg {
  readonly #cfg: ProxyConfig;
  readonly #counters: SharedCounters;
  readonly #log: Logger;
  readonly #targets: Targets;
  readonly #pools: Pools;
  readonly #draining: () => boolean;
  readonly #closing: (c: ClientConn) => boolean;
  readonly #h2: H2Upstreams;
  readonly #rehold: (ex: Exchange, target: Target) => Promise<Target>;

  constructor(opts: UpstreamLegOptions) {
    this.#h2 = opts.h2;
    this.#rehold = opts.rehold;
    this.#cfg = opts.config;
    this.#counters = opts.counters;
    this.#log = opts.log;
    this.#targets = opts.targets;
    this.#pools = opts.pools;
    this.#draining = opts.draining;
    this.#closing = opts.closing;
  }

  /**
   * A live connection to the exchange's endpoint, retrying until the
   * deadline; over TLS when `tls` (upstreamTlsFor). A failed TLS handshake
   * is not retried: the TCP connection worked, so it would fail again.
   */
  async connect(ex: Exchange, target: Target, tls = false): Promise<UpstreamConn> {
    if (ex.span === null) return await this.#connect(ex, target, tls);
    const span = ex.span.child("connect", { "keda.target": target.key }, "client");
    try {
      const u = await this.#connect(ex, target, tls);
      span.set({ "network.peer.address": u.addr });
      return u;
    } catch (e) {
      span.fail(e instanceof Error ? e.message : String(e));
      throw e;
    } finally {
      span.end();
    }
  }

  async #connect(ex: Exchange, target: Target, tls: boolean): Promise<UpstreamConn> {
    ex.phase = Phase.Connect;
    let deadline = connectDeadline(this.#cfg, ex.route, ex.t0, ex.requestDeadline, Date.now());
    let attempt = 0;
    let lastError = "";
    // h2c apps: a stream on a multiplexed connection (an upgrade stays on HTTP/1.1).
    const h2 = target.h2c && ex.req.upgrade === null;
    while (true) {
      const ep = ex.ep!;
      const pooled = h2 ? undefined : this.#pools.take(ep.addr, tls);
      if (pooled) return pooled;
      try {
        if (h2) {
          const u = new UpstreamConn(
            await this.#h2.stream(ep, this.#cfg.connectTimeoutMs),
            ep.addr,
          );
          if (ex.gone) {
            closeQuietly(u.conn);
            throw new Gone();
          }
          return u;
        }
        let u: UpstreamConn;
        if (tls) {
          const conn = await connectTls({
            ip: ep.ip,
            port: ep.port,
            serverName: target.serverName,
            config: this.#cfg.upstreamTls,
            timeoutMs: this.#cfg.connectTimeoutMs,
          });
          u = new UpstreamConn(conn, ep.addr, true);
        } else {
          const conn = await Deno.connect({
            hostname: ep.ip,
            port: ep.port,
            signal: AbortSignal.timeout(this.#cfg.connectTimeoutMs),
          });
          conn.setNoDelay(true);
          u = new UpstreamConn(conn, ep.addr);
        }
        if (ex.gone) {
          this.#pools.release(u, this.#draining());
          throw new Gone();
        }
        return u;
      } catch (e) {
        if (e instanceof Gone || ex.gone) throw new Gone();
        if (e instanceof UpstreamTlsError) {
          throw new ProxyFailure(
            502,
            tlsFailureText(`${target.key} at ${ep.addr}`, target.serverName, e),
          );
        }
        lastError = (e as Error).name === "TimeoutError"
          ? `no answer within ${formatDuration(this.#cfg.connectTimeoutMs)}`
          : (e as Error).message;
        if (ep.early) {
          // It passed our probe but was never ready by the kubelet: not a 502, wait again.
          this.#targets.dropEarly(target, ep);
          const next = this.#targets.pick(target);
          if (next) useEndpoint(ex, this.#counters, next);
          else {
            // Its load must not count against a per-pod cap while we wait (it may come back ready).
            releasePod(ex, this.#counters);
            const next = await this.#rehold(ex, target);
            // The caller sends to this target now (a fallback has the same protocol).
            if (next !== target) ex.retarget = target = next;
            // As after a first hold: a full connect window from now.
            ex.phase = Phase.Connect;
            deadline = connectDeadline(this.#cfg, ex.route, ex.t0, ex.requestDeadline, Date.now());
          }
          attempt = 0;
          continue;
        }
      }
      const wait = connectBackoffMs(attempt++);
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
      const next = this.#targets.pick(target, ep);
      if (next && next !== ep) useEndpoint(ex, this.#counters, next);
    }
  }

  /** Body framing of the request, and the first write: the head plus what is buffered of the body. */
  requestStart(ex: Exchange): RequestBody {
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
    // With a span, the head carries its trace context instead of the client's: not spliced.
    const spliced = ex.span === null
      ? spliceRequestHead(req, c.fwd, take, c.upAlloc, c.forwardedLines)
      : null;
    if (spliced) {
      body.first = spliced.bytes;
      headLength = spliced.headLength;
    } else {
      const headText = upstreamRequestHead(req, c.fwd, ex.span?.context());
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
  upstreamBroke(
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
  requestSent(ex: Exchange, up: UpstreamConn, body: RequestBody): Promise<void> | null {
    ex.phase = Phase.AwaitHead;
    if (body.done) {
      watchHangup(ex);
      this.#armHeaderTimeout(ex);
      return null;
    }
    this.stallWatch(ex);
    return this.#pumpRequestBody(ex, up, body).then(() => {
      if (ex.phase === Phase.AwaitHead && !ex.gone) this.#armHeaderTimeout(ex);
      watchHangup(ex);
    }, (e) => {
      body.failed = true;
      if (!(e instanceof Gone)) {
        this.#log.debug("request body not fully sent", { route: ex.route.key, error: e });
      }
    });
  }

  /** How the response goes back: its framing, and the first write (head plus buffered body). */
  responseStart(
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
        let e: number;
        try {
          e = rel.rs.scan(
            ur.buf,
            ur.start,
            ur.end,
            parts ? (a, b) => parts!.push([a, b]) : undefined,
          );
        } catch (err) {
          if (!(err instanceof HttpError)) throw err;
          throw new ProxyFailure(502, `the app sent malformed chunked framing: ${err.message}`);
        }
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
  proxyEnd(ex: Exchange, up: UpstreamConn, body: RequestBody, rel: Relay): void {
    const reusable = rel.upstreamOk && rel.mode !== "close" && rel.reusable && !body.failed &&
      up.reader.buffered === 0 && !ex.stalled;
    ex.up = null;
    if (reusable) this.#pools.release(up, this.#draining());
    else closeQuietly(up.conn);
    ex.keepClient = !rel.closeClient && rel.upstreamOk && !body.failed;
  }

  #armHeaderTimeout(ex: Exchange): void {
    ex.stallWatch = false;
    ex.c.deadlineAt(
      responseHeaderDeadline(this.#cfg, ex.route, ex.requestDeadline, Date.now()),
      headerTimedOut,
    );
  }

  /** From now on, no progress for the idle timeout ends the exchange. */
  stallWatch(ex: Exchange): void {
    ex.stallWatch = true;
    ex.c.deadline(this.#cfg.idleTimeoutMs, stalled);
  }

  #progress(ex: Exchange): void {
    if (ex.stallWatch) ex.c.at = Date.now() + this.#cfg.idleTimeoutMs;
  }

  /** The client is gone (a write to it failed): stop both sides. */
  abort(ex: Exchange): void {
    ex.gone = true;
    if (ex.up) closeQuietly(ex.up.conn);
    ex.c.close();
  }

  /** Reads the final response head, relaying interim (1xx) ones. */
  async readResponseHead(
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
              ex.interimWrite = true;
              try {
                await writeAll(ex.c, binaryBytes(interim));
                ex.interimWrite = false;
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
          const ms = responseHeaderMs(this.#cfg, ex.route);
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
      // Bytes may already be buffered: a re-hold after requestStart reads the client meanwhile.
      if (r.buffered === 0 && (await r.fill()) === 0) {
        if (body.failed) return;
        clientGone(ex);
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
  async relayResponseBody(ex: Exchange, up: UpstreamConn, rel: Relay): Promise<boolean> {
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
        this.abort(ex);
        return false;
      }
      ur.start += take;
      this.#progress(ex);
      if (done) return true;
    }
  }

  /** After a 101: bytes flow both ways until both sides are done. */
  async upgraded(
    ex: Exchange,
    up: UpstreamConn,
    got: ResponseRead,
    target: Target,
    pump: Promise<void> | null,
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
    // No bytes either way for the idle timeout closes the tunnel, so an
    // abandoned one cannot keep its app from scaling to zero.
    this.stallWatch(ex);
    // A request body still on its way belongs before the tunnel's bytes: the
    // pump forwards exactly its framing, then the pipes take the rest.
    if (pump !== null) await pump;
    const pipe = async (from: ConnReader, to: ClientConn | UpstreamConn) => {
      try {
        while (true) {
          if (from.buffered > 0) {
            await writeAll(to, from.buf.subarray(from.start, from.end));
            from.start = from.end;
            this.#progress(ex);
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
