/**
 * The OpenTelemetry JS SDK behind shared/tracing.ts, imported only when
 * tracing is enabled. Exporters: OTLP over HTTP/protobuf or gRPC (they read
 * the SDK's OTEL_EXPORTER_OTLP_* endpoint and header variables), or
 * "console": spans as JSON lines through our logger.
 */
import {
  type Context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Tracer,
} from "@opentelemetry/api";
import {
  type ExportResult,
  ExportResultCode,
  W3CTraceContextPropagator,
} from "@opentelemetry/core";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  SamplingDecision,
  type SpanExporter,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import type { TracingConfig } from "./config.ts";
import type { Logger } from "./log.ts";

// tracing.ts's interfaces are met structurally (it imports this module, so not the reverse).
type SpanAttributes = Record<string, string | number | boolean>;

const TRACE_CONTEXT = new W3CTraceContextPropagator();

const KINDS = { internal: SpanKind.INTERNAL, client: SpanKind.CLIENT } as const;

class Handle {
  constructor(readonly span: Span, readonly tracer: Tracer) {}

  get traceId(): string {
    return this.span.spanContext().traceId;
  }

  get sampled(): boolean {
    return (this.span.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0;
  }

  #ctx(): Context {
    return trace.setSpan(ROOT_CONTEXT, this.span);
  }

  context(): Array<[string, string]> {
    const carrier: Record<string, string> = {};
    TRACE_CONTEXT.inject(this.#ctx(), carrier, defaultTextMapSetter);
    return Object.entries(carrier);
  }

  child(
    name: string,
    attrs?: SpanAttributes,
    kind: "internal" | "client" = "internal",
  ): Handle {
    const span = this.tracer.startSpan(name, { kind: KINDS[kind], attributes: attrs }, this.#ctx());
    return new Handle(span, this.tracer);
  }

  event(name: string, attrs?: SpanAttributes): void {
    this.span.addEvent(name, attrs);
  }

  set(attrs: SpanAttributes): void {
    this.span.setAttributes(attrs);
  }

  fail(message: string): void {
    this.span.setStatus({ code: SpanStatusCode.ERROR, message });
  }

  end(): void {
    this.span.end();
  }
}

/**
 * A span nobody records, handed out without calling the SDK: starting an
 * SDK span that is then dropped costs several microseconds per request
 * (bench:tracing), most of the cost of a 1% sampler. Its children are
 * unrecorded too, and it passes no context on (the app gets the client's
 * traceparent as it came, as with tracing off).
 */
class Unsampled {
  readonly traceId = "0".repeat(32);
  readonly sampled = false;
  context(): Array<[string, string]> {
    return [];
  }
  child(): Unsampled {
    return this;
  }
  event(): void {}
  set(): void {}
  fail(): void {}
  end(): void {}
}

const UNSAMPLED = new Unsampled();

/** The share of new traces (no parent) that are sampled, decided before the SDK is called. */
function rootRatioOf(cfg: TracingConfig): number {
  switch (cfg.sampler) {
    case "traceidratio":
    case "parentbased_traceidratio":
      return cfg.ratio;
    case "always_off":
    case "parentbased_always_off":
      return 0;
    default:
      return 1;
  }
}

/**
 * The configured sampler for spans with a remote parent (the client's); a
 * span without one was sampled already (rootRatioOf), so it is recorded,
 * and a child of ours follows its parent.
 */
class PreSampledRoots implements Sampler {
  constructor(readonly withParent: Sampler) {}
  shouldSample(...args: Parameters<Sampler["shouldSample"]>): ReturnType<Sampler["shouldSample"]> {
    const parent = trace.getSpanContext(args[0]);
    if (parent === undefined) return { decision: SamplingDecision.RECORD_AND_SAMPLED };
    // A child of our own span follows it (a ratio on the trace id would drop
    // children of roots sampled by the pre-sampling).
    if (!parent.isRemote) {
      return {
        decision: parent.traceFlags & TraceFlags.SAMPLED
          ? SamplingDecision.RECORD_AND_SAMPLED
          : SamplingDecision.NOT_RECORD,
      };
    }
    return this.withParent.shouldSample(...args);
  }
  toString(): string {
    return `PreSampledRoots{${this.withParent.toString()}}`;
  }
}

function samplerOf(cfg: TracingConfig): Sampler {
  const ratio = new TraceIdRatioBasedSampler(cfg.ratio);
  switch (cfg.sampler) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return ratio;
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: ratio });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

/** OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=console: one JSON log line per span. */
class LogSpanExporter implements SpanExporter {
  constructor(readonly log: Logger) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    for (const s of spans) {
      const ctx = s.spanContext();
      this.log.info("span", {
        traceId: ctx.traceId,
        spanId: ctx.spanId,
        parentSpanId: s.parentSpanContext?.spanId,
        name: s.name,
        kind: SpanKind[s.kind],
        durationMs: s.duration[0] * 1e3 + s.duration[1] / 1e6,
        status: s.status.code === SpanStatusCode.ERROR ? `error: ${s.status.message ?? ""}` : "ok",
        attributes: s.attributes,
        events: s.events.map((e) => e.name),
      });
    }
    done({ code: ExportResultCode.SUCCESS });
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

async function exporterOf(cfg: TracingConfig, log: Logger): Promise<SpanExporter> {
  switch (cfg.protocol) {
    case "grpc": {
      const m = await import("@opentelemetry/exporter-trace-otlp-grpc");
      return new m.OTLPTraceExporter();
    }
    case "http/protobuf": {
      const m = await import("@opentelemetry/exporter-trace-otlp-proto");
      return new m.OTLPTraceExporter();
    }
    default:
      return new LogSpanExporter(log);
  }
}

export async function createTracing(
  cfg: TracingConfig,
  log: Logger,
  scope: string,
): Promise<{
  server: (
    name: string,
    incoming: { traceparent?: string | null; tracestate?: string | null },
    attrs?: SpanAttributes | (() => SpanAttributes),
  ) => Handle | Unsampled;
  root: (name: string, attrs?: SpanAttributes, kind?: "internal" | "client") => Handle | Unsampled;
  shutdown: () => Promise<void>;
}> {
  const provider = new TracerProvider({
    resource: defaultResource().merge(
      resourceFromAttributes({ "service.name": cfg.serviceName, "service.version": "HEAD" }),
    ),
    sampler: new PreSampledRoots(samplerOf(cfg)),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: await exporterOf(cfg, log),
        scheduledDelayMillis: cfg.batchDelayMs,
      }),
    ],
  });
  const tracer = provider.getTracer(scope);
  const rootRatio = rootRatioOf(cfg);
  const parentBased = cfg.sampler.startsWith("parentbased_");
  /** A new trace is sampled at the root ratio (Math.random: no need for the trace id here). */
  const skipRoot = () => rootRatio < 1 && (rootRatio === 0 || Math.random() >= rootRatio);
  return {
    server(
      name: string,
      incoming: { traceparent?: string | null; tracestate?: string | null },
      attrs?: SpanAttributes | (() => SpanAttributes),
    ): Handle | Unsampled {
      // Most requests come without a traceparent: nothing to extract.
      let parent = ROOT_CONTEXT;
      if (incoming.traceparent) {
        const carrier: Record<string, string> = { traceparent: incoming.traceparent };
        if (incoming.tracestate) carrier.tracestate = incoming.tracestate;
        parent = TRACE_CONTEXT.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
      }
      const parentCtx = trace.getSpanContext(parent);
      // Decided here, without an SDK span: a new trace by the root ratio (a
      // malformed traceparent is a new trace), an unsampled parent's child
      // under a parent-based sampler.
      if (
        parentCtx === undefined
          ? skipRoot()
          : parentBased && !(parentCtx.traceFlags & TraceFlags.SAMPLED)
      ) {
        return UNSAMPLED;
      }
      const attributes = typeof attrs === "function" ? attrs() : attrs;
      const span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
      return new Handle(span, tracer);
    },
    root(
      name: string,
      attrs?: SpanAttributes,
      kind: "internal" | "client" = "internal",
    ): Handle | Unsampled {
      if (skipRoot()) return UNSAMPLED;
      const span = tracer.startSpan(name, { kind: KINDS[kind], attributes: attrs }, ROOT_CONTEXT);
      return new Handle(span, tracer);
    },
    async shutdown(): Promise<void> {
      await provider.shutdown();
    },
  };
}
