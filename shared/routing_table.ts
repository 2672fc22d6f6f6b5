/**
 * The routing table: one entry per HTTPScaledObject or InterceptorRoute,
 * keyed "namespace/name", built by a pure function from the objects. The interceptor indexes it for
 * matching; the interceptor and the operator both serve its JSON form on
 * /routing_table.
 */
import {
  type HTTPScaledObject,
  parseHTTPScaledObject,
  type ScalingMetric,
  scalingMetricOf,
} from "./httpso.ts";
import {
  type InterceptorRoute,
  parseInterceptorRoute,
  routeTimeoutMs,
  type RoutingRule,
  scalingMetricsOf,
  type StaticResponse,
} from "./interceptor_route.ts";
import { parseDuration } from "./duration.ts";
import { normalizeHost, normalizePathPrefix } from "./host_path.ts";

export { normalizeHost, normalizePathPrefix };

export interface HeaderMatch {
  /** Lower-cased header name. */
  name: string;
  /** Exact value to match; absent means "header present". */
  value?: string;
}

export interface ServiceRef {
  namespace: string;
  service: string;
  port?: number;
  portName?: string;
}

/** One way a request can match a route: host AND path AND headers. */
export interface RouteRule {
  /** Lower-cased, port stripped; empty = any host. Wildcards as "*.example.com". */
  hosts: string[];
  /** Normalised: leading "/", no trailing "/" (except the root "/"); empty = any path. */
  pathPrefixes: string[];
  headers: HeaderMatch[];
}

/** A static response as configured (bodies from ConfigMaps are resolved by the interceptor). */
export interface ResponseSpec {
  /** Absent: the default of where it is used (placeholder 503, static route 200). */
  status?: number;
  /** Header names as written; validated (tokens, no CR/LF, no framing headers). */
  headers: Array<[string, string]>;
  body?: string;
  configMap?: { name: string; key?: string };
}

export interface StaticRouteEntry {
  /** Any rule matches. */
  rules: RouteRule[];
  mode: "Always" | "WhenUnavailable";
  response: ResponseSpec;
}

export type RouteKind = "HTTPScaledObject" | "InterceptorRoute";

export interface RouteEntry {
  key: string;
  namespace: string;
  name: string;
  kind: RouteKind;
  /** A request matches the route when it matches any rule (an HTTPScaledObject has one). */
  rules: RouteRule[];
  target: ServiceRef;
  /** HTTPScaledObject only: the workload its ScaledObject scales. */
  scaleTarget?: { apiVersion: string; kind: string; name: string };
  /**
   * Per-route overrides in ms; absent = use the interceptor's global value,
   * 0 = that deadline is off (InterceptorRoute only; an HTTPScaledObject's 0 means unset).
   */
  timeouts: { readinessMs?: number; requestMs?: number; responseHeaderMs?: number };
  /** timeoutMs: HTTPScaledObject's timeoutSeconds; absent = the route's readiness wait. */
  fallback?: ServiceRef & { timeoutMs?: number };
  /** Answered at once while the target has no ready endpoint (the request still counts). */
  placeholder?: ResponseSpec;
  /** First match wins; never counted for scaling. */
  staticRoutes: StaticRouteEntry[];
  /** One metric, or concurrency and request rate both (InterceptorRoute). */
  metrics: ScalingMetric[];
  /** HTTPScaledObject only. */
  replicas?: { min: number; max: number };
  generation?: number;
  /** metadata.creationTimestamp: older routes win ties, as in the Go add-on. */
  createdAt?: string;
  /** Annotation PROBE_STARTING_PODS_ANNOTATION "false": held requests wait for the kubelet. */
  probeStartingPods?: false;
}

/**
 * On an HTTPScaledObject or InterceptorRoute, "false" opts its target out of
 * probe-driven forwarding (the interceptor checking starting pods itself).
 */
export const PROBE_STARTING_PODS_ANNOTATION = "http.keda.sh/probe-starting-pods";

function applyAnnotations(
  entry: RouteEntry,
  annotations: Record<string, string> | undefined,
): void {
  if (annotations?.[PROBE_STARTING_PODS_ANNOTATION]?.trim().toLowerCase() === "false") {
    entry.probeStartingPods = false;
  }
}

export interface RoutingTable {
  /** Entries by key, in key order (so JSON and iteration are deterministic). */
  entries: Map<string, RouteEntry>;
  /** Objects that failed validation, by key, with what is wrong. */
  invalid: Map<string, string>;
}

function positiveMs(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  return ms > 0 ? ms : undefined;
}

/** Distinct values in sorted order; one value (the usual case) skips the Set. */
function distinctSorted(values: string[]): string[] {
  return values.length < 2 ? values : [...new Set(values)].sort();
}

/** A ServiceRef in `namespace`, with port and portName only when set. */
export function serviceRefOf(
  namespace: string,
  ref: { service: string; port?: number | undefined; portName?: string | undefined },
): ServiceRef {
  const out: ServiceRef = { namespace, service: ref.service };
  if (ref.port !== undefined) out.port = ref.port;
  if (ref.portName !== undefined) out.portName = ref.portName;
  return out;
}

function headerMatchesOf(headers: Array<{ name: string; value?: string | undefined }>) {
  const out: HeaderMatch[] = [];
  for (const h of headers) {
    const m: HeaderMatch = { name: h.name.toLowerCase() };
    if (h.value !== undefined) m.value = h.value;
    out.push(m);
  }
  return out;
}

/**
 * One entry from a validated HTTPScaledObject. Plain loops and assignments
 * rather than spreads: an informer's first list runs this 10,000 times
 * before the JIT has warmed up.
 */
export function routeEntryOf(obj: HTTPScaledObject): RouteEntry {
  const { spec, metadata } = obj;
  const ns = metadata.namespace;
  const ref = spec.scaleTargetRef;
  const timeouts: RouteEntry["timeouts"] = {};
  if (spec.timeouts) {
    const cw = positiveMs(spec.timeouts.conditionWait);
    const rh = positiveMs(spec.timeouts.responseHeader);
    if (cw !== undefined) timeouts.readinessMs = cw;
    if (rh !== undefined) timeouts.responseHeaderMs = rh;
  }
  const entry: RouteEntry = {
    key: `${ns}/${metadata.name}`,
    namespace: ns,
    name: metadata.name,
    kind: "HTTPScaledObject",
    rules: [{
      hosts: distinctSorted((spec.hosts ?? []).map(normalizeHost)),
      pathPrefixes: distinctSorted((spec.pathPrefixes ?? []).map(normalizePathPrefix)),
      headers: headerMatchesOf(spec.headers ?? []),
    }],
    target: serviceRefOf(ns, ref),
    scaleTarget: { apiVersion: ref.apiVersion, kind: ref.kind, name: ref.name },
    timeouts,
    staticRoutes: [],
    metrics: [scalingMetricOf(spec)],
    replicas: { min: spec.replicas.min, max: spec.replicas.max },
  };
  if (metadata.generation !== undefined) entry.generation = metadata.generation;
  if (metadata.creationTimestamp !== undefined) entry.createdAt = metadata.creationTimestamp;
  const fb = spec.coldStartTimeoutFailoverRef;
  if (fb) entry.fallback = { ...serviceRefOf(ns, fb), timeoutMs: fb.timeoutSeconds * 1000 };
  applyAnnotations(entry, metadata.annotations);
  return entry;
}

function ruleOf(rule: RoutingRule): RouteRule {
  return {
    hosts: distinctSorted((rule.hosts ?? []).map(normalizeHost)),
    pathPrefixes: distinctSorted((rule.paths ?? []).map((p) => normalizePathPrefix(p.value))),
    headers: headerMatchesOf(rule.headers ?? []),
  };
}

function responseOf(r: StaticResponse): ResponseSpec {
  const out: ResponseSpec = { headers: Object.entries(r.headers ?? {}) };
  if (r.statusCode !== undefined) out.status = r.statusCode;
  if (r.body !== undefined) out.body = r.body;
  if (r.bodyFromConfigMap) {
    out.configMap = { name: r.bodyFromConfigMap.name };
    if (r.bodyFromConfigMap.key) out.configMap.key = r.bodyFromConfigMap.key;
  }
  return out;
}

/** One entry from a validated InterceptorRoute. */
export function routeEntryOfRoute(obj: InterceptorRoute): RouteEntry {
  const { spec, metadata } = obj;
  const ns = metadata.namespace;
  const timeouts: RouteEntry["timeouts"] = {};
  const t = spec.timeouts;
  if (t) {
    const readiness = routeTimeoutMs(t.readiness);
    const request = routeTimeoutMs(t.request);
    const header = routeTimeoutMs(t.responseHeader);
    if (readiness !== undefined) timeouts.readinessMs = readiness;
    if (request !== undefined) timeouts.requestMs = request;
    if (header !== undefined) timeouts.responseHeaderMs = header;
  }
  const entry: RouteEntry = {
    key: `${ns}/${metadata.name}`,
    namespace: ns,
    name: metadata.name,
    kind: "InterceptorRoute",
    rules: (spec.rules ?? []).map(ruleOf),
    target: serviceRefOf(ns, spec.target),
    timeouts,
    staticRoutes: (spec.staticRoutes ?? []).map((s) => ({
      rules: s.rules.map(ruleOf),
      mode: s.responseMode,
      response: responseOf(s.response),
    })),
    metrics: scalingMetricsOf(spec),
  };
  if (metadata.generation !== undefined) entry.generation = metadata.generation;
  if (metadata.creationTimestamp !== undefined) entry.createdAt = metadata.creationTimestamp;
  const fb = spec.coldStart?.fallback?.service;
  if (fb) {
    entry.fallback = serviceRefOf(ns, { service: fb.name, port: fb.port, portName: fb.portName });
  }
  const ph = spec.coldStart?.placeholder?.response;
  if (ph) entry.placeholder = responseOf(ph);
  applyAnnotations(entry, metadata.annotations);
  return entry;
}

function keyOfRaw(raw: unknown): string {
  const meta = (raw as { metadata?: { namespace?: string; name?: string } } | null)?.metadata;
  return `${meta?.namespace ?? "default"}/${meta?.name ?? "<no name>"}`;
}

/** One kind's object of a namespace/name, parsed: its entry, or why it is invalid. */
export interface ParsedObject<E> {
  entry?: E;
  error?: string;
}

/**
 * Which of the two objects of one namespace/name serves it, and the problem
 * to report: a valid InterceptorRoute replaces the HTTPScaledObject (the Go
 * add-on's rule, and the migration path); an invalid one does not, so a typo
 * in a new route keeps the old one serving, and its problem is reported.
 */
export function servingOf<P extends ParsedObject<unknown>>(
  route: P | undefined,
  httpso: P | undefined,
): { serving?: P; problem?: string } {
  const serving = route?.entry !== undefined
    ? route
    : httpso?.entry !== undefined
    ? httpso
    : undefined;
  const problem = route !== undefined ? route.error : httpso?.error;
  const out: { serving?: P; problem?: string } = {};
  if (serving) out.serving = serving;
  if (problem !== undefined) out.problem = problem;
  return out;
}

function parsedOf<E>(parse: () => E): ParsedObject<E> {
  try {
    return { entry: parse() };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/**
 * Builds the table from raw API objects of both kinds (servingOf decides
 * between two of one name). Invalid objects are left out and listed in
 * `invalid` with the reason, so one bad object never hides the rest.
 * Objects being deleted still route until they are gone.
 */
export function buildRoutingTable(
  httpScaledObjects: Iterable<unknown>,
  interceptorRoutes: Iterable<unknown> = [],
): RoutingTable {
  const httpsos = new Map<string, ParsedObject<RouteEntry>>();
  const routes = new Map<string, ParsedObject<RouteEntry>>();
  for (const raw of httpScaledObjects) {
    httpsos.set(keyOfRaw(raw), parsedOf(() => routeEntryOf(parseHTTPScaledObject(raw))));
  }
  for (const raw of interceptorRoutes) {
    routes.set(keyOfRaw(raw), parsedOf(() => routeEntryOfRoute(parseInterceptorRoute(raw))));
  }
  const entries = new Map<string, RouteEntry>();
  const invalid = new Map<string, string>();
  for (const key of [...new Set([...httpsos.keys(), ...routes.keys()])].sort()) {
    const { serving, problem } = servingOf(routes.get(key), httpsos.get(key));
    if (serving?.entry) entries.set(key, serving.entry);
    if (problem !== undefined) invalid.set(key, problem);
  }
  return { entries, invalid };
}

/** The JSON served on /routing_table. */
export interface RoutingTableJSON {
  routes: Record<string, RouteEntry>;
  invalid: Record<string, string>;
}

export function routingTableToJSON(table: RoutingTable): RoutingTableJSON {
  return {
    routes: Object.fromEntries(table.entries),
    invalid: Object.fromEntries([...table.invalid].sort(([a], [b]) => (a < b ? -1 : 1))),
  };
}
