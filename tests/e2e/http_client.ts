/**
 * A minimal HTTP/1.1 client for the end-to-end suite. Deno's fetch ignores a
 * Host header, and routing by host is what the interceptor does, so requests
 * are written by hand. It also tells the failure modes apart that the
 * resilience case counts: a refused connection (nothing was accepted), a
 * reused keep-alive connection that was already closed (nothing was
 * accepted; safe to retry, as Go's and browsers' clients do), and a request
 * that was sent and never answered (accepted and lost).
 */

export interface HttpTarget {
  hostname: string;
  port: number;
}

export interface HttpRequest {
  /** The Host header: what the interceptor routes by. */
  host: string;
  path: string;
  method?: string;
  headers?: Record<string, string>;
  /** Overall bound on this request; default 60 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Map<string, string>;
  body: string;
  /** The request went over a connection that had served a request before. */
  reused: boolean;
  /** performance.now() when the request was written and when the head arrived. */
  sentAt: number;
  headAt: number;
}

/** Where a request failed; decides whether it was accepted by the server. */
export type FailurePhase =
  /** TCP connect failed (refused, unreachable, timed out): never accepted. */
  | "connect"
  /** A reused connection was closed before any response byte: the server saw nothing, or dropped an idle connection. */
  | "stale"
  /** The request was written on a fresh connection, or response bytes had arrived, then the connection broke or timed out. */
  | "response";

export class HttpRequestError extends Error {
  override name = "HttpRequestError";
  constructor(
    message: string,
    readonly phase: FailurePhase,
    readonly target: HttpTarget,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** True when the server may have received the request (it must not be silently dropped). */
  get accepted(): boolean {
    return this.phase === "response";
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function indexOf(buf: Uint8Array, pattern: number[], from = 0): number {
  outer: for (let i = from; i + pattern.length <= buf.length; i++) {
    for (let j = 0; j < pattern.length; j++) if (buf[i + j] !== pattern[j]) continue outer;
    return i;
  }
  return -1;
}

const CRLF = [13, 10];
const CRLFCRLF = [13, 10, 13, 10];

/** Parses a response head ("HTTP/1.1 200 OK\r\nName: v\r\n…"); throws on a malformed one. */
export function parseHead(text: string): { status: number; headers: Map<string, string> } {
  const lines = text.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "");
  if (!m) throw new Error(`not an HTTP/1.x status line: ${JSON.stringify(lines[0])}`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(":");
    if (i <= 0) continue;
    const k = line.slice(0, i).trim().toLowerCase();
    const v = line.slice(i + 1).trim();
    headers.set(k, headers.has(k) ? `${headers.get(k)}, ${v}` : v);
  }
  return { status: Number(m[1]), headers };
}

/**
 * One keep-alive connection to a target, one request at a time (a load
 * worker owns one). A broken connection is dropped; the next request opens a
 * new one.
 */
export class HttpClient implements Disposable {
  #conn: Deno.TcpConn | undefined;
  #buf: Uint8Array = new Uint8Array(0);
  #served = 0;
  #busy = false;

  constructor(readonly target: HttpTarget) {}

  async request(req: HttpRequest): Promise<HttpResponse> {
    if (this.#busy) throw new Error("HttpClient: one request at a time");
    this.#busy = true;
    const timeoutMs = req.timeoutMs ?? 60_000;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = req.signal ? AbortSignal.any([req.signal, timeout]) : timeout;
    const onAbort = () => this.#drop();
    signal.addEventListener("abort", onAbort, { once: true });
    const where = `${
      req.method ?? "GET"
    } http://${req.host}${req.path} via ${this.target.hostname}:${this.target.port}`;
    let phase: FailurePhase = "connect";
    let gotBytes = false;
    try {
      signal.throwIfAborted();
      const reused = this.#conn !== undefined;
      if (!this.#conn) {
        this.#conn = await Deno.connect({ hostname: this.target.hostname, port: this.target.port });
        this.#conn.setNoDelay(true);
        this.#buf = new Uint8Array(0);
      }
      signal.throwIfAborted();
      phase = reused ? "stale" : "response";
      const headers: Record<string, string> = {
        "user-agent": "keda-http-deno-e2e",
        ...req.headers,
        host: req.host,
      };
      let head = `${req.method ?? "GET"} ${req.path} HTTP/1.1\r\n`;
      for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
      const sentAt = performance.now();
      await this.#write(enc.encode(head + "\r\n"));
      const { status, headers: resHeaders, headAt } = await this.#readHead(() => {
        gotBytes = true;
        phase = "response";
      });
      const body = await this.#readBody(status, resHeaders, req.method === "HEAD");
      this.#served++;
      if (resHeaders.get("connection")?.toLowerCase() === "close") this.#drop();
      return { status, headers: resHeaders, body, reused, sentAt, headAt };
    } catch (e) {
      this.#drop();
      if (gotBytes) phase = "response";
      const why = signal.aborted
        ? (timeout.aborted ? `no answer within ${timeoutMs} ms` : "aborted")
        : (e as Error).message;
      throw new HttpRequestError(`${where}: ${why} (${phase})`, phase, this.target, { cause: e });
    } finally {
      signal.removeEventListener("abort", onAbort);
      this.#busy = false;
    }
  }

  /** Requests served over the current and earlier connections. */
  get served(): number {
    return this.#served;
  }

  async #write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.#conn!.write(bytes.subarray(off));
  }

  async #more(onFirstByte?: () => void): Promise<void> {
    const conn = this.#conn;
    if (!conn) throw new Error("connection closed");
    const chunk = new Uint8Array(64 * 1024);
    const n = await conn.read(chunk);
    if (n === null) throw new Error("connection closed by the server");
    if (n > 0) onFirstByte?.();
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
  }

  async #readHead(
    onFirstByte: () => void,
  ): Promise<{ status: number; headers: Map<string, string>; headAt: number }> {
    while (true) {
      let end: number;
      while ((end = indexOf(this.#buf, CRLFCRLF)) < 0) await this.#more(onFirstByte);
      const text = dec.decode(this.#buf.subarray(0, end));
      this.#buf = this.#buf.subarray(end + 4);
      const parsed = parseHead(text);
      // 1xx heads precede the real one.
      if (parsed.status >= 100 && parsed.status < 200) continue;
      return { ...parsed, headAt: performance.now() };
    }
  }

  async #readBody(status: number, headers: Map<string, string>, head: boolean): Promise<string> {
    if (head || status === 204 || status === 304) return "";
    const te = headers.get("transfer-encoding")?.toLowerCase() ?? "";
    const cl = headers.get("content-length");
    if (te.includes("chunked")) {
      const parts: Uint8Array[] = [];
      while (true) {
        let nl: number;
        while ((nl = indexOf(this.#buf, CRLF)) < 0) await this.#more();
        const size = parseInt(dec.decode(this.#buf.subarray(0, nl)).split(";")[0]!.trim(), 16);
        if (Number.isNaN(size)) throw new Error("malformed chunk size");
        this.#buf = this.#buf.subarray(nl + 2);
        if (size === 0) {
          // Trailers end with an empty line.
          while (true) {
            while ((nl = indexOf(this.#buf, CRLF)) < 0) await this.#more();
            const empty = nl === 0;
            this.#buf = this.#buf.subarray(nl + 2);
            if (empty) break;
          }
          break;
        }
        while (this.#buf.length < size + 2) await this.#more();
        parts.push(this.#buf.slice(0, size));
        this.#buf = this.#buf.subarray(size + 2);
      }
      return parts.map((p) => dec.decode(p, { stream: true })).join("") + dec.decode();
    }
    if (cl !== undefined) {
      const n = Number(cl);
      while (this.#buf.length < n) await this.#more();
      const body = dec.decode(this.#buf.subarray(0, n));
      this.#buf = this.#buf.subarray(n);
      return body;
    }
    // No length: the body runs to the end of the connection.
    while (true) {
      try {
        await this.#more();
      } catch {
        break;
      }
    }
    const body = dec.decode(this.#buf);
    this.#drop();
    return body;
  }

  #drop(): void {
    try {
      this.#conn?.close();
    } catch {
      // Closed already.
    }
    this.#conn = undefined;
    this.#buf = new Uint8Array(0);
  }

  close(): void {
    this.#drop();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * One request with the retry every HTTP client makes: a reused connection
 * that turns out closed is retried once on a fresh one. `retried` tells the
 * caller it happened.
 */
export async function requestWithRetry(
  client: HttpClient,
  req: HttpRequest,
): Promise<HttpResponse & { retried: boolean }> {
  try {
    return { ...(await client.request(req)), retried: false };
  } catch (e) {
    if (!(e instanceof HttpRequestError) || e.phase !== "stale") throw e;
    return { ...(await client.request(req)), retried: true };
  }
}

/** One request on a fresh connection (closed afterwards). */
export async function httpGet(target: HttpTarget, req: HttpRequest): Promise<HttpResponse> {
  using client = new HttpClient(target);
  return await client.request(req);
}
