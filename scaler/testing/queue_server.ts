/**
 * For tests and benchmarks: a real HTTP server speaking the interceptor's
 * admin wire format (GET /queue and GET /queue/watch, through the same
 * shared/queue_counts.ts code the interceptor uses), whose counts the test
 * drives: hold()/release() requests, or let a counter grow at a set rate.
 *
 * Watch semantics as the interceptor's: a route's 0 → >0 and >0 → 0
 * Concurrency changes go out at once, other changes coalesced.
 */
import {
  QUEUE_PATH,
  QUEUE_WATCH_PATH,
  type QueueCounts,
  queueResponse,
  queueWatchResponse,
} from "../../shared/queue_counts.ts";

interface RouteCounter {
  concurrency: number;
  base: number;
  /** Requests per second added to RequestCount over time. */
  rps: number;
  since: number;
}

export interface QueueServerOptions {
  hostname?: string;
  port?: number;
  heartbeatMs?: number;
  /** Coalescing delay of non-transition changes on the watch. */
  coalesceMs?: number;
  /**
   * Serve POST /_test/concurrency?route=&n= and /_test/rate?route=&rps= so a
   * test can drive a server running in another process (or network namespace).
   */
  control?: boolean;
}

export class QueueServer {
  readonly url: string;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #routes = new Map<string, RouteCounter>();
  readonly #watchers = new Set<(c: QueueCounts) => void>();
  readonly #closing = new AbortController();
  readonly #coalesceMs: number;
  #pending = new Set<string>();
  #flush?: ReturnType<typeof setTimeout>;
  /** Number of /queue polls answered. */
  polls = 0;

  constructor(options: QueueServerOptions = {}) {
    this.#coalesceMs = options.coalesceMs ?? 50;
    const heartbeatMs = options.heartbeatMs ?? 1000;
    this.#server = Deno.serve({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? 0,
      onListen() {},
    }, (req) => {
      const path = new URL(req.url).pathname;
      if (path === QUEUE_PATH) {
        this.polls++;
        return queueResponse(this.snapshot());
      }
      if (path === QUEUE_WATCH_PATH) {
        return queueWatchResponse(
          () => this.snapshot(),
          (send) => {
            this.#watchers.add(send);
            return () => this.#watchers.delete(send);
          },
          // A client hanging up cancels the body stream; the signal is for close().
          { heartbeatMs, signal: this.#closing.signal },
        );
      }
      if (options.control && req.method === "POST" && path.startsWith("/_test/")) {
        return this.#control(path, new URL(req.url).searchParams);
      }
      return new Response("not found", { status: 404 });
    });
    const addr = this.#server.addr;
    const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
    this.url = `http://${host}:${addr.port}`;
  }

  #control(path: string, q: URLSearchParams): Response {
    const route = q.get("route") ?? "";
    const n = Number(q.get("n") ?? q.get("rps"));
    if (!route.includes("/") || !Number.isFinite(n) || n < 0) {
      return new Response("need route=<ns>/<name> and n= (or rps=) >= 0\n", { status: 400 });
    }
    if (path === "/_test/concurrency") this.setConcurrency(route, n);
    else if (path === "/_test/rate") this.setRate(route, n);
    else return new Response("unknown control endpoint\n", { status: 404 });
    return new Response("ok\n");
  }

  get port(): number {
    return this.#server.addr.port;
  }

  #route(key: string): RouteCounter {
    let r = this.#routes.get(key);
    if (!r) {
      r = { concurrency: 0, base: 0, rps: 0, since: performance.now() };
      this.#routes.set(key, r);
    }
    return r;
  }

  #countOf(r: RouteCounter): number {
    return r.base + Math.floor(r.rps * (performance.now() - r.since) / 1000);
  }

  snapshot(): QueueCounts {
    const out: QueueCounts = {};
    for (const [key, r] of this.#routes) {
      out[key] = { Concurrency: r.concurrency, RequestCount: this.#countOf(r) };
    }
    return out;
  }

  #changed(key: string, transition: boolean): void {
    if (transition) {
      const r = this.#route(key);
      const line = { [key]: { Concurrency: r.concurrency, RequestCount: this.#countOf(r) } };
      for (const w of this.#watchers) w(line);
      return;
    }
    this.#pending.add(key);
    this.#flush ??= setTimeout(() => {
      this.#flush = undefined;
      const snap = this.snapshot();
      const line: QueueCounts = {};
      for (const k of this.#pending) if (snap[k]) line[k] = snap[k];
      this.#pending.clear();
      for (const w of this.#watchers) w(line);
    }, this.#coalesceMs);
  }

  /** Declares a route with zero counts (as an interceptor does for its routing table). */
  addRoute(key: string, requestCount = 0): void {
    this.#route(key).base = requestCount;
  }

  /** One request arrives and is held until the returned function is called. */
  hold(key: string): () => void {
    const r = this.#route(key);
    r.concurrency++;
    r.base++;
    this.#changed(key, r.concurrency === 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      r.concurrency--;
      this.#changed(key, r.concurrency === 0);
    };
  }

  /**
   * `n` requests answered at once (an InterceptorRoute placeholder while the
   * app is at zero): RequestCount rises, Concurrency never shows them. The
   * watch line goes out at once with Concurrency 0, as the interceptor's does
   * when its activity message is handled after the request has ended.
   */
  answered(key: string, n = 1): void {
    this.#route(key).base += n;
    this.#changed(key, true);
  }

  /** Sets in-flight requests directly (e.g. to build exact sums). */
  setConcurrency(key: string, n: number): void {
    const r = this.#route(key);
    const was = r.concurrency;
    r.concurrency = n;
    this.#changed(key, (was === 0) !== (n === 0));
  }

  /** Makes RequestCount grow by `rps` per second from now on. */
  setRate(key: string, rps: number): void {
    const r = this.#route(key);
    r.base = this.#countOf(r);
    r.since = performance.now();
    r.rps = rps;
  }

  /** Stops serving: open watches end, new connections are refused. */
  async close(): Promise<void> {
    clearTimeout(this.#flush);
    this.#closing.abort();
    await this.#server.shutdown();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#closing.signal.aborted) await this.close();
  }
}
