/**
 * The routing table: one entry per HTTPScaledObject, keyed "namespace/name",
 * built by a pure function from the objects. The interceptor indexes it for
 * matching; the interceptor and the operator both serve its JSON form on
 * /routing_table.
 */
import {
  type HTTPScaledObject,
  parseHTTPScaledObject,
  type ScalingMetric,
  scalingMetricOf,
} from "./httpso.ts";
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

export interface RouteEntry {
  key: string;
  namespace: string;
  name: string;
  /** Lower-cased, port stripped; empty = catch-all. Wildcards as "*.example.com". */
  hosts: string[];
  /** Normalised: leading "/", no trailing "/" (except the root "/"). */
  pathPrefixes: string[];
  headers: HeaderMatch[];
  target: ServiceRef;
  scaleTarget: { apiVersion: string; kind: string; name: string };
  /** Per-route overrides in ms; absent = use the interceptor's global value. */
  timeouts: { conditionWaitMs?: number; responseHeaderMs?: number };
  fallback?: ServiceRef & { timeoutMs: number };
  metric: ScalingMetric;
  replicas: { min: number; max: number };
  generation?: number;
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
    if (cw !== undefined) timeouts.conditionWaitMs = cw;
    if (rh !== undefined) timeouts.responseHeaderMs = rh;
  }
  const headers: HeaderMatch[] = [];
  for (const h of spec.headers ?? []) {
    const m: HeaderMatch = { name: h.name.toLowerCase() };
    if (h.value !== undefined) m.value = h.value;
    headers.push(m);
  }
  const entry: RouteEntry = {
    key: `${ns}/${metadata.name}`,
    namespace: ns,
    name: metadata.name,
    hosts: distinctSorted((spec.hosts ?? []).map(normalizeHost)),
    pathPrefixes: distinctSorted((spec.pathPrefixes ?? []).map(normalizePathPrefix)),
    headers,
    target: serviceRefOf(ns, ref),
    scaleTarget: { apiVersion: ref.apiVersion, kind: ref.kind, name: ref.name },
    timeouts,
    metric: scalingMetricOf(spec),
    replicas: { min: spec.replicas.min, max: spec.replicas.max },
  };
  if (metadata.generation !== undefined) entry.generation = metadata.generation;
  const fb = spec.coldStartTimeoutFailoverRef;
  if (fb) entry.fallback = { ...serviceRefOf(ns, fb), timeoutMs: fb.timeoutSeconds * 1000 };
  return entry;
}

/**
 * Builds the table from raw API objects. Invalid objects are left out and
 * listed in `invalid` with the reason, so one bad object never hides the rest.
 * Objects being deleted still route until they are gone.
 */
export function buildRoutingTable(objects: Iterable<unknown>): RoutingTable {
  const found: RouteEntry[] = [];
  const invalid = new Map<string, string>();
  for (const raw of objects) {
    try {
      found.push(routeEntryOf(parseHTTPScaledObject(raw)));
    } catch (e) {
      const meta = (raw as { metadata?: { namespace?: string; name?: string } } | null)?.metadata;
      invalid.set(
        `${meta?.namespace ?? "default"}/${meta?.name ?? "<no name>"}`,
        (e as Error).message,
      );
    }
  }
  found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { entries: new Map(found.map((e) => [e.key, e])), invalid };
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
