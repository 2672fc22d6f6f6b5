/**
 * Jaeger v2 (an OpenTelemetry-collector build: OTLP receivers in, a query API
 * out) as a trace backend for tests, built from its Go module
 * (github.com/jaegertracing/jaeger, the version that tests/tools/jaeger/go.mod
 * pins with its `tool` directive; its v2 command is cmd/jaeger) into
 * ~/.cache/keda-http-deno/jaeger when that go.mod or go.sum changes, never into
 * the checkout. To move to another version: in tests/tools/jaeger run
 * `go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@vX.Y.Z`.
 *
 * JAEGER_BIN, when set, names a Jaeger v2 binary to use instead (no build).
 */

import { buildGoTool } from "./go_tool.ts";

const SRC_DIR = new URL("./jaeger/", import.meta.url).pathname;
export const JAEGER_PKG = "github.com/jaegertracing/jaeger/cmd/jaeger";

let built: Promise<string> | undefined;

/** The jaeger binary's path: built on first use (once per process), cached after that. */
export function jaegerBinary(): Promise<string> {
  return built ??= build();
}

async function build(): Promise<string> {
  const given = Deno.env.get("JAEGER_BIN");
  if (given) return given;
  const version = (await Deno.readTextFile(SRC_DIR + "go.mod"))
    .match(/^\s*github\.com\/jaegertracing\/jaeger (v\S+)/m)?.[1] ??
    "(see tests/tools/jaeger/go.mod)";
  return await buildGoTool({
    name: "jaeger",
    srcDir: SRC_DIR,
    pkg: JAEGER_PKG,
    // The variable Jaeger's own release build stamps; here it carries the Go
    // module's version (the v2 release name is not recorded in the module).
    ldflags: version.startsWith("v")
      ? [`-X github.com/jaegertracing/jaeger/internal/version.latestVersion=${version}`]
      : [],
    what: `jaeger v2 from module ${version} (${JAEGER_PKG}, pinned by tests/tools/jaeger/go.mod)`,
    needs: `Go ≥ 1.26 and the module github.com/jaegertracing/jaeger@${version} with its` +
      ` dependencies (\`go mod download\` in tests/tools/jaeger fetches them ahead),` +
      ` or set JAEGER_BIN to an installed Jaeger v2 binary`,
  });
}

/** One span as the query API returned it, flattened out of its resource and scope. */
export interface JaegerSpan {
  /** 32 lowercase hex digits. */
  traceId: string;
  /** 16 lowercase hex digits. */
  spanId: string;
  parentSpanId: string;
  name: string;
  /** OTLP's span kind number (1 internal, 2 server, 3 client, 4 producer, 5 consumer). */
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  /** The resource's service.name. */
  service: string;
  /** The span's attributes, each value as OTLP JSON's AnyValue gives it. */
  attributes: Record<string, unknown>;
}

/** A running Jaeger v2 with in-memory storage, every port on 127.0.0.1. */
export interface Jaeger {
  /** Base URL of the OTLP/HTTP receiver: POST `${otlpHttpEndpoint}/v1/traces`. */
  readonly otlpHttpEndpoint: string;
  /** host:port of the OTLP/gRPC receiver (plaintext). */
  readonly otlpGrpcEndpoint: string;
  /** Base URL of the query HTTP API (/api/v3/..., /api/..., and the UI). */
  readonly queryUrl: string;
  /**
   * The collector's Prometheus exporter: GET it for the OTLP metrics it has
   * received (its `prometheus` exporter, fed by a metrics pipeline from the OTLP receivers).
   */
  readonly metricsUrl: string;
  /** The spans of the traces that have a span of `service` (api/v3 find traces). */
  traces(service: string, opts?: { lookbackMs?: number; limit?: number }): Promise<JaegerSpan[]>;
  /** The spans of one trace by its 32-hex-digit id, [] if Jaeger has none. */
  trace(traceId: string): Promise<JaegerSpan[]>;
  /** The service names Jaeger has spans of. */
  services(): Promise<string[]>;
  /** What the process has written to stdout and stderr so far. */
  log(): Promise<string>;
  /** Stops the process (SIGTERM, then SIGKILL) and removes its temp dir. */
  stop(): Promise<void>;
}

/** A port the kernel handed out just now; held while the others are chosen, so they differ. */
function freePorts(n: number): number[] {
  const ls = Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = ls.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of ls) l.close();
  return ports;
}

/**
 * The collector config: OTLP in; traces to memory storage and the query API,
 * metrics to its Prometheus exporter; nothing else listens.
 */
function config(
  p: { otlpGrpc: number; otlpHttp: number; queryHttp: number; queryGrpc: number; prom: number },
) {
  return `# Written by tests/tools/jaeger.ts for one test's Jaeger.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: []
      exporters: [jaeger_storage_exporter]
    metrics:
      receivers: [otlp]
      processors: []
      exporters: [prometheus]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:${p.queryHttp}
    grpc:
      endpoint: 127.0.0.1:${p.queryGrpc}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:${p.otlpGrpc}
      http:
        endpoint: 127.0.0.1:${p.otlpHttp}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
  prometheus:
    endpoint: 127.0.0.1:${p.prom}
`;
}

async function canConnect(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

/** OTLP JSON's AnyValue as a plain value (string, number, boolean, array, object). */
function anyValue(v: Record<string, unknown> | undefined): unknown {
  if (!v) return undefined;
  if ("stringValue" in v) return v.stringValue;
  if ("boolValue" in v) return v.boolValue;
  if ("intValue" in v) return Number(v.intValue);
  if ("doubleValue" in v) return v.doubleValue;
  if ("arrayValue" in v) {
    const vs = (v.arrayValue as { values?: Record<string, unknown>[] }).values ?? [];
    return vs.map(anyValue);
  }
  if ("kvlistValue" in v) {
    return attrs((v.kvlistValue as { values?: KeyValue[] }).values);
  }
  return v;
}

type KeyValue = { key: string; value?: Record<string, unknown> };

function attrs(kvs: KeyValue[] | undefined): Record<string, unknown> {
  return Object.fromEntries((kvs ?? []).map((kv) => [kv.key, anyValue(kv.value)]));
}

/** Jaeger's api/v3 ids are OTLP JSON's hex; older builds said base64: accept both. */
function hexId(id: unknown, bytes: number): string {
  const s = typeof id === "string" ? id : "";
  if (s.length === bytes * 2 && /^[0-9a-fA-F]+$/.test(s)) return s.toLowerCase();
  if (!s) return "";
  try {
    const raw = Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
    return [...raw].map((b) => b.toString(16).padStart(2, "0")).join("");
  } catch {
    return s;
  }
}

/** The spans of an api/v3 `{"result": {"resourceSpans": [...]}}` answer. */
function flatten(body: unknown): JaegerSpan[] {
  type Span = Record<string, unknown> & { attributes?: KeyValue[] };
  type RS = {
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: { spans?: Span[] }[];
  };
  const rss = (body as { result?: { resourceSpans?: RS[] } })?.result?.resourceSpans ?? [];
  const out: JaegerSpan[] = [];
  for (const rs of rss) {
    const service = String(attrs(rs.resource?.attributes)["service.name"] ?? "");
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: hexId(s.traceId, 16),
          spanId: hexId(s.spanId, 8),
          parentSpanId: hexId(s.parentSpanId, 8),
          name: String(s.name ?? ""),
          kind: typeof s.kind === "number" ? s.kind : kindNumber(s.kind),
          startTimeUnixNano: String(s.startTimeUnixNano ?? ""),
          endTimeUnixNano: String(s.endTimeUnixNano ?? ""),
          service,
          attributes: attrs(s.attributes),
        });
      }
    }
  }
  return out;
}

const KINDS = ["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"];
function kindNumber(k: unknown): number {
  const i = KINDS.indexOf(String(k ?? "").replace(/^SPAN_KIND_/, ""));
  return i < 0 ? 0 : i;
}

/** GET a query API path; a 404 (Jaeger's "no traces found") is undefined. */
async function getJson(url: string, signal?: AbortSignal): Promise<unknown | undefined> {
  const r = await fetch(url, { signal });
  const text = await r.text();
  if (r.status === 404) return undefined;
  if (!r.ok) throw new Error(`GET ${url}: ${r.status} ${text.slice(0, 500)}`);
  return JSON.parse(text);
}

/**
 * Starts a Jaeger v2 for one test: a config in a fresh temp dir, every port a
 * free one on 127.0.0.1, resolved once the query API answers and both OTLP
 * receivers accept connections. Dispose it (`await using`) or call stop();
 * an abort of `signal` stops it too.
 */
export async function startJaeger(
  opts: { signal?: AbortSignal; readyTimeoutMs?: number } = {},
): Promise<Jaeger & AsyncDisposable> {
  const bin = await jaegerBinary();
  let lastError: unknown;
  // A port taken between choosing it and Jaeger binding it fails the start: try afresh.
  for (let attempt = 0; attempt < 3; attempt++) {
    opts.signal?.throwIfAborted();
    try {
      return await startOnce(bin, opts);
    } catch (e) {
      lastError = e;
      if (!(e instanceof JaegerExited) || !/address already in use/.test(e.message)) throw e;
    }
  }
  throw lastError;
}

class JaegerExited extends Error {}

async function startOnce(
  bin: string,
  opts: { signal?: AbortSignal; readyTimeoutMs?: number },
): Promise<Jaeger & AsyncDisposable> {
  const [otlpGrpc, otlpHttp, queryHttp, queryGrpc, prom] = freePorts(5) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const dir = await Deno.makeTempDir({ prefix: "keda-http-jaeger-" });
  const cfgPath = `${dir}/config.yaml`;
  const logPath = `${dir}/jaeger.log`;
  await Deno.writeTextFile(cfgPath, config({ otlpGrpc, otlpHttp, queryHttp, queryGrpc, prom }));
  const child = new Deno.Command(bin, {
    args: ["--config", cfgPath],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Both streams into one log file (each through its own appending handle), so
  // nothing blocks on a full pipe.
  // (A plain write loop: piped through FsFile.writable, the log could not be
  // read until the process had ended.)
  const sink = async (s: ReadableStream<Uint8Array>) => {
    using f = await Deno.open(logPath, { write: true, create: true, append: true });
    for await (const chunk of s) {
      for (let at = 0; at < chunk.length;) at += await f.write(chunk.subarray(at));
    }
  };
  const drained = Promise.all([sink(child.stdout), sink(child.stderr)]).then(() => {}, () => {});
  let exited: Deno.CommandStatus | undefined;
  const status = child.status.then((s) => (exited = s));

  const log = () => Deno.readTextFile(logPath).catch(() => "");
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      opts.signal?.removeEventListener("abort", onAbort);
      if (exited === undefined) {
        try {
          child.kill("SIGTERM");
        } catch { /* already gone */ }
        const timer = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch { /* already gone */ }
        }, 5000);
        await status;
        clearTimeout(timer);
      }
      await drained;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();
  const onAbort = () => void stop();
  opts.signal?.addEventListener("abort", onAbort, { once: true });

  const queryUrl = `http://127.0.0.1:${queryHttp}`;
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  try {
    for (;;) {
      opts.signal?.throwIfAborted();
      if (exited !== undefined) {
        await drained;
        throw new JaegerExited(
          `jaeger exited (${exited.code}) before it was ready:\n${(await log()).slice(-4000)}`,
        );
      }
      const ready = await fetch(`${queryUrl}/api/v3/services`, { signal: opts.signal })
        .then(async (r) => (await r.body?.cancel(), r.ok), () => false);
      if (
        ready && await canConnect(otlpHttp) && await canConnect(otlpGrpc) && await canConnect(prom)
      ) break;
      if (Date.now() > deadline) {
        throw new Error(`jaeger was not ready in time:\n${(await log()).slice(-4000)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    await stop();
    throw e;
  }

  return {
    otlpHttpEndpoint: `http://127.0.0.1:${otlpHttp}`,
    otlpGrpcEndpoint: `127.0.0.1:${otlpGrpc}`,
    queryUrl,
    metricsUrl: `http://127.0.0.1:${prom}/metrics`,
    async traces(service, q = {}) {
      const now = Date.now();
      const params = new URLSearchParams({
        "query.service_name": service,
        "query.start_time_min": new Date(now - (q.lookbackMs ?? 3_600_000)).toISOString(),
        "query.start_time_max": new Date(now + 60_000).toISOString(),
        "query.num_traces": String(q.limit ?? 100),
      });
      return flatten(await getJson(`${queryUrl}/api/v3/traces?${params}`));
    },
    async trace(traceId) {
      return flatten(await getJson(`${queryUrl}/api/v3/traces/${traceId}`));
    },
    async services() {
      const body = await getJson(`${queryUrl}/api/v3/services`) as
        | { services?: string[] }
        | undefined;
      return body?.services ?? [];
    },
    log,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
