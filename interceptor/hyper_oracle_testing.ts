/**
 * The hyper oracle: Deno.serve on a loopback port, fed raw request bytes
 * over TCP. It either answers on its own (a parse error: 400, 431, 505...)
 * or passes the request to the handler, which records what hyper made of
 * it (method, URL, fields, body). Slower than the llhttp oracle (a
 * connection per case), so it sees fewer cases.
 */

export interface HyperAnswer {
  /** accept: the handler saw the request and its whole body. */
  outcome: "accept" | "reject" | "incomplete";
  /** Status of hyper's own answer, when it answered without the handler. */
  status: number | null;
  method: string | null;
  /** Path and query of the URL Deno built. */
  target: string | null;
  /** Deno's Headers entries (lower-case names, repeated fields joined). */
  headers: Array<[string, string]> | null;
  /** Binary string. */
  body: string | null;
}

interface Seen {
  method: string;
  target: string;
  headers: Array<[string, string]>;
  body: string | null;
}

function binary(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode(...bytes.subarray(i, Math.min(bytes.length, i + 4096)));
  }
  return s;
}

/**
 * Path and query of a URL as the URL parser normalises them; when it cannot
 * parse the URL (a host it rejects), what follows the authority as written.
 */
export function pathOf(url: string): string {
  try {
    const u = new URL(url);
    return u.pathname + u.search;
  } catch {
    return url.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/, "");
  }
}

/** Bound on one exchange; hyper answers loopback requests in milliseconds. */
const CASE_TIMEOUT_MS = 3000;
/** After this, no more bytes are coming: hyper has read what it was sent. */
const HALF_CLOSE_MS = 100;

export class HyperOracle {
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  /** What the handler saw, by the client connection's local port. */
  readonly #seen = new Map<number, Seen>();
  /** Called when the handler has read a connection's first request and its body. */
  readonly #handled = new Map<number, () => void>();
  /** Client ports of the connections whose case is being run. */
  readonly #active = new Set<number>();
  readonly #port: number;

  private constructor() {
    this.#server = Deno.serve(
      {
        hostname: "127.0.0.1",
        port: 0,
        onListen: () => {},
        // Deno's answer to a failed handler is a 500 and a log line; the case shows as not accepted.
        onError: () => new Response("handler failed", { status: 500 }),
      },
      async (req, info) => {
        const port = info.remoteAddr.port;
        const seen: Seen = {
          method: req.method,
          target: pathOf(req.url),
          headers: [...req.headers.entries()],
          body: null,
        };
        // Only the first request of a connection is the case; more are smuggled ones,
        // and those that arrive after the case is over must not land on a later one.
        const first = this.#active.has(port) && !this.#seen.has(port);
        if (first) this.#seen.set(port, seen);
        try {
          seen.body = binary(new Uint8Array(await req.arrayBuffer()));
        } catch {
          seen.body = null;
        }
        if (first) this.#handled.get(port)?.();
        return new Response("ok", { headers: { connection: "close" } });
      },
    );
    this.#port = this.#server.addr.port;
  }

  static start(): HyperOracle {
    return new HyperOracle();
  }

  async run(bytes: string): Promise<HyperAnswer> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: this.#port });
    const local = (conn.localAddr as Deno.NetAddr).port;
    this.#active.add(local);
    this.#seen.delete(local);
    const timer = setTimeout(() => {
      try {
        conn.close();
      } catch { /* already closed */ }
    }, CASE_TIMEOUT_MS);
    const got: Uint8Array[] = [];
    let halfClose: ReturnType<typeof setTimeout> | undefined;
    // The handler's verdict is the answer: no need to wait for hyper to close the connection.
    const handled = Promise.withResolvers<null>();
    this.#handled.set(local, () => handled.resolve(null));
    try {
      const data = new Uint8Array(bytes.length);
      for (let i = 0; i < bytes.length; i++) data[i] = bytes.charCodeAt(i);
      let off = 0;
      while (off < data.length) off += await conn.write(data.subarray(off));
      // A truncated message must not wait for more; but a half-close at once would race
      // hyper's reading of a complete body followed by stray bytes, so it comes later.
      halfClose = setTimeout(() => conn.closeWrite().catch(() => {}), HALF_CLOSE_MS);
      const buf = new Uint8Array(16 * 1024);
      while (true) {
        const read = conn.read(buf);
        read.catch(() => {}); // Still pending when the handler's answer wins.
        const n = await Promise.race([read, handled.promise]);
        if (n === null) break;
        got.push(buf.slice(0, n));
      }
    } catch {
      // Reset by hyper, or closed by the timer: what was read so far decides.
    } finally {
      clearTimeout(timer);
      clearTimeout(halfClose);
      this.#handled.delete(local);
      this.#active.delete(local);
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    const seen = this.#seen.get(local);
    this.#seen.delete(local);
    const text = binary(new Uint8Array(got.flatMap((b) => [...b])));
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
    const status = m ? Number(m[1]) : null;
    if (seen !== undefined && seen.body !== null) {
      return { outcome: "accept", status: null, ...seen };
    }
    if (seen === undefined && status !== null && status >= 400) {
      return {
        outcome: "reject",
        status,
        method: null,
        target: null,
        headers: null,
        body: null,
      };
    }
    return {
      outcome: "incomplete",
      status,
      method: seen?.method ?? null,
      target: seen?.target ?? null,
      headers: seen?.headers ?? null,
      body: null,
    };
  }

  async close(): Promise<void> {
    await this.#server.shutdown();
  }
}
