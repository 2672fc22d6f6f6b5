/**
 * HTTPScaledObject (http.keda.sh/v1alpha1): zod schemas and types, field for
 * field as the Go add-on defines them, with defaults applied and the rules the
 * CRD's CEL also enforces. Errors name the field path and say what to fix.
 */
import { z } from "./zod.ts";
import { parseDuration } from "./duration.ts";

export const GROUP = "http.keda.sh";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = "HTTPScaledObject";
export const PLURAL = "httpscaledobjects";
export const FINALIZER = "httpscaledobject.http.keda.sh";
export const ANNOTATION_SKIP_SCALEDOBJECT = "httpscaledobject.keda.sh/skip-scaledobject-creation";
export const ANNOTATION_ORPHAN_SCALEDOBJECT = "httpscaledobject.keda.sh/orphan-scaledobject";

/** Defaults the scaler applies when the spec leaves them out. */
export const DEFAULT_TARGET_VALUE = 100;
export const DEFAULT_TARGET_PENDING_REQUESTS = 100;

// z.number() with z.int() as a check (what classic zod's .int() does), rather
// than z.int(msg): that would also word a non-number "must be a whole number".
export const wholeNumber = (): z.ZodMiniNumber<number> =>
  z.number().check(z.int("must be a whole number"));
export const nonNegInt = wholeNumber().check(z.minimum(0, "must be 0 or more"));
export const portNumber = wholeNumber().check(
  z.minimum(1, "must be between 1 and 65535"),
  z.maximum(65535, "must be between 1 and 65535"),
);
export const positiveInt = wholeNumber().check(z.minimum(1, "must be 1 or more"));
export const nonEmpty = z.string().check(z.minLength(1, "must not be empty"));

/** A metav1.Duration string ("20s", "1m"), kept as text and also parsed to ms. */
export const durationText = z.string().check(z.superRefine((value, ctx) => {
  try {
    const ms = parseDuration(value);
    if (ms < 0) ctx.addIssue({ code: "custom", message: `must not be negative (got "${value}")` });
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
  }
}));

export function exactlyOnePort(
  ref: { port?: number | undefined; portName?: string | undefined },
  ctx: z.core.$RefinementCtx,
): void {
  const hasPort = ref.port !== undefined;
  const hasName = ref.portName !== undefined;
  if (hasPort === hasName) {
    ctx.addIssue({
      code: "custom",
      path: hasPort ? ["portName"] : ["port"],
      message: hasPort
        ? "set either port or portName, not both"
        : "set one of port (a number) or portName (the Service port's name)",
    });
  }
}

export const ScaleTargetRefSchema = z.pipe(
  z.object({
    name: z.optional(nonEmpty),
    apiVersion: z.optional(nonEmpty),
    kind: z.optional(nonEmpty),
    /** Deprecated seed spelling of {kind: Deployment, apiVersion: apps/v1, name}. */
    deployment: z.optional(nonEmpty),
    service: nonEmpty,
    port: z.optional(portNumber),
    portName: z.optional(nonEmpty),
  }).check(z.superRefine((ref, ctx) => {
    exactlyOnePort(ref, ctx);
    if (ref.name === undefined && ref.deployment === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["name"],
        message: "name of the workload to scale is required",
      });
    }
    if (ref.name !== undefined && ref.deployment !== undefined && ref.name !== ref.deployment) {
      ctx.addIssue({
        code: "custom",
        path: ["deployment"],
        message:
          `deployment is a deprecated spelling of name; drop it or make it equal to name ("${ref.name}")`,
      });
    }
  })),
  z.transform((ref) => ({
    name: (ref.name ?? ref.deployment)!,
    apiVersion: ref.apiVersion ?? "apps/v1",
    kind: ref.kind ?? "Deployment",
    service: ref.service,
    ...(ref.port !== undefined ? { port: ref.port } : {}),
    ...(ref.portName !== undefined ? { portName: ref.portName } : {}),
    ...(ref.deployment !== undefined ? { deprecatedDeploymentField: true } : {}),
  })),
);

export const ColdStartFailoverRefSchema = z.object({
  service: nonEmpty,
  port: z.optional(portNumber),
  portName: z.optional(nonEmpty),
  timeoutSeconds: z._default(nonNegInt, 30),
}).check(z.superRefine(exactlyOnePort));

export const HeaderMatchSchema = z.object({
  name: z.string().check(z.minLength(1, "header name must not be empty")),
  value: z.optional(z.string()),
});

export const ReplicasSchema = z.object({
  min: z._default(nonNegInt, 0),
  max: z._default(nonNegInt, 100),
}).check(z.superRefine((r, ctx) => {
  if (r.max < r.min) {
    ctx.addIssue({
      code: "custom",
      path: ["max"],
      message: `max (${r.max}) must be at least min (${r.min})`,
    });
  }
}));

export const ConcurrencyMetricSchema = z.object({
  targetValue: z._default(positiveInt, DEFAULT_TARGET_VALUE),
});

/** A rate window must parse, have granularity > 0 and be at least one granularity long. */
export function checkRateWindow(
  r: { window: string; granularity: string },
  ctx: z.core.$RefinementCtx,
): void {
  let w = 0, g = 0;
  try {
    w = parseDuration(r.window);
    g = parseDuration(r.granularity);
  } catch {
    return; // already reported on the field
  }
  if (g <= 0) {
    ctx.addIssue({
      code: "custom",
      path: ["granularity"],
      message: "must be greater than 0, e.g. 1s or 100ms",
    });
  } else if (w < g) {
    ctx.addIssue({
      code: "custom",
      path: ["window"],
      message: `window (${r.window}) must be at least granularity (${r.granularity})`,
    });
  }
}

export const RequestRateMetricSchema = z.object({
  targetValue: z._default(positiveInt, DEFAULT_TARGET_VALUE),
  window: z._default(durationText, "1m"),
  granularity: z._default(durationText, "1s"),
}).check(z.superRefine(checkRateWindow));

export const ScalingMetricSchema = z.object({
  concurrency: z.optional(ConcurrencyMetricSchema),
  requestRate: z.optional(RequestRateMetricSchema),
}).check(z.superRefine((m, ctx) => {
  if (m.concurrency && m.requestRate) {
    ctx.addIssue({
      code: "custom",
      path: ["requestRate"],
      message: "concurrency and requestRate are mutually exclusive; set only one",
    });
  }
}));

export const TimeoutsSchema = z.object({
  conditionWait: z.optional(durationText),
  responseHeader: z.optional(durationText),
});

export const HTTPScaledObjectSpecSchema = z.object({
  hosts: z.optional(z.array(nonEmpty)),
  pathPrefixes: z.optional(z.array(z.string())),
  headers: z.optional(z.array(HeaderMatchSchema)),
  scaleTargetRef: ScaleTargetRefSchema,
  coldStartTimeoutFailoverRef: z.optional(ColdStartFailoverRefSchema),
  replicas: z._default(ReplicasSchema, { min: 0, max: 100 }),
  targetPendingRequests: z.optional(positiveInt),
  scaledownPeriod: z.optional(nonNegInt),
  initialCooldownPeriod: z.optional(nonNegInt),
  scalingMetric: z.optional(ScalingMetricSchema),
  timeouts: z.optional(TimeoutsSchema),
});

export const ConditionSchema = z.object({
  type: z.string(),
  status: z.enum(["True", "False", "Unknown"]),
  observedGeneration: z.optional(z.number().check(z.int())),
  lastTransitionTime: z.optional(z.string()),
  reason: z.optional(z.string()),
  message: z.optional(z.string()),
});

export const HTTPScaledObjectStatusSchema = z.object({
  targetWorkload: z.optional(z.string()),
  targetService: z.optional(z.string()),
  conditions: z.optional(z.array(ConditionSchema)),
});

export const ObjectMetaSchema = z.object({
  name: nonEmpty,
  namespace: z._default(z.string(), "default"),
  uid: z.optional(z.string()),
  generation: z.optional(z.number().check(z.int())),
  resourceVersion: z.optional(z.string()),
  labels: z.optional(z.record(z.string(), z.string())),
  annotations: z.optional(z.record(z.string(), z.string())),
  finalizers: z.optional(z.array(z.string())),
  deletionTimestamp: z.nullable(z.optional(z.string())),
  creationTimestamp: z.optional(z.string()),
});

export const HTTPScaledObjectSchema = z.object({
  apiVersion: z.optional(z.literal(API_VERSION)),
  kind: z.optional(z.literal(KIND)),
  metadata: ObjectMetaSchema,
  spec: HTTPScaledObjectSpecSchema,
  status: z.optional(HTTPScaledObjectStatusSchema),
});

export type HTTPScaledObjectSpec = z.output<typeof HTTPScaledObjectSpecSchema>;
export type HTTPScaledObjectStatus = z.output<typeof HTTPScaledObjectStatusSchema>;
export type HTTPScaledObject = z.output<typeof HTTPScaledObjectSchema>;
export type HTTPScaledObjectInput = z.input<typeof HTTPScaledObjectSchema>;
export type Condition = z.output<typeof ConditionSchema>;
export type ScaleTargetRef = z.output<typeof ScaleTargetRefSchema>;

/** The metric an HTTPScaledObject scales on, resolved from scalingMetric and defaults. */
export type ScalingMetric =
  | { type: "concurrency"; targetValue: number }
  | { type: "requestRate"; targetValue: number; windowMs: number; granularityMs: number };

export function scalingMetricOf(spec: HTTPScaledObjectSpec): ScalingMetric {
  const rr = spec.scalingMetric?.requestRate;
  if (rr) {
    return {
      type: "requestRate",
      targetValue: rr.targetValue,
      windowMs: parseDuration(rr.window),
      granularityMs: parseDuration(rr.granularity),
    };
  }
  const c = spec.scalingMetric?.concurrency;
  // The deprecated targetPendingRequests applies only when scalingMetric is unset.
  return {
    type: "concurrency",
    targetValue: c?.targetValue ?? spec.targetPendingRequests ?? DEFAULT_TARGET_PENDING_REQUESTS,
  };
}

/** "apiVersion/kind/name", as status.targetWorkload reads in the Go add-on. */
export function targetWorkloadOf(spec: HTTPScaledObjectSpec): string {
  const r = spec.scaleTargetRef;
  return `${r.apiVersion}/${r.kind}/${r.name}`;
}

/** "service:port" (or portName), as status.targetService reads in the Go add-on. */
export function targetServiceOf(spec: HTTPScaledObjectSpec): string {
  const r = spec.scaleTargetRef;
  return `${r.service}:${r.port ?? r.portName}`;
}

/** Formats zod issues as "path: message" lines, one per problem. */
export function formatIssues(error: z.core.$ZodError, prefix = ""): string {
  return error.issues.map((i) => {
    const path = [prefix, ...i.path.map(String)].filter((p) => p !== "").join(".");
    return `${path || "(object)"}: ${i.message}`;
  }).join("; ");
}

export class InvalidHTTPScaledObject extends Error {
  constructor(readonly key: string, readonly problems: string) {
    super(`HTTPScaledObject ${key} is invalid: ${problems}`);
    this.name = "InvalidHTTPScaledObject";
  }
}

// zod's compiled fast path (z.compile): generated code checks valid input
// faster than the generic parser, and invalid input falls back to the
// generic parser, so errors read the same. It costs resident memory (codegen
// and the generated functions; README Measured), so a program switches to it only when it has a
// large batch to parse (an informer listing thousands of objects), and then
// keeps it.
const COMPILE_FROM_BATCH = 1000;
let compiledObject: typeof HTTPScaledObjectSchema | undefined;
let compiledSpec: typeof HTTPScaledObjectSpecSchema | undefined;

/**
 * Tells the parser how many objects are about to be parsed: from
 * COMPILE_FROM_BATCH on, parsing switches to the compiled fast path for good.
 */
export function expectHTTPScaledObjects(count: number): void {
  if (count < COMPILE_FROM_BATCH || compiledObject) return;
  compiledObject = z.compile(HTTPScaledObjectSchema);
  compiledSpec = z.compile(HTTPScaledObjectSpecSchema);
}

/** Whether parsing uses the compiled fast path (see expectHTTPScaledObjects). */
export function compiledParsing(): boolean {
  return compiledObject !== undefined;
}

/** Parses an object from the API server; throws InvalidHTTPScaledObject naming every bad field. */
export function parseHTTPScaledObject(raw: unknown): HTTPScaledObject {
  const result = (compiledObject ?? HTTPScaledObjectSchema).safeParse(raw);
  if (result.success) return result.data;
  const meta = (raw as { metadata?: { namespace?: string; name?: string } } | null)?.metadata;
  const key = `${meta?.namespace ?? "default"}/${meta?.name ?? "<no name>"}`;
  throw new InvalidHTTPScaledObject(key, formatIssues(result.error));
}

/** Parses only a spec (e.g. from a test or the CLI); throws naming every bad field. */
export function parseHTTPScaledObjectSpec(raw: unknown): HTTPScaledObjectSpec {
  const result = (compiledSpec ?? HTTPScaledObjectSpecSchema).safeParse(raw);
  if (result.success) return result.data;
  throw new Error(formatIssues(result.error, "spec"));
}
