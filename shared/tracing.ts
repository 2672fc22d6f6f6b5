/**
 * OpenTelemetry traces, the one owner of them for the interceptor and the
 * scaler: the span handles the programs use, and starting the SDK. The SDK
 * (npm @opentelemetry/*, tracing_sdk.ts) is imported only when tracing is
 * enabled, so a program with tracing off loads none of it and pays one null
 * check per request.
 *
 * W3C TraceContext comes in with the request (traceparent, tracestate) and
 * goes to the app as our server span's context; baggage passes through as
 * the client sent it.
 */
import type { TracingConfig } from "./config.ts";
import type { Logger } from "./log.ts";

export type SpanAttributes = Record<string, string | number | boolean>;

export interface SpanHandle {
  /** 32 hex digits; all zeros for a span that is not recorded. */
  readonly traceId: string;
  readonly sampled: boolean;
  /** traceparent (and tracestate) for a request this span makes, as [name, value] pairs. */
  context(): Array<[string, string]>;
  child(name: string, attrs?: SpanAttributes, kind?: "internal" | "client"): SpanHandle;
  event(name: string, attrs?: SpanAttributes): void;
  set(attrs: SpanAttributes): void;
  /** Marks the span failed (error status) with what went wrong. */
  fail(message: string): void;
  end(): void;
}

export interface Incoming {
  traceparent?: string | null;
  tracestate?: string | null;
}

export interface Tracing {
  /** A server span, child of the caller's context when it sent a valid one. */
  /** `attrs` may be a function: it is called only for a span that is recorded. */
  server(
    name: string,
    incoming: Incoming,
    attrs?: SpanAttributes | (() => SpanAttributes),
  ): SpanHandle;
  /** A root span of our own (a poll, a background call). */
  root(name: string, attrs?: SpanAttributes, kind?: "internal" | "client"): SpanHandle;
  /** Exports what is buffered and stops. */
  shutdown(): Promise<void>;
}

/** Null when tracing is off; else the SDK started with the config's exporter and sampler. */
export async function startTracing(
  cfg: TracingConfig,
  log: Logger,
  scope: string,
): Promise<Tracing | null> {
  if (!cfg.enabled) return null;
  const sdk = await import("./tracing_sdk.ts");
  return sdk.createTracing(cfg, log, scope);
}
