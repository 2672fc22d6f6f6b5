/**
 * What the dashboard shows, as one JSON snapshot, built from what the
 * scaler knows: the routes (from the HTTPScaledObject and InterceptorRoute
 * stores), the counts summed over interceptors (the aggregator), what it
 * tells KEDA (metric values and targets), and each interceptor's
 * /route_status (held requests, the target's pods, cold starts). Pure: the
 * caller gathers the inputs, so tests feed them directly.
 */
import type { ColdStartOutcome, ColdStartRecord, RouteStatus } from "../shared/queue_counts.ts";
import type { RouteEntry } from "../shared/routing_table.ts";
import type { PodStatus, RouteTotals } from "./queue_aggregator.ts";

/** Cold starts the page lists, newest first. */
export const DASHBOARD_COLD_STARTS = 20;

/** One metric as KEDA gets it from this scaler. */
export interface MetricAnswer {
  metricName: string;
  /** "concurrency" or "requestRate". */
  type: string;
  value: number;
  target: number;
}

/** What the scaler answers KEDA for a route; `problem` when it answers an error. */
export interface RouteScalingView {
  metrics: MetricAnswer[];
  active: boolean;
  problem?: string;
}

/** An interceptor's last /route_status, or why there is none. */
export interface InterceptorRouteStatus {
  status?: RouteStatus;
  error?: string;
}

export interface SnapshotInput {
  /** Epoch ms of the scaler's clock (open cold starts are timed against it). */
  now: number;
  /** The routes that serve traffic, by key. */
  entries: ReadonlyMap<string, RouteEntry>;
  /** Objects that fail validation, by key, with what is wrong. */
  invalid: ReadonlyMap<string, string>;
  /** The aggregator's /queue view: summed over interceptors, with RPS. */
  totals: Readonly<Record<string, RouteTotals>>;
  scaling: ReadonlyMap<string, RouteScalingView>;
  pods: readonly PodStatus[];
  /** By pod id. */
  statuses: ReadonlyMap<string, InterceptorRouteStatus>;
}

export interface DashboardRoute {
  key: string;
  namespace: string;
  name: string;
  kind: string;
  /** Absent for a route known only from the counts, or an invalid object. */
  rules?: Array<{ hosts: string[]; paths: string[]; headers: string[] }>;
  target?: string;
  problem?: string;
  inFlight: number;
  /** Held now, summed over the interceptors that answered /route_status. */
  held: number;
  rps: number;
  /** Ready pods of the target as the interceptors see them (the most any reports). */
  readyPods: number | null;
  pods: number | null;
  scaling: {
    metrics: MetricAnswer[];
    active: boolean;
    /**
     * What KEDA's HPA computes from the metrics: the largest ceil(value /
     * target), bounded by the HTTPScaledObject's replicas; KEDA itself keeps
     * 1 while the route is active and goes to 0 after the cooldown.
     */
    desired: number | null;
    /** The bounds applied, or null when they are in a ScaledObject the scaler does not read. */
    bounds: { min: number; max: number } | null;
    problem?: string;
  };
}

export interface DashboardColdStart {
  route: string;
  target: string;
  /** Interceptor pods that saw it. */
  interceptors: string[];
  outcome: ColdStartOutcome;
  readyBy?: "kubelet" | "probe";
  heldAt: number;
  /** Held until released, given up, or now (still waiting). */
  durationMs: number;
  /** Where the time went: until a pod of the target appeared, then until it was ready. */
  phases: { waitingForPodMs?: number; podStartingMs?: number };
  held: number;
}

export interface DashboardInterceptor {
  name: string;
  url: string;
  ready: boolean;
  health: string;
  lastSeenAgeMs?: number;
  lastError?: string;
  /** Its /route_status: "ok", or what went wrong. */
  status: string;
}

export interface DashboardSnapshot {
  generatedAt: string;
  routes: DashboardRoute[];
  coldStarts: DashboardColdStart[];
  interceptors: DashboardInterceptor[];
}

function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf("/");
  return i < 0
    ? { namespace: "", name: key }
    : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

function portOf(target: RouteEntry["target"]): string {
  return String(target.port ?? target.portName ?? "");
}

/**
 * KEDA's HPA for an AverageValue external metric: ceil(value / target) per
 * metric, the largest wins, bounded by min/max when known.
 */
export function desiredReplicas(
  metrics: readonly MetricAnswer[],
  bounds: { min: number; max: number } | null,
): number | null {
  if (metrics.length === 0) return null;
  let n = 0;
  for (const m of metrics) if (m.target > 0) n = Math.max(n, Math.ceil(m.value / m.target));
  if (bounds) n = Math.min(Math.max(n, bounds.min), bounds.max);
  return n;
}

/** The routes: every served or invalid object, and keys known only from the counts. */
function routesOf(input: SnapshotInput): DashboardRoute[] {
  const keys = new Set([
    ...input.entries.keys(),
    ...input.invalid.keys(),
    ...Object.keys(input.totals),
  ]);
  const answered = [...input.pods].filter((p) => input.statuses.get(p.id)?.status);
  const out: DashboardRoute[] = [];
  for (const key of [...keys].sort()) {
    const entry = input.entries.get(key);
    const totals = input.totals[key];
    let held = 0;
    let readyPods: number | null = null;
    let pods: number | null = null;
    for (const p of answered) {
      const s = input.statuses.get(p.id)!.status!.routes[key];
      if (!s) continue;
      held += s.held;
      // Every interceptor watches the same EndpointSlices: the most any sees is the freshest.
      readyPods = Math.max(readyPods ?? 0, s.readyPods);
      pods = Math.max(pods ?? 0, s.pods);
    }
    const scaling = input.scaling.get(key);
    const bounds = entry?.replicas ?? null;
    const metrics = scaling?.metrics ?? [];
    const problem = input.invalid.get(key);
    out.push({
      key,
      ...splitKey(key),
      kind: entry?.kind ?? (problem !== undefined ? "invalid" : "unknown"),
      ...(entry
        ? {
          rules: entry.rules.map((r) => ({
            hosts: r.hosts,
            paths: r.pathPrefixes,
            headers: r.headers.map((h) => h.value === undefined ? h.name : `${h.name}: ${h.value}`),
          })),
          target: `${entry.target.service}:${portOf(entry.target)}`,
        }
        : {}),
      ...(problem !== undefined ? { problem } : {}),
      inFlight: totals?.Concurrency ?? 0,
      held,
      rps: totals?.RPS ?? 0,
      readyPods,
      pods,
      scaling: {
        metrics,
        active: scaling?.active ?? false,
        desired: scaling?.problem !== undefined ? null : desiredReplicas(metrics, bounds),
        bounds,
        ...(scaling?.problem !== undefined ? { problem: scaling.problem } : {}),
      },
    });
  }
  return out;
}

interface Merging {
  record: ColdStartRecord;
  interceptors: Set<string>;
  /** Held requests per interceptor (each reports its own most-at-once). */
  held: number;
}

function endOf(c: ColdStartRecord): number {
  return c.readyAt ?? c.endedAt ?? Infinity;
}

/**
 * One cold start seen by several interceptors is one row: records of the
 * same route whose hold began before the earlier one ended are merged (the
 * earliest hold, the latest release, held requests summed).
 */
export function mergeColdStarts(
  input: Pick<SnapshotInput, "now" | "pods" | "statuses">,
  limit = DASHBOARD_COLD_STARTS,
): DashboardColdStart[] {
  const all: Array<{ pod: string; c: ColdStartRecord }> = [];
  for (const p of input.pods) {
    for (const c of input.statuses.get(p.id)?.status?.coldStarts ?? []) {
      all.push({ pod: p.name, c });
    }
  }
  all.sort((a, b) => a.c.heldAt - b.c.heldAt);
  const merged: Merging[] = [];
  const openByRoute = new Map<string, Merging>();
  for (const { pod, c } of all) {
    const m = openByRoute.get(c.route);
    if (m && m.record.target === c.target && c.heldAt <= endOf(m.record)) {
      const r = m.record;
      const waiting = r.outcome === "waiting" || c.outcome === "waiting";
      const ready = r.outcome === "ready" || c.outcome === "ready";
      r.outcome = waiting ? "waiting" : ready ? "ready" : "abandoned";
      if (c.podSeenAt !== undefined) r.podSeenAt = Math.min(r.podSeenAt ?? Infinity, c.podSeenAt);
      if (c.readyAt !== undefined && c.readyAt >= (r.readyAt ?? -Infinity)) {
        r.readyAt = c.readyAt;
        r.readyBy = c.readyBy;
      }
      if (c.endedAt !== undefined) r.endedAt = Math.max(r.endedAt ?? -Infinity, c.endedAt);
      m.interceptors.add(pod);
      m.held += c.held;
      continue;
    }
    const next: Merging = { record: { ...c }, interceptors: new Set([pod]), held: c.held };
    merged.push(next);
    openByRoute.set(c.route, next);
  }
  return merged.reverse().slice(0, limit).map(({ record: r, interceptors, held }) => {
    const end = r.outcome === "waiting" ? input.now : r.readyAt ?? r.endedAt ?? input.now;
    const phases: DashboardColdStart["phases"] = {};
    if (r.podSeenAt !== undefined) {
      phases.waitingForPodMs = Math.max(0, r.podSeenAt - r.heldAt);
      if (r.readyAt !== undefined) phases.podStartingMs = Math.max(0, r.readyAt - r.podSeenAt);
      else if (r.outcome === "waiting") phases.podStartingMs = Math.max(0, input.now - r.podSeenAt);
    } else if (r.outcome === "waiting") {
      phases.waitingForPodMs = Math.max(0, input.now - r.heldAt);
    }
    return {
      route: r.route,
      target: r.target,
      interceptors: [...interceptors].sort(),
      outcome: r.outcome,
      ...(r.readyBy ? { readyBy: r.readyBy } : {}),
      heldAt: r.heldAt,
      durationMs: Math.max(0, end - r.heldAt),
      phases,
      held,
    };
  });
}

function interceptorsOf(input: SnapshotInput): DashboardInterceptor[] {
  return [...input.pods].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0).map((p) => {
    const s = input.statuses.get(p.id);
    return {
      name: p.name,
      url: p.url,
      ready: p.ready,
      health: p.health,
      ...(p.lastSeenAgeMs !== undefined ? { lastSeenAgeMs: Math.round(p.lastSeenAgeMs) } : {}),
      ...(p.lastError !== undefined ? { lastError: p.lastError } : {}),
      status: s?.status ? "ok" : s?.error ?? "not asked yet",
    };
  });
}

export function buildSnapshot(input: SnapshotInput): DashboardSnapshot {
  return {
    generatedAt: new Date(input.now).toISOString(),
    routes: routesOf(input),
    coldStarts: mergeColdStarts(input),
    interceptors: interceptorsOf(input),
  };
}
