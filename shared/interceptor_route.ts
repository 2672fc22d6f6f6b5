/**
 * InterceptorRoute (http.keda.sh/v1beta1), the Go add-on's current API:
 * routing and cold-start behaviour in the route, scaling in a ScaledObject
 * the user writes. zod schemas and types field for field as Go v0.15 defines
 * them, with the CRD's defaults and CEL rules, plus the checks we add where
 * Go lets a bad value through (durations, rate windows, static headers).
 */
import { z } from "./zod.ts";
import { parseDuration } from "./duration.ts";
import {
  checkRateWindow,
  ConditionSchema,
  durationText,
  exactlyOnePort,
  formatIssues,
  HeaderMatchSchema,
  nonEmpty,
  ObjectMetaSchema,
  portNumber,
  positiveInt,
  type ScalingMetric,
  wholeNumber,
} from "./httpso.ts";

export const IR_GROUP = "http.keda.sh";
export const IR_VERSION = "v1beta1";
export const IR_API_VERSION = `${IR_GROUP}/${IR_VERSION}`;
export const IR_KIND = "InterceptorRoute";
export const IR_PLURAL = "interceptorroutes";
/** ConfigMaps holding static response bodies must carry this label set to "true". */
export const RESPONSE_BODY_LABEL = "http.keda.sh/response-body";

export const PathMatchSchema = z.object({
  value: z.string().check(z.minLength(1, "path value must not be empty")),
});

function distinct(
  what: string,
  values: string[],
  ctx: z.core.$RefinementCtx,
  key: (v: string) => string = (v) => v,
): void {
  const seen = new Set<string>();
  values.forEach((v, i) => {
    const k = key(v);
    if (seen.has(k)) {
      ctx.addIssue({
        code: "custom",
        path: [i],
        message: `duplicate ${what} "${v}"; list it once`,
      });
    }
    seen.add(k);
  });
}

export const RoutingRuleSchema = z.object({
  hosts: z.optional(z.array(z.string()).check(z.superRefine((h, ctx) => distinct("host", h, ctx)))),
  paths: z.optional(z.array(PathMatchSchema)),
  headers: z.optional(
    z.array(HeaderMatchSchema).check(
      z.superRefine((hs, ctx) =>
        distinct("header", hs.map((h) => h.name), ctx, (n) => n.toLowerCase())
      ),
    ),
  ),
});

export const TargetRefSchema = z.object({
  service: nonEmpty,
  port: z.optional(portNumber),
  portName: z.optional(nonEmpty),
}).check(z.superRefine(exactlyOnePort));

export const ServiceRefSchema = z.object({
  name: nonEmpty,
  port: z.optional(portNumber),
  portName: z.optional(nonEmpty),
}).check(z.superRefine(exactlyOnePort));

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/**
 * Headers whose value the interceptor derives from the body and the
 * connection; a static response may not set them (Go would send a wrong
 * Content-Length or a second framing header).
 */
export const GENERATED_HEADERS: ReadonlySet<string> = new Set([
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "upgrade",
  "te",
  "trailer",
  "proxy-connection",
]);
export const MAX_STATIC_BODY = 32_768;

export const StaticResponseSchema = z.object({
  statusCode: z.optional(
    wholeNumber().check(
      z.minimum(100, "must be between 100 and 599"),
      z.maximum(599, "must be between 100 and 599"),
    ),
  ),
  body: z.optional(
    z.string().check(z.maxLength(MAX_STATIC_BODY, `must be at most ${MAX_STATIC_BODY} characters`)),
  ),
  bodyFromConfigMap: z.optional(z.object({ name: nonEmpty, key: z.optional(z.string()) })),
  headers: z.optional(
    z.record(z.string(), z.string()).check(z.superRefine((hs, ctx) => {
      const seen = new Set<string>();
      for (const [name, value] of Object.entries(hs)) {
        if (seen.has(name.toLowerCase())) {
          ctx.addIssue({
            code: "custom",
            path: [name],
            message: `header ${name} is set twice (names are case-insensitive); keep one`,
          });
        }
        seen.add(name.toLowerCase());
        if (!TOKEN.test(name)) {
          ctx.addIssue({
            code: "custom",
            path: [name],
            message: `"${name}" is not a valid header name (letters, digits and !#$%&'*+.^_\`|~-)`,
          });
        } else if (GENERATED_HEADERS.has(name.toLowerCase())) {
          ctx.addIssue({
            code: "custom",
            path: [name],
            message: `${name} is set by the interceptor from the body; remove it from headers`,
          });
        }
        // RFC 9110 field-value: visible characters, space, tab and obs-text only.
        // deno-lint-ignore no-control-regex -- control characters are what this refuses
        if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
          ctx.addIssue({
            code: "custom",
            path: [name],
            message: "a header value must not contain control characters (CR, LF, NUL, ...)",
          });
        }
      }
    })),
  ),
}).check(z.superRefine((r, ctx) => {
  if (r.body !== undefined && r.bodyFromConfigMap !== undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["bodyFromConfigMap"],
      message: "at most one of 'body' or 'bodyFromConfigMap' may be set",
    });
  }
}));

export const StaticRouteSchema = z.object({
  rules: z.array(RoutingRuleSchema).check(
    z.minLength(1, "a static route needs at least one rule"),
  ),
  response: StaticResponseSchema,
  responseMode: z._default(z.enum(["Always", "WhenUnavailable"]), "WhenUnavailable"),
});

export const ColdStartSchema = z.object({
  fallback: z.optional(z.object({ service: ServiceRefSchema })),
  placeholder: z.optional(z.object({ response: StaticResponseSchema })),
}).check(z.superRefine((c, ctx) => {
  if (c.fallback === undefined && c.placeholder === undefined) {
    ctx.addIssue({
      code: "custom",
      message: "at least one of 'fallback' or 'placeholder' must be set",
    });
  }
}));

export const InterceptorRouteTimeoutsSchema = z.object({
  readiness: z.optional(durationText),
  request: z.optional(durationText),
  responseHeader: z.optional(durationText),
});

export const IRScalingMetricSchema = z.object({
  concurrency: z.optional(z.object({ targetValue: positiveInt })),
  requestRate: z.optional(
    z.object({
      targetValue: positiveInt,
      window: z._default(durationText, "1m"),
      granularity: z._default(durationText, "1s"),
    }).check(z.superRefine(checkRateWindow)),
  ),
}).check(z.superRefine((m, ctx) => {
  if (m.concurrency === undefined && m.requestRate === undefined) {
    ctx.addIssue({
      code: "custom",
      message: "at least one of 'concurrency' or 'requestRate' must be set",
    });
  }
}));

export const InterceptorRouteSpecSchema = z.object({
  target: TargetRefSchema,
  coldStart: z.optional(ColdStartSchema),
  timeouts: z.optional(InterceptorRouteTimeoutsSchema),
  rules: z.optional(z.array(RoutingRuleSchema)),
  scalingMetric: IRScalingMetricSchema,
  staticRoutes: z.optional(z.array(StaticRouteSchema)),
});

export const InterceptorRouteSchema = z.object({
  apiVersion: z.optional(z.literal(IR_API_VERSION)),
  kind: z.optional(z.literal(IR_KIND)),
  metadata: ObjectMetaSchema,
  spec: InterceptorRouteSpecSchema,
  status: z.optional(z.object({ conditions: z.optional(z.array(ConditionSchema)) })),
});

export type RoutingRule = z.output<typeof RoutingRuleSchema>;
export type StaticResponse = z.output<typeof StaticResponseSchema>;
export type StaticRoute = z.output<typeof StaticRouteSchema>;
export type InterceptorRouteSpec = z.output<typeof InterceptorRouteSpecSchema>;
export type InterceptorRoute = z.output<typeof InterceptorRouteSchema>;
export type InterceptorRouteInput = z.input<typeof InterceptorRouteSchema>;

/** Every metric an InterceptorRoute reports: concurrency, request rate, or both. */
export function scalingMetricsOf(spec: InterceptorRouteSpec): ScalingMetric[] {
  const out: ScalingMetric[] = [];
  const c = spec.scalingMetric.concurrency;
  if (c) out.push({ type: "concurrency", targetValue: c.targetValue });
  const rr = spec.scalingMetric.requestRate;
  if (rr) {
    out.push({
      type: "requestRate",
      targetValue: rr.targetValue,
      windowMs: parseDuration(rr.window),
      granularityMs: parseDuration(rr.granularity),
    });
  }
  return out;
}

/** A per-route timeout: undefined = use the interceptor's global value; 0 = disabled. */
export function routeTimeoutMs(text: string | undefined): number | undefined {
  return text === undefined ? undefined : parseDuration(text);
}

export class InvalidInterceptorRoute extends Error {
  constructor(readonly key: string, readonly problems: string) {
    super(`InterceptorRoute ${key} is invalid: ${problems}`);
    this.name = "InvalidInterceptorRoute";
  }
}

/** Parses an object from the API server; throws InvalidInterceptorRoute naming every bad field. */
export function parseInterceptorRoute(raw: unknown): InterceptorRoute {
  const result = InterceptorRouteSchema.safeParse(raw);
  if (result.success) return result.data;
  const meta = (raw as { metadata?: { namespace?: string; name?: string } } | null)?.metadata;
  const key = `${meta?.namespace ?? "default"}/${meta?.name ?? "<no name>"}`;
  throw new InvalidInterceptorRoute(key, formatIssues(result.error));
}
