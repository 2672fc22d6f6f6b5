/**
 * HTTP/2 peers for tests: Node.js (nghttp2, the reference implementation)
 * as a client and as an h2c app, and a raw frame-level client for what no
 * well-behaved client sends.
 */
import { ConnReader } from "./conn_io.ts";
import {
  frame,
  FRAME_HEADER,
  FrameType,
  headersFrames,
  PREFACE,
  read31,
  read32,
  settingsFrame,
} from "./h2_frames.ts";
import { HpackDecoder, HpackEncoder } from "./hpack.ts";

const PEER = new URL("./testing/h2_node_peer.mjs", import.meta.url).pathname;

export interface NodeRequest {
  id?: number;
  headers: Record<string, string>;
  /** A body, or its parts (written with gapMs between them). */
  body?: string | string[];
  gapMs?: number;
  cancelAfterMs?: number;
}

export interface NodeResult {
  id?: number;
  status: number;
  headers: Record<string, string>;
  trailers: Record<string, string>;
  body: string;
  error?: string;
  rstCode?: number;
  sessionError?: string;
}

/** Runs requests concurrently on one Node http2 session; results in completion order. */
export async function nodeRequests(
  url: string,
  specs: NodeRequest[],
  tls?: { caFile: string; servername: string },
): Promise<NodeResult[]> {
  const child = new Deno.Command("node", {
    args: [PEER, "client", url],
    env: tls ? { H2_CA: tls.caFile, H2_SERVERNAME: tls.servername } : {},
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(specs.map((s) => JSON.stringify(s)).join("\n") + "\n"));
  await w.close();
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout);
  const results = text.split("\n").filter((l) => l.trim() !== "").map((l) =>
    JSON.parse(l) as NodeResult
  );
  if (results.some((r) => r.sessionError !== undefined) || results.length < specs.length) {
    throw new Error(
      `node http2 client: ${text} ${new TextDecoder().decode(out.stderr)}`.slice(0, 2000),
    );
  }
  return results;
}

/** An h2c app on loopback (Node's http2 server): /info echoes headers, /trailers, /bidi, /big. */
export async function startNodeH2App(): Promise<AsyncDisposable & { port: number }> {
  const child = new Deno.Command("node", {
    args: [PEER, "server"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  while (!buf.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("node h2 app exited before listening");
    buf += value;
  }
  const port = (JSON.parse(buf.split("\n")[0]!) as { port: number }).port;
  return {
    port,
    async [Symbol.asyncDispose]() {
      await child.stdin.close().catch(() => {});
      try {
        child.kill("SIGKILL");
      } catch {
        // Gone.
      }
      await child.status;
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
    },
  };
}

export interface RawFrame {
  type: number;
  flags: number;
  sid: number;
  payload: Uint8Array;
}

/** A frame-level HTTP/2 client over TCP, for hostile input. */
export class RawH2 {
  readonly enc = new HpackEncoder();
  readonly dec = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: 1 << 20 });
  readonly #r: ConnReader;
  private constructor(readonly conn: Deno.TcpConn) {
    this.#r = new ConnReader(conn, 64 * 1024, 1 << 20);
  }

  static async connect(port: number, opts: { preface?: boolean } = {}): Promise<RawH2> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const c = new RawH2(conn);
    if (opts.preface !== false) {
      await c.write(PREFACE);
      await c.write(settingsFrame([]));
    }
    return c;
  }

  async write(b: Uint8Array): Promise<void> {
    let off = 0;
    while (off < b.length) off += await this.conn.write(b.subarray(off));
  }

  /** Sends a request's HEADERS (one frame, or split for CONTINUATION tests). */
  async headers(sid: number, fields: Array<[string, string]>, endStream = true): Promise<void> {
    await this.write(headersFrames(sid, this.enc.encode(fields), endStream, 16_384));
  }

  frame(type: number, flags: number, sid: number, payload?: Uint8Array): Promise<void> {
    return this.write(frame(type, flags, sid, payload));
  }

  /** The next frame, or null at EOF / after `timeoutMs`. */
  async next(timeoutMs = 5_000): Promise<RawFrame | null> {
    const r = this.#r;
    const until = Date.now() + timeoutMs;
    while (true) {
      if (r.buffered >= FRAME_HEADER) {
        const b = r.buf;
        const len = (b[r.start]! << 16) | (b[r.start + 1]! << 8) | b[r.start + 2]!;
        if (r.buffered >= FRAME_HEADER + len) {
          const f: RawFrame = {
            type: b[r.start + 3]!,
            flags: b[r.start + 4]!,
            sid: read31(b, r.start + 5),
            payload: b.slice(r.start + FRAME_HEADER, r.start + FRAME_HEADER + len),
          };
          r.start += FRAME_HEADER + len;
          return f;
        }
      }
      const left = until - Date.now();
      if (left <= 0 || r.eof) return null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        r.fill(),
        new Promise<number>((res) => (timer = setTimeout(() => res(-1), left))),
      ]);
      clearTimeout(timer);
      if (n <= 0) return null;
    }
  }

  /** Frames until one matches, EOF or the timeout; returns it (or null) and those skipped. */
  async until(
    pred: (f: RawFrame) => boolean,
    timeoutMs = 5_000,
  ): Promise<{ hit: RawFrame | null; seen: RawFrame[] }> {
    const seen: RawFrame[] = [];
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const f = await this.next(end - Date.now());
      if (f === null) return { hit: null, seen };
      if (pred(f)) return { hit: f, seen };
      seen.push(f);
    }
    return { hit: null, seen };
  }

  /** The GOAWAY error code the server sent, or null. */
  async goaway(timeoutMs = 5_000): Promise<number | null> {
    const { hit } = await this.until((f) => f.type === FrameType.Goaway, timeoutMs);
    return hit === null ? null : read32(hit.payload, 4);
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Closed.
    }
  }
}

/** The RST_STREAM code in a frame's payload. */
export function rstCodeOf(f: RawFrame): number {
  return read32(f.payload, 0);
}
