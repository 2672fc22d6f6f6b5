/**
 * KEDA's external scaler gRPC service (proto/externalscaler.proto) and the
 * standard health service (proto/health.proto), served with @grpc/grpc-js,
 * plus a small typed client used by tests and benchmarks.
 *
 * The protos are loaded at run time with @grpc/proto-loader: keepCase (field
 * names exactly as in the proto: scalerMetadata, targetSizeFloat, ...),
 * int64 as JS numbers (values here are far below 2^53), enums as strings.
 *
 * StreamIsActive: the current state is sent when the stream opens, then
 * `true` the moment the route becomes active — its aggregated concurrency
 * goes 0 → >0, or a placeholder route served a request — (pushed from the
 * aggregator's change event, not a timer), `false` when it is no longer, and
 * the current state again every KEDA_HTTP_SCALER_STREAM_INTERVAL_MS as a
 * heartbeat (KEDA treats each `true` as "check scale now", so the heartbeat
 * also retries an activation KEDA failed to act on). Each heartbeat re-reads
 * the HTTPScaledObject or InterceptorRoute, so a deleted one ends the stream
 * with NOT_FOUND.
 *
 * Wakes (scaler/wake.ts, POST /wake on the HTTP port) reach the streams the
 * same way: the wake book's change event re-evaluates that route's streams
 * synchronously, so `true` goes out the moment a wake is recorded and `false`
 * when it ends or runs out (unless traffic keeps the route active).
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { Logger } from "../shared/log.ts";
import { aborted } from "../shared/lifetime.ts";
import type { Readiness } from "./readiness.ts";
import type { ScalerMetrics } from "./scaler_metrics.ts";
import type { SpanHandle, Tracing } from "../shared/tracing.ts";
import {
  type MetricSpecAnswer,
  type MetricValueAnswer,
  routeKeyOf,
  type ScaledObjectRef,
  ScalerError,
  type ScalingAnswers,
  type Target,
} from "./scaling_answers.ts";

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

function protoPath(file: string): string {
  return decodeURIComponent(new URL(`../proto/${file}`, import.meta.url).pathname);
}

interface Loaded {
  externalScaler: grpc.ServiceClientConstructor;
  health: grpc.ServiceClientConstructor;
}

let loaded: Loaded | undefined;

/** Loads both protos once per process. */
function loadProtos(): Loaded {
  if (loaded) return loaded;
  const def = protoLoader.loadSync(
    [protoPath("externalscaler.proto"), protoPath("health.proto")],
    LOADER_OPTIONS,
  );
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    externalscaler: { ExternalScaler: grpc.ServiceClientConstructor };
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  loaded = {
    externalScaler: pkg.externalscaler.ExternalScaler,
    health: pkg.grpc.health.v1.Health,
  };
  return loaded;
}

export const EXTERNAL_SCALER_SERVICE = "externalscaler.ExternalScaler";
/**
 * Health service names the Go scaler sets and the Go Helm chart's probes ask
 * for: "liveness" is SERVING while the server runs; "readiness", "" and the
 * external scaler's name are SERVING while Readiness says ready.
 */
export const LIVENESS = "liveness";
export const READINESS = "readiness";
const HEALTH_SERVICES = ["", LIVENESS, READINESS, EXTERNAL_SCALER_SERVICE];
/** How often Watch streams re-read readiness, whose live checks send no events. */
const HEALTH_WATCH_MS = 1_000;

type ServingStatus = "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN" | "UNKNOWN";

const STATUS_OF: Record<ScalerError["code"], grpc.status> = {
  NOT_FOUND: grpc.status.NOT_FOUND,
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
};

function toServiceError(e: unknown): Partial<grpc.ServiceError> {
  if (e instanceof ScalerError) return { code: STATUS_OF[e.code], details: e.message };
  return {
    code: grpc.status.INTERNAL,
    details: `internal error in the scaler: ${(e as Error)?.message ?? String(e)}`,
  };
}

export interface ExternalScalerServerOptions {
  answers: ScalingAnswers;
  readiness: Readiness;
  /** Heartbeat period of StreamIsActive (KEDA_HTTP_SCALER_STREAM_INTERVAL_MS); 0 = none. */
  streamIntervalMs: number;
  log: Logger;
  metrics?: ScalerMetrics;
  /** How long a call made during start-up waits for readiness before UNAVAILABLE. */
  readyWaitMs?: number;
  /** OpenTelemetry traces: a server span per unary call (KEDA's trace context when it sends one). */
  tracing?: Tracing | null;
}

interface HealthWatcher {
  /** Writes the status when it changed. */
  send(): void;
  /** Ends the Watch stream with status OK. */
  end(): void;
}

interface OpenStream {
  key?: string;
  /** Re-evaluates and sends when the state changed; `heartbeat` sends regardless. */
  update(heartbeat: boolean): void;
  /** Ends the stream with status OK; resolves once that is written. */
  end(): Promise<void>;
}

export class ExternalScalerServer {
  readonly #opts: ExternalScalerServerOptions;
  readonly #server = new grpc.Server({
    // KEDA keeps streams open for hours; keepalive pings detect dead peers.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
  });
  readonly #streams = new Set<OpenStream>();
  readonly #byKey = new Map<string, Set<OpenStream>>();
  readonly #healthWatchers = new Set<HealthWatcher>();
  #healthTimer?: ReturnType<typeof setInterval>;
  #unsubscribeReadiness?: () => void;
  #serving = false;
  #unsubscribe?: () => void;
  #unsubscribeWakes?: () => void;
  /** The bound port, once listening. */
  port?: number;

  constructor(options: ExternalScalerServerOptions) {
    this.#opts = options;
    const protos = loadProtos();
    this.#server.addService(protos.externalScaler.service, {
      IsActive: this.#unary("IsActive", (ref: ScaledObjectRef) => {
        const target = this.#opts.answers.resolve(ref);
        return { result: this.#opts.answers.isActive(target) };
      }),
      GetMetricSpec: this.#unary("GetMetricSpec", (ref: ScaledObjectRef) => {
        const target = this.#opts.answers.resolve(ref);
        return { metricSpecs: this.#opts.answers.metricSpecs(target) };
      }),
      GetMetrics: this.#unary(
        "GetMetrics",
        (req: { scaledObjectRef?: ScaledObjectRef; metricName?: string }) => {
          const target = this.#opts.answers.resolve(req.scaledObjectRef);
          // KEDA sends the bare metric name (its s<N>- prefix stripped).
          return { metricValues: this.#opts.answers.metricValues(target, req.metricName ?? "") };
        },
      ),
      StreamIsActive: (call: grpc.ServerWritableStream<ScaledObjectRef, unknown>) =>
        void this.#streamIsActive(call),
    });
    this.#server.addService(protos.health.service, {
      Check: (
        call: grpc.ServerUnaryCall<{ service: string }, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        const status = this.#healthOf(call.request.service);
        if (status === "SERVICE_UNKNOWN") {
          callback({
            code: grpc.status.NOT_FOUND,
            details: `unknown service "${call.request.service}": ask for one of ${
              HEALTH_SERVICES.map((n) => `"${n}"`).join(", ")
            }`,
          });
        } else callback(null, { status });
      },
      Watch: (call: grpc.ServerWritableStream<{ service: string }, unknown>) => {
        let last: ServingStatus | undefined;
        const watcher: HealthWatcher = {
          send: () => {
            const status = this.#healthOf(call.request.service);
            if (status !== last) call.write({ status });
            last = status;
          },
          end: () => {
            this.#unwatchHealth(watcher);
            call.end();
          },
        };
        watcher.send();
        this.#watchHealth(watcher);
        const done = () => this.#unwatchHealth(watcher);
        call.on("cancelled", done);
        call.on("close", done);
        call.on("finish", done);
      },
    });
  }

  /** The answers behind every call (and their wake book, for POST /wake). */
  get answers(): ScalingAnswers {
    return this.#opts.answers;
  }

  /** Number of StreamIsActive streams open right now. */
  get openStreams(): number {
    return this.#streams.size;
  }

  #healthOf(service: string): ServingStatus {
    if (!HEALTH_SERVICES.includes(service)) return "SERVICE_UNKNOWN";
    if (service === LIVENESS) return this.#serving ? "SERVING" : "NOT_SERVING";
    return this.#serving && this.#opts.readiness.ready ? "SERVING" : "NOT_SERVING";
  }

  #notifyHealth(): void {
    for (const w of [...this.#healthWatchers]) w.send();
  }

  /** Watch streams hear of changes at once, and of live checks within HEALTH_WATCH_MS. */
  #watchHealth(watcher: HealthWatcher): void {
    this.#healthWatchers.add(watcher);
    this.#unsubscribeReadiness ??= this.#opts.readiness.onChange(() => this.#notifyHealth());
    this.#healthTimer ??= setInterval(() => this.#notifyHealth(), HEALTH_WATCH_MS);
  }

  #unwatchHealth(watcher: HealthWatcher): void {
    this.#healthWatchers.delete(watcher);
    if (this.#healthWatchers.size > 0) return;
    clearInterval(this.#healthTimer);
    this.#healthTimer = undefined;
    this.#unsubscribeReadiness?.();
    this.#unsubscribeReadiness = undefined;
  }

  /** Flips the health status (and notifies Watch streams). */
  setServing(serving: boolean): void {
    this.#serving = serving;
    this.#notifyHealth();
  }

  #record(method: string, code: grpc.status): void {
    this.#opts.metrics?.grpcRequests.inc({ method, code: grpc.status[code] ?? String(code) });
  }

  async #ensureStarted(): Promise<void> {
    const ok = await this.#opts.readiness.wait(this.#opts.readyWaitMs ?? 5_000);
    if (!ok) {
      throw new ScalerError(
        "UNAVAILABLE",
        `the scaler is still starting (${this.#opts.readiness.reason()}); KEDA retries`,
      );
    }
  }

  #unary<Req, Res>(method: string, answer: (req: Req) => Res) {
    return async (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => {
      const span = this.#span(method, call.metadata);
      try {
        await this.#ensureStarted();
        const res = answer(call.request);
        this.#record(method, grpc.status.OK);
        span?.set({ "rpc.grpc.status_code": grpc.status.OK });
        callback(null, res);
      } catch (e) {
        const err = toServiceError(e);
        this.#record(method, err.code ?? grpc.status.UNKNOWN);
        span?.set({ "rpc.grpc.status_code": err.code ?? grpc.status.UNKNOWN });
        span?.fail(err.details ?? "failed");
        const level = e instanceof ScalerError ? "warn" : "error";
        this.#opts.log[level](`${method} failed`, {
          error: err.details,
          code: grpc.status[err.code ?? grpc.status.UNKNOWN],
          ref: method === "GetMetrics"
            ? (call.request as { scaledObjectRef?: unknown }).scaledObjectRef
            : call.request,
        });
        callback(err);
      } finally {
        span?.end();
      }
    };
  }

  #span(method: string, md: grpc.Metadata): SpanHandle | null {
    const tracing = this.#opts.tracing;
    if (!tracing) return null;
    const one = (k: string) => {
      const v = md.get(k)[0];
      return typeof v === "string" ? v : null;
    };
    return tracing.server(
      `externalscaler.ExternalScaler/${method}`,
      { traceparent: one("traceparent"), tracestate: one("tracestate") },
      {
        "rpc.system": "grpc",
        "rpc.service": "externalscaler.ExternalScaler",
        "rpc.method": method,
      },
    );
  }

  async #streamIsActive(call: grpc.ServerWritableStream<ScaledObjectRef, unknown>): Promise<void> {
    const ref = call.request;
    const log = this.#opts.log.with({ stream: `${ref.namespace}/${ref.name}` });
    let target: Target;
    const fail = (e: unknown) => {
      const err = toServiceError(e);
      this.#record("StreamIsActive", err.code ?? grpc.status.UNKNOWN);
      log.warn("StreamIsActive ended with an error", {
        error: err.details,
        code: grpc.status[err.code ?? grpc.status.UNKNOWN],
      });
      call.emit("error", err);
    };
    try {
      await this.#ensureStarted();
      target = this.#opts.answers.resolve(ref);
    } catch (e) {
      fail(e);
      return;
    }
    if (call.cancelled) return;

    let last: boolean | undefined;
    let blocked = false;
    let ended = false;
    const write = (active: boolean) => {
      if (!call.write({ result: active }) && !blocked) {
        // The client is not reading: skip heartbeats until it drains.
        blocked = true;
        call.once("drain", () => (blocked = false));
      }
    };
    const stream: OpenStream = {
      key: routeKeyOf(target),
      update: (heartbeat) => {
        if (ended) return;
        if (heartbeat) {
          try {
            target = this.#opts.answers.resolve(ref);
          } catch (e) {
            cleanup();
            fail(e);
            return;
          }
          if (stream.key !== routeKeyOf(target)) {
            this.#index(stream, false);
            stream.key = routeKeyOf(target);
            this.#index(stream, true);
          }
        }
        const active = this.#opts.answers.isActive(target);
        if (active === last && (!heartbeat || blocked)) return;
        if (active && last === false && !heartbeat) this.#opts.metrics?.streamActivations.inc();
        last = active;
        write(active);
      },
      end: () => {
        if (ended) return Promise.resolve();
        cleanup();
        return new Promise<void>((resolve) => {
          call.once("finish", () => resolve());
          call.once("error", () => resolve());
          call.end();
        });
      },
    };
    // 0 turns the heartbeat off (transitions are still pushed).
    const timer = this.#opts.streamIntervalMs > 0
      ? setInterval(() => stream.update(true), this.#opts.streamIntervalMs)
      : undefined;
    const cleanup = () => {
      if (ended) return;
      ended = true;
      clearInterval(timer);
      this.#streams.delete(stream);
      this.#index(stream, false);
      this.#opts.metrics?.streamsOpen.set(this.#streams.size);
    };
    call.on("cancelled", cleanup);
    call.on("close", cleanup);
    call.on("error", cleanup);
    this.#streams.add(stream);
    this.#index(stream, true);
    this.#opts.metrics?.streamsOpen.set(this.#streams.size);
    this.#record("StreamIsActive", grpc.status.OK);
    log.debug("StreamIsActive opened", { target: stream.key ?? "interceptor" });
    stream.update(false);
  }

  #index(stream: OpenStream, add: boolean): void {
    if (stream.key === undefined) return;
    let set = this.#byKey.get(stream.key);
    if (add) {
      if (!set) this.#byKey.set(stream.key, set = new Set());
      set.add(stream);
    } else if (set) {
      set.delete(stream);
      if (set.size === 0) this.#byKey.delete(stream.key);
    }
  }

  /** Binds the port; returns the port actually bound (useful with port 0). */
  listen(port: number, host = "0.0.0.0"): Promise<number> {
    // Route changes (concurrency, or new requests at 0 in flight) reach the
    // streams of that route synchronously.
    this.#unsubscribe ??= this.#opts.answers.aggregator.subscribe((changes) => {
      for (const change of changes) {
        const set = this.#byKey.get(change.key);
        if (set) { for (const s of [...set]) s.update(false); }
      }
    });
    // A wake recorded, ended or run out: the same push, for that route's streams.
    this.#unsubscribeWakes ??= this.#opts.answers.wakes.subscribe((change) => {
      const set = this.#byKey.get(change.key);
      if (set) { for (const s of [...set]) s.update(false); }
    });
    return new Promise((resolve, reject) => {
      this.#server.bindAsync(
        `${host.includes(":") ? `[${host}]` : host}:${port}`,
        grpc.ServerCredentials.createInsecure(),
        (err, bound) => {
          if (err) {
            reject(
              new Error(
                `cannot listen for gRPC on ${host}:${port}: ${err.message}; check KEDA_HTTP_SCALER_PORT`,
              ),
            );
          } else {
            this.port = bound;
            this.setServing(true);
            resolve(bound);
          }
        },
      );
    });
  }

  /**
   * Ends every stream with status OK (KEDA reconnects, to another replica if
   * there is one) and stops answering health checks as SERVING ("liveness"
   * included; health Watch streams get NOT_SERVING, then their end). Waits
   * up to graceMs for the stream endings to be written.
   */
  async drain(graceMs = 1_000): Promise<void> {
    this.setServing(false);
    // Each Watch stream has been sent NOT_SERVING; ending it lets the prober reconnect elsewhere.
    for (const w of [...this.#healthWatchers]) w.end();
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#unsubscribeWakes?.();
    this.#unsubscribeWakes = undefined;
    // Its timers only drive these pushes; the wakes keep answering by the clock.
    this.#opts.answers.wakes.close();
    const ends = [...this.#streams].map((s) => s.end());
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(ends),
      new Promise((r) => (timer = setTimeout(r, graceMs))),
    ]);
    clearTimeout(timer);
  }

  /** Drains, then shuts the server down (used where the process lives on, e.g. tests). */
  async close(graceMs = 5_000): Promise<void> {
    await this.drain(Math.min(graceMs, 1_000));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, graceMs);
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * A lifetime member: serves on `port` until the signal aborts, then drains.
   * It leaves the HTTP/2 sessions for the process exit to close: Deno 2.9's
   * node:http2 can abort the whole process in nghttp2 while exchanging GOAWAY
   * frames with streams just closed (denoland/deno#36788), and a program
   * that is exiting anyway loses nothing by skipping the GOAWAY.
   */
  serve(port: number, host = "0.0.0.0"): (signal: AbortSignal) => Promise<void> {
    return async (signal) => {
      const bound = await this.listen(port, host);
      this.#opts.log.info("gRPC external scaler listening", { port: bound });
      await aborted(signal);
      await this.drain();
    };
  }
}

// ---------------------------------------------------------------------------
// Client

export class GrpcCallError extends Error {
  constructor(readonly code: grpc.status, readonly details: string) {
    super(`${grpc.status[code] ?? code}: ${details}`);
    this.name = "GrpcCallError";
  }
  get codeName(): string {
    return grpc.status[this.code] ?? String(this.code);
  }
}

function callError(e: unknown): Error {
  const se = e as Partial<grpc.ServiceError>;
  if (se && typeof se.code === "number") return new GrpcCallError(se.code, se.details ?? "");
  return e as Error;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** Deadline of the call (default 10 s). */
  timeoutMs?: number;
  /** Request metadata, e.g. a traceparent. */
  metadata?: Record<string, string>;
}

type UnaryMethod = (
  req: unknown,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => grpc.ClientUnaryCall;

/**
 * A typed client of the external scaler (and its health service). On Deno,
 * closing it while the scaler runs can crash a Deno scaler (a node:http2 bug,
 * see README.md): close it after the scaler has stopped when that matters.
 */
export class ExternalScalerClient {
  readonly #client: grpc.Client;
  readonly #health: grpc.Client;

  /** `address`: host:port, e.g. 127.0.0.1:9090. */
  constructor(address: string) {
    const protos = loadProtos();
    this.#client = new protos.externalScaler(address, grpc.credentials.createInsecure());
    this.#health = new protos.health(address, grpc.credentials.createInsecure());
  }

  #unary<T>(client: grpc.Client, method: string, req: unknown, options: CallOptions): Promise<T> {
    return new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, UnaryMethod>)[method]!.bind(client);
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(options.metadata ?? {})) md.set(k, v);
      const call = fn(
        req,
        md,
        { deadline: Date.now() + (options.timeoutMs ?? 10_000) },
        (err, res) => {
          options.signal?.removeEventListener("abort", onAbort);
          if (err) reject(callError(err));
          else resolve(res as T);
        },
      );
      const onAbort = () => call.cancel();
      options.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  async isActive(ref: ScaledObjectRef, options: CallOptions = {}): Promise<boolean> {
    const res = await this.#unary<{ result: boolean }>(this.#client, "IsActive", ref, options);
    return res.result;
  }

  async getMetricSpec(
    ref: ScaledObjectRef,
    options: CallOptions = {},
  ): Promise<MetricSpecAnswer[]> {
    const res = await this.#unary<{ metricSpecs: MetricSpecAnswer[] }>(
      this.#client,
      "GetMetricSpec",
      ref,
      options,
    );
    return res.metricSpecs;
  }

  async getMetrics(
    ref: ScaledObjectRef,
    metricName: string,
    options: CallOptions = {},
  ): Promise<MetricValueAnswer[]> {
    const res = await this.#unary<{ metricValues: MetricValueAnswer[] }>(
      this.#client,
      "GetMetrics",
      { scaledObjectRef: ref, metricName },
      options,
    );
    return res.metricValues;
  }

  /** Health status of "" (the server) or a service name. */
  async healthCheck(service = "", options: CallOptions = {}): Promise<ServingStatus> {
    const res = await this.#unary<{ status: ServingStatus }>(
      this.#health,
      "Check",
      { service },
      options,
    );
    return res.status;
  }

  /**
   * Follows StreamIsActive. Yields each `result`; ends when the server ends
   * the stream or the signal aborts; throws GrpcCallError on an error status.
   */
  async *streamIsActive(
    ref: ScaledObjectRef,
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<boolean> {
    const fn = (this.#client as unknown as Record<
      string,
      (req: unknown) => grpc.ClientReadableStream<{ result: boolean }>
    >)
      .StreamIsActive!.bind(this.#client);
    const call = fn(ref);
    const onAbort = () => call.cancel();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const msg of call) yield (msg as { result: boolean }).result;
    } catch (e) {
      const err = callError(e);
      if (
        err instanceof GrpcCallError && err.code === grpc.status.CANCELLED &&
        options.signal?.aborted
      ) {
        return;
      }
      throw err;
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  close(): void {
    this.#client.close();
    this.#health.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
