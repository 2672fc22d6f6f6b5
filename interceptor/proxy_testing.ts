/**
 * Test harness for the data plane in one isolate: an HttpProxy on a loopback
 * port, routes from HTTPScaledObject-like objects, endpoints set by hand,
 * and a raw HTTP/1.1 client for what fetch cannot send (malformed heads,
 * pipelining, HTTP/1.0, arbitrary Host headers).
 */
import { createLogger, type Logger } from "../shared/log.ts";
import { buildRoutingTable } from "../shared/routing_table.ts";
import { SharedCounters } from "./counters.ts";
import { targetKeyOf } from "./endpoints.ts";
import { RequestMetrics } from "./metrics.ts";
import { HttpProxy } from "./proxy.ts";
import { type LiveRoute, liveRouteOf, type ProxyConfig } from "./proxy_contract.ts";
import { type ConfigMapLookup, resolveResponse } from "./static_response.ts";

export const TEST_PROXY_CONFIG: ProxyConfig = {
  readinessTimeoutMs: 5_000,
  requestTimeoutMs: 0,
  responseHeaderTimeoutMs: 10_000,
  connectTimeoutMs: 500,
  coldStartHeader: true,
  maxHeldRequests: 100,
  podConcurrencyLimit: 0,
  idleTimeoutMs: 10_000,
  headTimeoutMs: 2_000,
  retryAfterSeconds: 2,
};

export interface Harness extends AsyncDisposable {
  proxy: HttpProxy;
  counters: SharedCounters;
  metrics: RequestMetrics;
  port: number;
  /** [slot, active] transitions reported by the proxy. */
  activity: Array<[number, boolean]>;
  logs: string[];
  routes: Map<string, LiveRoute>;
  /** Installs routes from objects ({name, spec}); returns them by key. */
  setRoutes(
    objects: TestRouteObject[],
    configMaps?: Record<string, { data?: Record<string, string> }>,
  ): void;
  /** Sets a route target's endpoints (loopback ports). */
  setEndpoints(
    routeKey: string,
    ports: number[],
    opts?: { h2c?: boolean; tls?: boolean; fallback?: boolean },
  ): void;
  close(): Promise<void>;
}

let podSlot = 1;

/** A route for the harness: an HTTPScaledObject spec, or with kind "InterceptorRoute" its spec. */
export interface TestRouteObject {
  name: string;
  namespace?: string;
  kind?: "HTTPScaledObject" | "InterceptorRoute";
  /** creationTimestamp (ties between routes go to the older). */
  createdAt?: string;
  spec: Record<string, unknown>;
}

/**
 * Live routes (counter slots from 1) from HTTPScaledObject-like or
 * InterceptorRoute-like objects, by key. `configMaps`: labelled ConfigMaps
 * by "namespace/name" for static bodies.
 */
export function liveRoutes(
  objects: TestRouteObject[],
  configMaps: Record<string, { data?: Record<string, string> }> = {},
): Map<string, LiveRoute> {
  const meta = (o: TestRouteObject) => ({
    name: o.name,
    namespace: o.namespace ?? "default",
    ...(o.createdAt ? { creationTimestamp: o.createdAt } : {}),
  });
  const t = buildRoutingTable(
    objects.filter((o) => o.kind !== "InterceptorRoute").map((o) => ({
      metadata: meta(o),
      spec: { scaleTargetRef: { name: o.name, service: o.name, port: 80 }, ...o.spec },
    })),
    objects.filter((o) => o.kind === "InterceptorRoute").map((o) => ({
      metadata: meta(o),
      spec: {
        target: { service: o.name, port: 80 },
        scalingMetric: { concurrency: { targetValue: 100 } },
        ...o.spec,
      },
    })),
  );
  if (t.invalid.size > 0) throw new Error(JSON.stringify([...t.invalid]));
  const lookup: ConfigMapLookup = (ns, name) => configMaps[`${ns}/${name}`];
  const routes = new Map<string, LiveRoute>();
  let slot = 1;
  for (const e of t.entries.values()) {
    routes.set(
      e.key,
      liveRouteOf(
        e,
        slot++,
        targetKeyOf(e.target),
        e.fallback ? targetKeyOf(e.fallback) : undefined,
        {
          rank: e.createdAt ?? "",
          resolve: (spec, def) => resolveResponse(spec, def, e.namespace, lookup),
        },
      ),
    );
  }
  return routes;
}

export function startHarness(config: Partial<ProxyConfig> = {}): Harness {
  const counters = SharedCounters.create({ routeCapacity: 256, podCapacity: 4096 });
  const metrics = new RequestMetrics();
  const logs: string[] = [];
  const log: Logger = createLogger({ level: "debug", sink: (l) => logs.push(l) });
  const activity: Array<[number, boolean]> = [];
  const proxy = new HttpProxy({
    config: { ...TEST_PROXY_CONFIG, ...config },
    counters,
    metrics,
    log,
    onActivity: (slot, active) => activity.push([slot, active]),
  });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of listener) {
      conn.setNoDelay(true);
      proxy.serve(conn, (conn.remoteAddr as Deno.NetAddr).hostname);
    }
  })().catch(() => {});
  const routes = new Map<string, LiveRoute>();
  const slotByPort = new Map<number, number>();
  const h: Harness = {
    proxy,
    counters,
    metrics,
    port: (listener.addr as Deno.NetAddr).port,
    activity,
    logs,
    routes,
    setRoutes(objects, configMaps) {
      routes.clear();
      for (const [k, r] of liveRoutes(objects, configMaps)) routes.set(k, r);
      proxy.setRoutes([...routes.values()]);
    },
    setEndpoints(routeKey, ports, opts = {}) {
      const r = routes.get(routeKey);
      if (!r) throw new Error(`no route ${routeKey}`);
      const key = opts.fallback ? r.fallbackKey! : r.targetKey;
      proxy.setTargets([{
        key,
        h2c: opts.h2c ?? false,
        tls: opts.tls ?? false,
        endpoints: ports.map((port) => {
          let slot = slotByPort.get(port);
          if (slot === undefined) slotByPort.set(port, slot = podSlot++ % 4096 || podSlot++);
          return { ip: "127.0.0.1", port, slot };
        }),
      }]);
    },
    async close() {
      try {
        listener.close();
      } catch {
        // Closed already.
      }
      await accepting;
      proxy.close();
    },
    async [Symbol.asyncDispose]() {
      await h.close();
    },
  };
  return h;
}

/** A loopback app server for tests; `handler` may be swapped. */
export function startApp(
  handler: (
    req: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ) => Response | Promise<Response>,
  port = 0,
): Deno.HttpServer<Deno.NetAddr> & { port: number } {
  const server = Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, handler);
  return Object.assign(server, { port: server.addr.port });
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export interface RawResponse {
  status: number;
  head: string;
  headers: Map<string, string>;
  body: string;
}

/** A raw HTTP/1.1 client connection: send bytes, read parsed responses. */
export class RawClient implements Disposable {
  #buf = new Uint8Array(0);
  closed = false;
  private constructor(readonly conn: Deno.TcpConn) {}

  static async connect(port: number): Promise<RawClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    return new RawClient(conn);
  }

  async send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  async #more(): Promise<boolean> {
    const chunk = new Uint8Array(65536);
    let n: number | null;
    try {
      n = await this.conn.read(chunk);
    } catch {
      n = null;
    }
    if (n === null) {
      this.closed = true;
      return false;
    }
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  /** Waits until the bytes received (not yet taken by response()) contain `text`. */
  async received(text: string): Promise<void> {
    while (!dec.decode(this.#buf).includes(text)) {
      if (!(await this.#more())) throw new Error(`connection closed before "${text}" arrived`);
    }
  }

  /** Reads one response (Content-Length, chunked, or until close). */
  async response(opts: { head?: boolean } = {}): Promise<RawResponse> {
    let headEnd = -1;
    while ((headEnd = findCrlfCrlf(this.#buf)) < 0) {
      if (!(await this.#more())) {
        throw new Error(`connection closed before a response head: ${dec.decode(this.#buf)}`);
      }
    }
    const head = dec.decode(this.#buf.subarray(0, headEnd));
    this.#buf = this.#buf.subarray(headEnd + 4);
    const lines = head.split("\r\n");
    const status = Number(lines[0]!.split(" ")[1]);
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const i = l.indexOf(":");
      const k = l.slice(0, i).toLowerCase();
      const v = l.slice(i + 1).trim();
      headers.set(k, headers.has(k) ? `${headers.get(k)}, ${v}` : v);
    }
    if (opts.head || status === 204 || status === 304 || (status >= 100 && status < 200)) {
      return { status, head, headers, body: "" };
    }
    const te = headers.get("transfer-encoding");
    const cl = headers.get("content-length");
    let body: Uint8Array;
    if (te?.toLowerCase().includes("chunked")) {
      const parts: Uint8Array[] = [];
      while (true) {
        let nl: number;
        while ((nl = indexOfCrlf(this.#buf)) < 0) {
          if (!(await this.#more())) throw new Error("closed in chunked body");
        }
        const size = parseInt(dec.decode(this.#buf.subarray(0, nl)).split(";")[0]!, 16);
        this.#buf = this.#buf.subarray(nl + 2);
        if (size === 0) {
          while ((nl = findCrlfCrlf(concat(enc.encode("\r\n"), this.#buf))) < 0) {
            if (!(await this.#more())) throw new Error("closed in trailers");
          }
          this.#buf = this.#buf.subarray(nl + 2);
          break;
        }
        while (this.#buf.length < size + 2) {
          if (!(await this.#more())) throw new Error("closed in chunk");
        }
        parts.push(this.#buf.slice(0, size));
        this.#buf = this.#buf.subarray(size + 2);
      }
      body = concat(...parts);
    } else if (cl !== undefined) {
      const n = Number(cl);
      while (this.#buf.length < n) if (!(await this.#more())) throw new Error("closed in body");
      body = this.#buf.slice(0, n);
      this.#buf = this.#buf.subarray(n);
    } else {
      while (await this.#more()) { /* until close */ }
      body = this.#buf;
      this.#buf = new Uint8Array(0);
    }
    return { status, head, headers, body: dec.decode(body) };
  }

  /** Resolves true when the server closes the connection within the timeout, false if it did not. */
  async closedWithin(ms: number): Promise<boolean> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.conn.close();
    }, ms);
    try {
      while (await this.#more()) { /* drain */ }
      return !timedOut;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function findCrlfCrlf(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

function indexOfCrlf(b: Uint8Array): number {
  for (let i = 0; i + 1 < b.length; i++) if (b[i] === 13 && b[i + 1] === 10) return i;
  return -1;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** One request on a fresh connection; the connection is closed afterwards. */
export async function rawRequest(port: number, text: string): Promise<RawResponse> {
  using c = await RawClient.connect(port);
  await c.send(text);
  return await c.response({ head: text.startsWith("HEAD ") });
}

/** Polls until fn() is truthy; throws naming `what` after the timeout. */
export async function until<T>(
  fn: () => T | Promise<T>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}
