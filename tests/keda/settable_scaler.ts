/**
 * A tiny KEDA external scaler (proto/externalscaler.proto) whose metric the
 * test sets by hand. It lets tests/keda prove that KEDA itself works on the
 * cluster — activation over StreamIsActive, HPA scale-out through the
 * external metrics API, scale-in to zero — independently of our scaler
 * program. Every call KEDA makes is recorded with its time, so tests can
 * measure how long each step of KEDA's loop takes.
 */

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

interface ScaledObjectRef {
  name: string;
  namespace: string;
  scalerMetadata: Record<string, string>;
}

export type ScalerCall = "IsActive" | "StreamIsActive" | "GetMetricSpec" | "GetMetrics";

export interface RecordedCall {
  method: ScalerCall;
  at: number;
  ref: ScaledObjectRef;
  /** The metric value (GetMetrics) or activity (IsActive, stream sends) answered. */
  answered?: number | boolean;
}

export interface SettableScalerOptions {
  /** Metric name answered by GetMetricSpec/GetMetrics (KEDA prefixes "s<i>-"). */
  metricName?: string;
  /** AverageValue target per replica. Default 1. */
  target?: number;
  /** Initial metric value. Default 0 (inactive). */
  value?: number;
}

function protoFile(): string {
  return decodeURIComponent(new URL("../../proto/externalscaler.proto", import.meta.url).pathname);
}

export class SettableExternalScaler {
  readonly metricName: string;
  readonly target: number;
  readonly calls: RecordedCall[] = [];
  #value: number;
  #server = new grpc.Server();
  #streams = new Set<grpc.ServerWritableStream<ScaledObjectRef, { result: boolean }>>();
  #port = 0;
  #host = "";

  constructor(options: SettableScalerOptions = {}) {
    this.metricName = options.metricName ?? "settable";
    this.target = options.target ?? 1;
    this.#value = options.value ?? 0;
    const def = protoLoader.loadSync(protoFile(), {
      keepCase: true,
      longs: Number,
      defaults: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      externalscaler: { ExternalScaler: grpc.ServiceClientConstructor };
    };
    this.#server.addService(pkg.externalscaler.ExternalScaler.service, {
      IsActive: (
        call: grpc.ServerUnaryCall<ScaledObjectRef, unknown>,
        cb: grpc.sendUnaryData<unknown>,
      ) => {
        const active = this.#value > 0;
        this.#record("IsActive", call.request, active);
        cb(null, { result: active });
      },
      StreamIsActive: (call: grpc.ServerWritableStream<ScaledObjectRef, { result: boolean }>) => {
        const active = this.#value > 0;
        this.#record("StreamIsActive", call.request, active);
        this.#streams.add(call);
        const drop = () => this.#streams.delete(call);
        call.on("cancelled", drop);
        call.on("close", drop);
        call.on("error", drop);
        call.write({ result: active });
      },
      GetMetricSpec: (
        call: grpc.ServerUnaryCall<ScaledObjectRef, unknown>,
        cb: grpc.sendUnaryData<unknown>,
      ) => {
        this.#record("GetMetricSpec", call.request);
        cb(null, {
          metricSpecs: [{
            metricName: this.metricName,
            targetSize: Math.ceil(this.target),
            targetSizeFloat: this.target,
          }],
        });
      },
      GetMetrics: (
        call: grpc.ServerUnaryCall<
          { scaledObjectRef: ScaledObjectRef; metricName: string },
          unknown
        >,
        cb: grpc.sendUnaryData<unknown>,
      ) => {
        const v = this.#value;
        this.#record("GetMetrics", call.request.scaledObjectRef, v);
        cb(null, {
          metricValues: [{
            metricName: call.request.metricName || this.metricName,
            metricValue: Math.ceil(v),
            metricValueFloat: v,
          }],
        });
      },
    });
  }

  #record(method: ScalerCall, ref: ScaledObjectRef, answered?: number | boolean): void {
    this.calls.push({ method, at: Date.now(), ref, answered });
    // Bounded: a long test must not grow this without end.
    if (this.calls.length > 10_000) this.calls.splice(0, 5_000);
  }

  get value(): number {
    return this.#value;
  }

  /** Sets the metric; a change of activity is pushed on every open stream at once. */
  set(value: number): void {
    const was = this.#value > 0;
    this.#value = value;
    const now = value > 0;
    if (was !== now) {
      for (const s of this.#streams) {
        this.#record("StreamIsActive", s.request, now);
        s.write({ result: now });
      }
    }
  }

  /** Open StreamIsActive streams (KEDA holds one per ScaledObject). */
  get openStreams(): number {
    return this.#streams.size;
  }

  /** First call of `method` at or after `since`. */
  firstCallSince(method: ScalerCall, since: number): RecordedCall | undefined {
    return this.calls.find((c) => c.method === method && c.at >= since);
  }

  /** Binds to host:port (port 0 = any free one); returns "host:port" for scalerAddress. */
  listen(options: { hostname: string; port?: number }): Promise<string> {
    return new Promise((resolve, reject) => {
      this.#server.bindAsync(
        `${options.hostname}:${options.port ?? 0}`,
        grpc.ServerCredentials.createInsecure(),
        (err, port) => {
          if (err) {
            reject(
              new Error(
                `the test external scaler cannot listen on ${options.hostname}:${
                  options.port ?? 0
                }: ${err.message}`,
              ),
            );
            return;
          }
          this.#port = port;
          this.#host = options.hostname;
          resolve(this.address);
        },
      );
    });
  }

  get address(): string {
    return `${this.#host}:${this.#port}`;
  }

  async close(): Promise<void> {
    for (const s of this.#streams) s.end();
    this.#streams.clear();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, 2_000);
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
