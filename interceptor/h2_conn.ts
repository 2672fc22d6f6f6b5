/**
 * One HTTP/2 connection (RFC 9113), as a server (clients of the proxy) or
 * as a client (h2c apps): frame parsing and every rule about what a frame
 * may be, stream states, flow control in both directions, HPACK state,
 * SETTINGS, PING, GOAWAY, and the limits that keep a hostile peer from
 * costing unbounded memory or work: a cap on concurrent streams that counts
 * a reset stream until its work has ended (rapid reset), a budget for
 * frames that do no work (PING/SETTINGS/PRIORITY/RST/empty DATA floods), a
 * cap on a header block's size and its CONTINUATION frames, a cap on the
 * frames queued to a peer that does not read, and stall and idle timeouts.
 *
 * What a stream carries is the caller's business: handlers receive decoded
 * header lists and data, and send through the stream's methods.
 */
import { type ByteConn, closeQuietly, ConnReader, writeAll } from "./conn_io.ts";
import {
  dataFrame,
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  ERROR_NAMES,
  ErrorCode,
  Flag,
  FRAME_HEADER,
  FrameType,
  goawayFrame,
  headersFrames,
  MAX_WINDOW,
  pingFrame,
  read31,
  read32,
  rstFrame,
  Setting,
  SETTINGS_ACK,
  settingsFrame,
  windowUpdateFrame,
} from "./h2_frames.ts";
import { HpackDecoder, HpackEncoder, HpackError } from "./hpack.ts";

export type Fields = Array<[string, string]>;

export interface H2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS we advertise (streams the peer may open). */
  maxConcurrentStreams: number;
  /** Our per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE). */
  streamWindow: number;
  /** Our connection receive window. */
  connWindow: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE we advertise and enforce. */
  maxHeaderListSize: number;
  /** Frames that do no work (PING, SETTINGS, PRIORITY, RST_STREAM, empty DATA, unknown): burst... */
  cheapFrameBurst: number;
  /** ...and refill per second. */
  cheapFramesPerSecond: number;
  /** A peer that leaves this many frames queued (it does not read) is cut off. */
  maxQueuedFrames: number;
  /** No stream and no frame for this long: GOAWAY and close. A write stuck this long: close. */
  idleTimeoutMs: number;
}

export const DEFAULT_LIMITS: H2Limits = {
  maxConcurrentStreams: 100,
  streamWindow: 64 * 1024,
  connWindow: 1024 * 1024,
  maxHeaderListSize: 64 * 1024,
  cheapFrameBurst: 2_000,
  cheapFramesPerSecond: 500,
  maxQueuedFrames: 10_000,
  idleTimeoutMs: 90_000,
};

/** A header block may span at most this many CONTINUATION frames. */
const MAX_CONTINUATIONS = 64;
/** Our SETTINGS must be acknowledged within this (RFC 9113 6.5.3). */
const SETTINGS_ACK_MS = 10_000;
/** Refused streams (past the concurrency cap) a peer may cause before GOAWAY. */
const MAX_REFUSED = 1_000;
/** Above this many queued bytes, senders of DATA wait for the socket. */
const HIGH_WATER = 256 * 1024;

/** A connection error: GOAWAY with `code`. */
export class H2Error extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
    this.name = "H2Error";
  }
}

/** The stream was reset (by the peer, by us, or with the connection). */
export class StreamReset extends Error {
  constructor(readonly code: number, readonly byPeer: boolean) {
    super(`HTTP/2 stream reset (${ERROR_NAMES[code] ?? code}${byPeer ? " from the peer" : ""})`);
    this.name = "StreamReset";
  }
}

export interface StreamHandler {
  /** A header block on the stream (responses: interim ones first; trailers last). */
  onHeaders(fields: Fields, endStream: boolean): void;
  /** Data (a copy); `n` flow-controlled bytes to give back with consumed(). */
  onData(data: Uint8Array, endStream: boolean): void;
  /** The stream ended abnormally; no more callbacks follow. */
  onReset(err: StreamReset): void;
}

const enum St {
  Open,
  /** We sent END_STREAM. */
  HalfClosedLocal,
  /** The peer sent END_STREAM. */
  HalfClosedRemote,
  Closed,
}

export class H2Stream {
  handler: StreamHandler | null = null;
  state = St.Open;
  sendWindow: number;
  /** Flow-controlled bytes received and not yet given back with consumed(). */
  unacked = 0;
  /** Bytes handed to the handler and not consumed yet: connection window owed back. */
  pending = 0;
  /** Bytes the peer may still send us before a WINDOW_UPDATE. */
  recvWindow: number;
  /** Server side: the work for this stream has not ended (it counts toward the cap). */
  busy = true;
  resetCode = -1;
  #waiters: Array<() => void> = [];

  constructor(readonly conn: H2Conn, readonly id: number, sendWindow: number, recvWindow: number) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  get localEnded(): boolean {
    return this.state === St.HalfClosedLocal || this.state === St.Closed;
  }

  get remoteEnded(): boolean {
    return this.state === St.HalfClosedRemote || this.state === St.Closed;
  }

  get closed(): boolean {
    return this.state === St.Closed;
  }

  sendHeaders(fields: Fields, endStream: boolean): void {
    this.conn.sendHeaders(this, fields, endStream);
  }

  /** Sends data as the windows allow; resolves when all of it is queued. Throws StreamReset. */
  sendData(data: Uint8Array, endStream: boolean): Promise<void> {
    return this.conn.sendData(this, data, endStream);
  }

  /** Resets the stream (no-op once closed). */
  reset(code: number): void {
    this.conn.resetStream(this, code, false);
  }

  /** The receiver has used `n` bytes of data: the peer may send that much more. */
  consumed(n: number): void {
    this.conn.consumed(this, n);
  }

  /** Server side: the work for this stream is over; it no longer counts toward the cap. */
  release(): void {
    if (!this.busy) return;
    this.busy = false;
    this.conn.released(this);
  }

  /** @internal */
  waitWindow(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** @internal */
  wake(): void {
    const w = this.#waiters;
    if (w.length === 0) return;
    this.#waiters = [];
    for (const f of w) f();
  }
}

export interface H2ConnOptions {
  role: "server" | "client";
  limits?: Partial<H2Limits>;
  /** Server: a peer opened a stream with this request header list. Set stream.handler here. */
  onStream?: (stream: H2Stream, fields: Fields, endStream: boolean) => void;
  /** Called once when the connection has closed. */
  onClose?: (conn: H2Conn) => void;
  /** Debug log of why a connection or stream ended. */
  onProblem?: (message: string, code: number) => void;
}

export class H2Conn {
  readonly #conn: ByteConn;
  readonly #reader: ConnReader;
  readonly #role: "server" | "client";
  readonly #lim: H2Limits;
  readonly #opts: H2ConnOptions;
  readonly #dec: HpackDecoder;
  readonly #enc = new HpackEncoder();
  readonly streams = new Map<number, H2Stream>();
  /** Server: streams whose work has not ended (counts toward the cap). */
  #busy = 0;
  /** Highest stream id the peer opened. */
  #peerMax = 0;
  /** Client: the next stream id we open. */
  #nextId = 1;
  // Peer settings.
  #peerWindow = DEFAULT_WINDOW;
  #peerMaxFrame = DEFAULT_MAX_FRAME;
  peerMaxStreams = Infinity;
  #sendWindow = DEFAULT_WINDOW;
  #recvWindow = DEFAULT_WINDOW;
  #connUnacked = 0;
  #gotSettings = false;
  #settingsSentAt = 0;
  // Header block in progress (HEADERS without END_HEADERS).
  #contStream = 0;
  #contEnd = false;
  #contParts: Uint8Array[] = [];
  #contBytes = 0;
  #contFrames = 0;
  // Flood budget.
  #tokens: number;
  #tokensAt = Date.now();
  #refused = 0;
  // Writing.
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #writing = false;
  #writeSince = 0;
  #drainWaiters: Array<() => void> = [];
  // Lifetime.
  #goawaySent = false;
  #goawayLast = 0x7fffffff;
  /** The peer sent GOAWAY: no new streams (client side). */
  peerGoaway = false;
  closed = false;
  lastActivity = Date.now();
  readonly done: Promise<void>;
  #resolveDone!: () => void;

  constructor(conn: ByteConn, opts: H2ConnOptions, reader?: ConnReader) {
    this.#conn = conn;
    this.#reader = reader ?? new ConnReader(conn, 32 * 1024, 64 * 1024);
    this.#role = opts.role;
    this.#opts = opts;
    this.#lim = { ...DEFAULT_LIMITS, ...opts.limits };
    this.#tokens = this.#lim.cheapFrameBurst;
    this.#dec = new HpackDecoder({
      maxTableSize: 4096,
      maxHeaderListSize: this.#lim.maxHeaderListSize,
    });
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
    if (this.#role === "client") this.#nextId = 1;
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  /** Server: streams whose work has not ended. */
  get busyStreams(): number {
    return this.#busy;
  }

  get goingAway(): boolean {
    return this.#goawaySent || this.peerGoaway;
  }

  /**
   * Starts the connection: sends our preface (client) and SETTINGS, then
   * reads frames until the connection ends. Never throws.
   */
  async run(): Promise<void> {
    const settings: Array<[number, number]> = [
      [
        Setting.MaxConcurrentStreams,
        this.#role === "server" ? this.#lim.maxConcurrentStreams : 1000,
      ],
      [Setting.InitialWindowSize, this.#lim.streamWindow],
      [Setting.MaxHeaderListSize, this.#lim.maxHeaderListSize],
      [Setting.EnablePush, 0],
    ];
    if (this.#role === "client") {
      this.#enqueue(new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    }
    this.#enqueue(settingsFrame(settings));
    this.#settingsSentAt = Date.now();
    if (this.#lim.connWindow > DEFAULT_WINDOW) {
      this.#enqueue(windowUpdateFrame(0, this.#lim.connWindow - DEFAULT_WINDOW));
      this.#recvWindow = this.#lim.connWindow;
    }
    try {
      await this.#readLoop();
    } catch (e) {
      if (e instanceof H2Error) this.#fail(e.code, e.message);
      else if (!this.closed) this.#fail(ErrorCode.Internal, (e as Error).message);
    } finally {
      // What is queued (a GOAWAY above all) goes out before the socket closes.
      const f = this.#flushing;
      if (f !== null && !this.closed) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([f, new Promise<void>((r) => (timer = setTimeout(r, 2_000)))]);
        clearTimeout(timer);
      }
      this.#teardown();
    }
  }

  /** Client: opens a stream. Throws when the connection cannot take one. */
  open(handler: StreamHandler): H2Stream {
    if (this.closed || this.goingAway) throw new StreamReset(ErrorCode.RefusedStream, false);
    const id = this.#nextId;
    this.#nextId += 2;
    const s = new H2Stream(this, id, this.#peerWindow, this.#lim.streamWindow);
    s.handler = handler;
    s.busy = false;
    this.streams.set(id, s);
    this.lastActivity = Date.now();
    return s;
  }

  /** Whether a new client stream fits under the peer's limit. */
  get hasCapacity(): boolean {
    return !this.closed && !this.goingAway && this.#nextId < 0x7fffffff &&
      this.streams.size < this.peerMaxStreams;
  }

  /**
   * Graceful shutdown: GOAWAY with the last stream we will serve; the
   * connection closes when the open streams are done.
   */
  goaway(code: number = ErrorCode.NoError, debug = ""): void {
    if (this.closed || this.#goawaySent) return;
    this.#goawaySent = true;
    this.#goawayLast = this.#peerMax;
    this.#enqueue(goawayFrame(this.#peerMax, code, debug));
    this.#maybeFinish();
  }

  /** Closes at once: every stream is reset. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeQuietly(this.#conn);
    this.#teardown();
  }

  /** Timeouts, checked by the proxy's ticker. */
  tick(now: number): void {
    if (this.closed) return;
    if (this.#writing && now - this.#writeSince > this.#lim.idleTimeoutMs) {
      this.#problem("the peer stopped reading; connection closed", ErrorCode.Cancel);
      this.close();
      return;
    }
    if (this.#settingsSentAt > 0 && now - this.#settingsSentAt > SETTINGS_ACK_MS) {
      this.#fail(ErrorCode.SettingsTimeout, "SETTINGS not acknowledged in time");
      return;
    }
    if (
      this.streams.size === 0 && this.#busy === 0 &&
      now - this.lastActivity > this.#lim.idleTimeoutMs
    ) {
      // Closes once the GOAWAY is written (no stream is open).
      this.goaway(ErrorCode.NoError, "idle");
    }
  }

  // ---- sending ----

  sendHeaders(s: H2Stream, fields: Fields, endStream: boolean): void {
    if (s.localEnded || this.closed) return;
    // Encoded and queued in one step: HPACK state follows the order of the wire.
    const block = this.#enc.encode(fields);
    this.#enqueue(headersFrames(s.id, block, endStream, this.#peerMaxFrame));
    if (endStream) this.#endLocal(s);
    this.lastActivity = Date.now();
  }

  async sendData(s: H2Stream, data: Uint8Array, endStream: boolean): Promise<void> {
    let off = 0;
    while (true) {
      if (s.resetCode >= 0) throw new StreamReset(s.resetCode, true);
      if (this.closed) throw new StreamReset(ErrorCode.Cancel, false);
      if (s.localEnded) return;
      const left = data.length - off;
      if (left === 0 && !endStream) return;
      if (this.#queuedBytes > HIGH_WATER) {
        await new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
        continue;
      }
      const can = Math.min(left, s.sendWindow, this.#sendWindow, this.#peerMaxFrame);
      if (can <= 0 && left > 0) {
        await s.waitWindow();
        continue;
      }
      const part = data.subarray(off, off + can);
      off += can;
      s.sendWindow -= can;
      this.#sendWindow -= can;
      const last = endStream && off === data.length;
      this.#enqueue(dataFrame(s.id, part, last));
      this.lastActivity = Date.now();
      if (last) {
        this.#endLocal(s);
        return;
      }
      if (off === data.length) return;
    }
  }

  resetStream(s: H2Stream, code: number, byPeer: boolean): void {
    if (s.state === St.Closed && s.resetCode >= 0) return;
    const wasClosed = s.state === St.Closed;
    s.state = St.Closed;
    s.resetCode = code;
    this.streams.delete(s.id);
    this.#returnPending(s);
    if (!byPeer && !wasClosed && !this.closed) {
      this.#enqueue(rstFrame(s.id, code));
      this.#noteReset(s.id);
    }
    s.wake();
    const h = s.handler;
    s.handler = null;
    if (!wasClosed) h?.onReset(new StreamReset(code, byPeer));
    this.#maybeFinish();
  }

  consumed(s: H2Stream, n: number): void {
    if (n <= 0) return;
    // Connection window comes back only as bodies are read, so unread bodies on one
    // connection never exceed its window (1 MiB), however many streams hold them.
    const owed = Math.min(n, s.pending);
    s.pending -= owed;
    this.#connUnacked += owed;
    this.#ackConn();
    this.#streamCredit(s, n);
  }

  #streamCredit(s: H2Stream, n: number): void {
    s.unacked += n;
    if (s.remoteEnded || this.closed) return;
    if (s.unacked >= this.#lim.streamWindow / 4) {
      this.#enqueue(windowUpdateFrame(s.id, s.unacked));
      s.recvWindow += s.unacked;
      s.unacked = 0;
    }
  }

  released(s: H2Stream): void {
    if (this.#role !== "server") return;
    this.#busy--;
    this.#returnPending(s);
    if (s.state === St.Closed) this.streams.delete(s.id);
    this.#maybeFinish();
  }

  /** What a finished stream's reader never consumed goes back to the connection window. */
  #returnPending(s: H2Stream): void {
    if (s.pending === 0) return;
    this.#connUnacked += s.pending;
    s.pending = 0;
    this.#ackConn();
  }

  #endLocal(s: H2Stream): void {
    if (s.state === St.Open) s.state = St.HalfClosedLocal;
    else if (s.state === St.HalfClosedRemote) this.#closeStream(s);
  }

  #endRemote(s: H2Stream): void {
    if (s.state === St.Open) s.state = St.HalfClosedRemote;
    else if (s.state === St.HalfClosedLocal) this.#closeStream(s);
  }

  #closeStream(s: H2Stream): void {
    s.state = St.Closed;
    s.wake();
    // A server stream stays counted until its work ends (release()).
    if (!s.busy || this.#role === "client") this.streams.delete(s.id);
    if (this.#role === "client") this.#returnPending(s);
    this.#maybeFinish();
  }

  #maybeFinish(): void {
    if (!this.#goawaySent && !this.peerGoaway) return;
    if (this.streams.size > 0 || this.#busy > 0) return;
    // Everything sent: close once the queue is written.
    if (!this.#writing && this.#queue.length === 0) this.close();
    else this.#closeAfterFlush = true;
  }

  #closeAfterFlush = false;
  /** Recent streams we reset (bounded): frames already on their way for them are ignored. */
  readonly #resetByUs = new Set<number>();

  #noteReset(sid: number): void {
    this.#resetByUs.add(sid);
    if (this.#resetByUs.size > 1024) {
      this.#resetByUs.delete(this.#resetByUs.values().next().value!);
    }
  }

  #enqueue(frame: Uint8Array): void {
    if (this.closed) return;
    this.#queue.push(frame);
    this.#queuedBytes += frame.length;
    if (this.#queue.length > this.#lim.maxQueuedFrames) {
      this.#problem(
        "too many frames queued to a peer that does not read",
        ErrorCode.EnhanceYourCalm,
      );
      this.close();
      return;
    }
    // One write for everything queued in this turn (a response's HEADERS and DATA, several
    // streams' frames): the flush starts after the current task's microtasks.
    if (!this.#writing && !this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#startFlush);
    }
  }

  #scheduled = false;
  readonly #startFlush = (): void => {
    this.#scheduled = false;
    if (!this.#writing && this.#queue.length > 0) this.#flushing = this.#flush();
  };

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.closed) {
        let out: Uint8Array;
        if (this.#queue.length === 1) {
          out = this.#queue[0]!;
        } else {
          out = new Uint8Array(this.#queuedBytes);
          let at = 0;
          for (const f of this.#queue) {
            out.set(f, at);
            at += f.length;
          }
        }
        this.#queue = [];
        this.#queuedBytes = 0;
        this.#writeSince = Date.now();
        await writeAll(this.#conn, out);
        if (this.#drainWaiters.length > 0 && this.#queuedBytes <= HIGH_WATER) {
          const w = this.#drainWaiters;
          this.#drainWaiters = [];
          for (const f of w) f();
        }
      }
    } catch {
      this.close();
    } finally {
      this.#writing = false;
    }
    if (this.#closeAfterFlush && !this.closed) this.close();
  }

  #problem(message: string, code: number): void {
    this.#opts.onProblem?.(message, code);
  }

  /** A connection error: GOAWAY with the code, then close once it is written. */
  #fail(code: number, message: string): void {
    if (this.closed) return;
    this.#problem(message, code);
    if (!this.#goawaySent) {
      this.#goawaySent = true;
      const f = goawayFrame(this.#peerMax, code, message);
      this.#queue.push(f);
      this.#queuedBytes += f.length;
    }
    this.#closeAfterFlush = true;
    if (!this.#writing) this.#flushing = this.#flush();
    // Stop reading: nothing the peer sends after a connection error matters.
    this.#reader.clear();
    this.#stopped = true;
  }

  #stopped = false;
  #flushing: Promise<void> | null = null;

  #teardown(): void {
    if (!this.closed) {
      // The read loop ended (EOF): let queued frames go, then close.
      this.closed = true;
      closeQuietly(this.#conn);
    }
    for (const s of [...this.streams.values()]) {
      this.resetStream(s, ErrorCode.Cancel, true);
    }
    for (const f of this.#drainWaiters) f();
    this.#drainWaiters = [];
    if (!this.#doneFired) {
      this.#doneFired = true;
      this.#resolveDone();
      this.#opts.onClose?.(this);
    }
  }

  #doneFired = false;

  // ---- receiving ----

  /** Spends one token of the budget for frames that do no work. */
  #cheap(what: string): void {
    const now = Date.now();
    const refill = ((now - this.#tokensAt) / 1000) * this.#lim.cheapFramesPerSecond;
    if (refill >= 1) {
      this.#tokens = Math.min(this.#lim.cheapFrameBurst, this.#tokens + refill);
      this.#tokensAt = now;
    }
    if (--this.#tokens < 0) {
      throw new H2Error(ErrorCode.EnhanceYourCalm, `too many ${what} frames`);
    }
  }

  async #readLoop(): Promise<void> {
    const r = this.#reader;
    while (!this.closed && !this.#stopped) {
      if (r.buffered < FRAME_HEADER) {
        if ((await r.fill()) === 0) return;
        continue;
      }
      const b = r.buf;
      const at = r.start;
      const len = (b[at]! << 16) | (b[at + 1]! << 8) | b[at + 2]!;
      if (len > DEFAULT_MAX_FRAME) {
        throw new H2Error(
          ErrorCode.FrameSize,
          `frame of ${len} bytes is above SETTINGS_MAX_FRAME_SIZE`,
        );
      }
      if (r.buffered < FRAME_HEADER + len) {
        if ((await r.fill()) === 0) return;
        continue;
      }
      const type = b[at + 3]!;
      const flags = b[at + 4]!;
      const sid = read31(b, at + 5);
      const payload = b.subarray(at + FRAME_HEADER, at + FRAME_HEADER + len);
      r.start = at + FRAME_HEADER + len;
      // Only stream work is activity: PINGs alone do not keep an idle connection open.
      if (type <= FrameType.Headers) this.lastActivity = Date.now();
      this.#frame(type, flags, sid, payload);
    }
  }

  #frame(type: number, flags: number, sid: number, p: Uint8Array): void {
    if (this.#contStream !== 0 && type !== FrameType.Continuation) {
      throw new H2Error(ErrorCode.Protocol, "a header block was interrupted by another frame");
    }
    if (!this.#gotSettings && type !== FrameType.Settings) {
      throw new H2Error(ErrorCode.Protocol, "the first frame must be SETTINGS");
    }
    switch (type) {
      case FrameType.Data:
        return this.#data(flags, sid, p);
      case FrameType.Headers:
        return this.#headers(flags, sid, p);
      case FrameType.Priority:
        if (sid === 0) throw new H2Error(ErrorCode.Protocol, "PRIORITY on stream 0");
        this.#cheap("PRIORITY");
        if (p.length !== 5) {
          // A stream error, but RST_STREAM must never name an idle stream (RFC 9113 5.1).
          if (this.#idle(sid)) throw new H2Error(ErrorCode.FrameSize, "PRIORITY must be 5 bytes");
          this.#streamError(sid, ErrorCode.FrameSize);
        }
        return;
      case FrameType.RstStream:
        return this.#rst(sid, p);
      case FrameType.Settings:
        return this.#settings(flags, sid, p);
      case FrameType.PushPromise:
        throw new H2Error(ErrorCode.Protocol, "PUSH_PROMISE is not accepted (push is disabled)");
      case FrameType.Ping:
        if (sid !== 0) throw new H2Error(ErrorCode.Protocol, "PING on a stream");
        if (p.length !== 8) throw new H2Error(ErrorCode.FrameSize, "PING payload must be 8 bytes");
        this.#cheap("PING");
        if ((flags & Flag.Ack) === 0) this.#enqueue(pingFrame(p.slice(), true));
        return;
      case FrameType.Goaway:
        if (sid !== 0) throw new H2Error(ErrorCode.Protocol, "GOAWAY on a stream");
        if (p.length < 8) throw new H2Error(ErrorCode.FrameSize, "GOAWAY payload too short");
        this.#peerGoawayFrame(read31(p, 0), read32(p, 4));
        return;
      case FrameType.WindowUpdate:
        return this.#windowUpdate(sid, p);
      case FrameType.Continuation:
        return this.#continuation(flags, sid, p);
      default:
        // Unknown frame types are ignored (RFC 9113 4.1), within the budget.
        this.#cheap("unknown");
    }
  }

  /** Stream `sid` is idle: never opened by the peer (server) or by us (client). */
  #idle(sid: number): boolean {
    if (this.#role === "server") return (sid & 1) === 1 ? sid > this.#peerMax : true;
    return (sid & 1) === 1 ? sid >= this.#nextId : sid > this.#peerMax;
  }

  #streamError(sid: number, code: number): void {
    const s = this.streams.get(sid);
    if (s) this.resetStream(s, code, false);
    else {
      this.#enqueue(rstFrame(sid, code));
      this.#noteReset(sid);
    }
  }

  #unpad(flags: number, p: Uint8Array, what: string): Uint8Array {
    if ((flags & Flag.Padded) === 0) return p;
    if (p.length < 1) throw new H2Error(ErrorCode.FrameSize, `padded ${what} without a pad length`);
    const pad = p[0]!;
    if (pad >= p.length) {
      throw new H2Error(ErrorCode.Protocol, `${what} padding exceeds its payload`);
    }
    return p.subarray(1, p.length - pad);
  }

  #data(flags: number, sid: number, p: Uint8Array): void {
    if (sid === 0) throw new H2Error(ErrorCode.Protocol, "DATA on stream 0");
    const flowLen = p.length;
    // Connection flow control counts every DATA frame, whatever its stream's state.
    if (flowLen > this.#recvWindow) {
      throw new H2Error(ErrorCode.FlowControl, "DATA beyond the connection window");
    }
    this.#recvWindow -= flowLen;
    this.#connUnacked += flowLen;
    const data = this.#unpad(flags, p, "DATA");
    const end = (flags & Flag.EndStream) !== 0;
    if (data.length === 0 && !end) this.#cheap("empty DATA");
    const s = this.streams.get(sid);
    if (s === undefined || s.remoteEnded) {
      if (this.#idle(sid)) throw new H2Error(ErrorCode.Protocol, "DATA on an idle stream");
      this.#ackConn();
      // Closed: in flight before our RST_STREAM, or the peer ignores END_STREAM.
      if (s !== undefined && s.resetCode < 0) this.#streamError(sid, ErrorCode.StreamClosed);
      return;
    }
    if (flowLen > s.recvWindow) {
      this.#ackConn();
      this.#streamError(sid, ErrorCode.FlowControl);
      return;
    }
    s.recvWindow -= flowLen;
    // Padding is flow-controlled but never reaches the handler: give it back now.
    const padding = flowLen - data.length;
    this.#connUnacked -= data.length;
    s.pending += data.length;
    if (end) this.#endRemote(s);
    if (padding > 0) {
      this.#ackConn();
      this.#streamCredit(s, padding);
    }
    if (s.handler === null) this.#returnPending(s);
    else s.handler.onData(data.slice(), end);
  }

  /** Gives connection window back as it is received: streams' windows bound what is buffered. */
  #ackConn(): void {
    if (this.#connUnacked >= this.#lim.connWindow / 4) {
      this.#enqueue(windowUpdateFrame(0, this.#connUnacked));
      this.#recvWindow += this.#connUnacked;
      this.#connUnacked = 0;
    }
  }

  #headers(flags: number, sid: number, p: Uint8Array): void {
    if (sid === 0) throw new H2Error(ErrorCode.Protocol, "HEADERS on stream 0");
    let block = this.#unpad(flags, p, "HEADERS");
    let selfDependent = false;
    if ((flags & Flag.Priority) !== 0) {
      if (block.length < 5) {
        throw new H2Error(ErrorCode.FrameSize, "HEADERS priority fields cut short");
      }
      if (read31(block, 0) === sid) selfDependent = true;
      block = block.subarray(5);
    }
    const end = (flags & Flag.EndStream) !== 0;
    if ((flags & Flag.EndHeaders) === 0) {
      this.#contSelf = selfDependent;
      this.#contStream = sid;
      this.#contEnd = end;
      this.#contParts = [block.slice()];
      this.#contBytes = block.length;
      this.#contFrames = 0;
      return;
    }
    this.#block(sid, block, end, selfDependent);
  }

  #contSelf = false;

  #continuation(flags: number, sid: number, p: Uint8Array): void {
    if (this.#contStream === 0 || sid !== this.#contStream) {
      throw new H2Error(ErrorCode.Protocol, "CONTINUATION without a header block in progress");
    }
    this.#contFrames++;
    this.#contBytes += p.length;
    if (
      this.#contFrames > MAX_CONTINUATIONS || this.#contBytes > this.#lim.maxHeaderListSize + 16_384
    ) {
      throw new H2Error(
        ErrorCode.EnhanceYourCalm,
        `header block larger than ${this.#lim.maxHeaderListSize} bytes or in more than ${MAX_CONTINUATIONS} CONTINUATION frames`,
      );
    }
    if (p.length === 0 && (flags & Flag.EndHeaders) === 0) this.#cheap("empty CONTINUATION");
    this.#contParts.push(p.slice());
    if ((flags & Flag.EndHeaders) === 0) return;
    const all = new Uint8Array(this.#contBytes);
    let at = 0;
    for (const part of this.#contParts) {
      all.set(part, at);
      at += part.length;
    }
    this.#contStream = 0;
    this.#contParts = [];
    this.#block(sid, all, this.#contEnd, this.#contSelf);
  }

  /** A complete header block for stream `sid`. */
  #block(sid: number, block: Uint8Array, end: boolean, selfDependent = false): void {
    let fields: Fields;
    let tooLarge: boolean;
    try {
      // Always decoded, even for a stream we refuse: HPACK state is per connection.
      ({ fields, tooLarge } = this.#dec.decode(block));
    } catch (e) {
      if (e instanceof HpackError) throw new H2Error(ErrorCode.Compression, e.message);
      throw e;
    }
    const s = this.streams.get(sid);
    if (selfDependent) {
      // RFC 9113 5.3.1: a stream depending on itself is a stream error; it is never served.
      if (this.#role === "server" && sid > this.#peerMax && (sid & 1) === 1) this.#peerMax = sid;
      this.#enqueue(rstFrame(sid, ErrorCode.Protocol));
      this.#noteReset(sid);
      if (s !== undefined) this.resetStream(s, ErrorCode.Protocol, true);
      return;
    }
    if (this.#role === "client") {
      if (s === undefined) {
        if (this.#idle(sid)) {
          throw new H2Error(ErrorCode.Protocol, "HEADERS on a stream we did not open");
        }
        return; // Reset by us meanwhile.
      }
      if (s.remoteEnded) return this.#streamError(sid, ErrorCode.StreamClosed);
      if (tooLarge) return this.#streamError(sid, ErrorCode.Protocol);
      if (end) this.#endRemote(s);
      s.handler?.onHeaders(fields, end);
      return;
    }
    // Server.
    if (s !== undefined) {
      // Trailers: they must end the stream.
      if (s.remoteEnded) return this.#streamError(sid, ErrorCode.StreamClosed);
      if (!end || tooLarge) return this.#streamError(sid, ErrorCode.Protocol);
      this.#endRemote(s);
      s.handler?.onHeaders(fields, true);
      return;
    }
    if ((sid & 1) === 0) throw new H2Error(ErrorCode.Protocol, "a client opened an even stream id");
    // A stream already closed (say, reset while its trailers were on their way): ignored,
    // its block decoded above to keep HPACK in step.
    if (sid <= this.#peerMax) {
      // A stream we reset may still see its trailers; any other id at or below the highest one
      // opened is a reuse (RFC 9113 5.1.1).
      if (this.#resetByUs.has(sid)) return;
      throw new H2Error(ErrorCode.Protocol, "HEADERS for a stream id already used");
    }
    this.#peerMax = sid;
    if (this.#goawaySent) return; // Past our GOAWAY: ignored (RFC 9113 6.8).
    if (this.#busy >= this.#lim.maxConcurrentStreams) {
      this.#refused++;
      this.#enqueue(rstFrame(sid, ErrorCode.RefusedStream));
      this.#noteReset(sid);
      if (this.#refused > MAX_REFUSED) {
        throw new H2Error(
          ErrorCode.EnhanceYourCalm,
          "too many streams above SETTINGS_MAX_CONCURRENT_STREAMS",
        );
      }
      return;
    }
    const ns = new H2Stream(this, sid, this.#peerWindow, this.#lim.streamWindow);
    this.streams.set(sid, ns);
    this.#busy++;
    if (end) ns.state = St.HalfClosedRemote;
    if (tooLarge) {
      // RFC 9113 10.5.1: answer 431 rather than read a list this large.
      this.sendHeaders(ns, [[":status", "431"], ["content-type", "text/plain"]], false);
      void this.sendData(
        ns,
        new TextEncoder().encode(
          `request header list larger than ${this.#lim.maxHeaderListSize} bytes\n`,
        ),
        true,
      ).catch(() => {});
      if (!ns.remoteEnded) this.resetStream(ns, ErrorCode.NoError, false);
      ns.release();
      return;
    }
    this.#opts.onStream?.(ns, fields, end);
  }

  #rst(sid: number, p: Uint8Array): void {
    if (sid === 0) throw new H2Error(ErrorCode.Protocol, "RST_STREAM on stream 0");
    if (p.length !== 4) {
      throw new H2Error(ErrorCode.FrameSize, "RST_STREAM payload must be 4 bytes");
    }
    if (this.#idle(sid)) throw new H2Error(ErrorCode.Protocol, "RST_STREAM on an idle stream");
    const s = this.streams.get(sid);
    // A reset of a stream still at work is what rapid reset abuses: it costs budget.
    if (s !== undefined && !s.closed) this.#cheap("RST_STREAM");
    if (s === undefined) return;
    this.resetStream(s, read32(p, 0), true);
  }

  #settings(flags: number, sid: number, p: Uint8Array): void {
    if (sid !== 0) throw new H2Error(ErrorCode.Protocol, "SETTINGS on a stream");
    if ((flags & Flag.Ack) !== 0) {
      if (p.length !== 0) throw new H2Error(ErrorCode.FrameSize, "SETTINGS ACK with a payload");
      this.#settingsSentAt = 0;
      return;
    }
    if (p.length % 6 !== 0) {
      throw new H2Error(ErrorCode.FrameSize, "SETTINGS payload not a multiple of 6");
    }
    if (this.#gotSettings) this.#cheap("SETTINGS");
    this.#gotSettings = true;
    for (let i = 0; i < p.length; i += 6) {
      const id = (p[i]! << 8) | p[i + 1]!;
      const v = read32(p, i + 2);
      switch (id) {
        case Setting.HeaderTableSize:
          this.#enc.setMaxTableSize(Math.min(v, 64 * 1024));
          break;
        case Setting.EnablePush:
          if (v > 1) throw new H2Error(ErrorCode.Protocol, "SETTINGS_ENABLE_PUSH must be 0 or 1");
          if (this.#role === "client" && v !== 0) {
            throw new H2Error(ErrorCode.Protocol, "a server must not enable push");
          }
          break;
        case Setting.MaxConcurrentStreams:
          this.peerMaxStreams = v;
          break;
        case Setting.InitialWindowSize: {
          if (v > MAX_WINDOW) {
            throw new H2Error(ErrorCode.FlowControl, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1");
          }
          const delta = v - this.#peerWindow;
          this.#peerWindow = v;
          for (const s of this.streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) {
              throw new H2Error(ErrorCode.FlowControl, "a stream window overflowed");
            }
            if (delta > 0) s.wake();
          }
          break;
        }
        case Setting.MaxFrameSize:
          if (v < DEFAULT_MAX_FRAME || v > 16_777_215) {
            throw new H2Error(ErrorCode.Protocol, "SETTINGS_MAX_FRAME_SIZE out of range");
          }
          // We never send frames above 16 KiB: smaller writes interleave streams better.
          this.#peerMaxFrame = DEFAULT_MAX_FRAME;
          break;
        default:
          // Unknown settings are ignored (RFC 9113 6.5.2).
          break;
      }
    }
    this.#enqueue(SETTINGS_ACK);
  }

  #peerGoawayFrame(last: number, code: number): void {
    this.peerGoaway = true;
    if (code !== ErrorCode.NoError) {
      this.#problem(`peer sent GOAWAY ${ERROR_NAMES[code] ?? code}`, code);
    }
    if (this.#role === "client") {
      // Streams above `last` were never processed: retryable.
      for (const s of [...this.streams.values()]) {
        if (s.id > last) this.resetStream(s, ErrorCode.RefusedStream, true);
      }
    }
    this.#maybeFinish();
  }

  #windowUpdate(sid: number, p: Uint8Array): void {
    if (p.length !== 4) {
      throw new H2Error(ErrorCode.FrameSize, "WINDOW_UPDATE payload must be 4 bytes");
    }
    const inc = read31(p, 0);
    if (sid === 0) {
      if (inc === 0) throw new H2Error(ErrorCode.Protocol, "WINDOW_UPDATE of 0");
      this.#sendWindow += inc;
      if (this.#sendWindow > MAX_WINDOW) {
        throw new H2Error(ErrorCode.FlowControl, "connection window above 2^31-1");
      }
      for (const s of this.streams.values()) s.wake();
      return;
    }
    if (this.#idle(sid)) throw new H2Error(ErrorCode.Protocol, "WINDOW_UPDATE on an idle stream");
    const s = this.streams.get(sid);
    if (s === undefined) {
      this.#cheap("WINDOW_UPDATE on a closed stream");
      return;
    }
    if (inc === 0) return this.#streamError(sid, ErrorCode.Protocol);
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) return this.#streamError(sid, ErrorCode.FlowControl);
    s.wake();
  }
}
