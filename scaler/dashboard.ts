/**
 * The live dashboard on the scaler's HTTP port:
 *   GET /dashboard         the page (dashboard_page.ts: one document, no CDN)
 *   GET /dashboard/events  server-sent events, each `event: snapshot` with a
 *                          DashboardSnapshot as JSON (dashboard_snapshot.ts)
 *   GET /dashboard/snapshot  the same snapshot once, as JSON
 * While a stream is open it asks every interceptor for its /route_status
 * (held requests, pods, cold starts) once a second, and at once when the
 * aggregator reports a change; with no stream open it asks nothing.
 */
import { parseHTTPScaledObject } from "../shared/httpso.ts";
import { ParsedIndex } from "./httpso_index.ts";
import { parseInterceptorRoute } from "../shared/interceptor_route.ts";
import { sleep } from "../shared/lifetime.ts";
import type { Logger } from "../shared/log.ts";
import { fetchRouteStatus } from "../shared/queue_counts.ts";
import {
  type ParsedObject,
  type RouteEntry,
  routeEntryOf,
  routeEntryOfRoute,
  servingOf,
} from "../shared/routing_table.ts";
import {
  buildSnapshot,
  type DashboardSnapshot,
  type InterceptorRouteStatus,
  type MetricAnswer,
  type RouteScalingView,
} from "./dashboard_snapshot.ts";
import { DASHBOARD_HTML } from "./dashboard_page.ts";
import type { QueueAggregator } from "./queue_aggregator.ts";
import {
  METADATA_HTTPSO,
  METADATA_INTERCEPTOR_ROUTE,
  type ScalingAnswers,
} from "./scaling_answers.ts";

export const DASHBOARD_PATH = "/dashboard";
export const DASHBOARD_EVENTS_PATH = "/dashboard/events";
export const DASHBOARD_SNAPSHOT_PATH = "/dashboard/snapshot";
export const DEFAULT_MAX_DASHBOARD_CLIENTS = 32;

export interface DashboardOptions {
  aggregator: QueueAggregator;
  answers: ScalingAnswers;
  /** "namespace/name" -> raw HTTPScaledObject (the informer's store). */
  httpsoStore: ReadonlyMap<string, unknown>;
  /** "namespace/name" -> raw InterceptorRoute (the informer's store). */
  routeStore: ReadonlyMap<string, unknown>;
  log: Logger;
  /** Timeout of each /route_status fetch. */
  fetchTimeoutMs: number;
  /** Open event streams allowed at once; more are answered 503. */
  maxClients?: number;
  /** How often a snapshot is sent while nothing changes. */
  intervalMs?: number;
  /** Shortest time between two snapshots, so a burst of changes is one push. */
  minGapMs?: number;
  now?: () => number;
}

interface Client {
  send(chunk: string): void;
  close(): void;
}

const enc = new TextEncoder();

/** A store's object as the routing table reads it: its entry, or why it is invalid. */
function parsedEntry(
  index: ParsedIndex<{ entry: RouteEntry }>,
  key: string,
): ParsedObject<RouteEntry> | undefined {
  const r = index.lookupKey(key);
  if (!r.found) return undefined;
  return "invalid" in r ? { error: r.invalid } : { entry: r.entry };
}

export class Dashboard {
  readonly #opts: DashboardOptions;
  readonly #clients = new Set<Client>();
  readonly #statuses = new Map<string, InterceptorRouteStatus>();
  readonly #httpsos: ParsedIndex<{ entry: RouteEntry }>;
  readonly #routes: ParsedIndex<{ entry: RouteEntry }>;
  #wakeUp: (() => void) | null = null;
  #changed = false;

  constructor(options: DashboardOptions) {
    this.#opts = options;
    // Each object parsed once, by identity, as the scaler's other indexes do.
    this.#httpsos = new ParsedIndex(options.httpsoStore, (raw) => ({
      entry: routeEntryOf(parseHTTPScaledObject(raw)),
    }));
    this.#routes = new ParsedIndex(options.routeStore, (raw) => ({
      entry: routeEntryOfRoute(parseInterceptorRoute(raw)),
    }));
    // Counts moved: refresh now instead of at the next tick (held counts lag otherwise).
    options.aggregator.subscribe(() => {
      this.#changed = true;
      this.#wakeUp?.();
    });
  }

  get clients(): number {
    return this.#clients.size;
  }

  /** The snapshot from what is known now (no fetch). */
  snapshot(): DashboardSnapshot {
    const { httpsoStore, routeStore, aggregator } = this.#opts;
    const entries = new Map<string, RouteEntry>();
    const invalid = new Map<string, string>();
    for (const key of [...new Set([...httpsoStore.keys(), ...routeStore.keys()])].sort()) {
      const { serving, problem } = servingOf(
        parsedEntry(this.#routes, key),
        parsedEntry(this.#httpsos, key),
      );
      if (serving?.entry) entries.set(key, serving.entry);
      if (problem !== undefined) invalid.set(key, problem);
    }
    const scaling = new Map<string, RouteScalingView>();
    for (const [key, entry] of entries) scaling.set(key, this.#scalingOf(entry));
    return buildSnapshot({
      now: (this.#opts.now ?? Date.now)(),
      entries,
      invalid,
      totals: aggregator.snapshot(),
      scaling,
      pods: aggregator.podStatuses(),
      statuses: this.#statuses,
    });
  }

  /** What the scaler tells KEDA for the route: through the same answers as the gRPC server. */
  #scalingOf(entry: RouteEntry): RouteScalingView {
    const answers = this.#opts.answers;
    const key = entry.kind === "InterceptorRoute" ? METADATA_INTERCEPTOR_ROUTE : METADATA_HTTPSO;
    try {
      const target = answers.resolve({
        namespace: entry.namespace,
        name: entry.name,
        scalerMetadata: { [key]: entry.name },
      });
      const specs = answers.metricSpecs(target);
      const values = answers.metricValues(target);
      const types = target.kind === "interceptorRoute"
        ? target.metrics.map((m) => m.metric.type)
        : target.kind === "route"
        ? [target.metric.type]
        : [];
      const metrics: MetricAnswer[] = specs.map((s, i) => ({
        metricName: s.metricName,
        type: types[i] ?? "",
        value: values.find((v) => v.metricName === s.metricName)?.metricValueFloat ?? 0,
        target: s.targetSizeFloat,
      }));
      return { metrics, active: answers.isActive(target) };
    } catch (e) {
      return { metrics: [], active: false, problem: (e as Error).message };
    }
  }

  /** Asks every interceptor for its /route_status; one that fails says why. */
  async refresh(signal?: AbortSignal): Promise<void> {
    const pods = this.#opts.aggregator.podStatuses();
    const ids = new Set(pods.map((p) => p.id));
    for (const id of [...this.#statuses.keys()]) if (!ids.has(id)) this.#statuses.delete(id);
    await Promise.all(pods.map(async (p) => {
      try {
        const status = await fetchRouteStatus(p.url, {
          timeoutMs: this.#opts.fetchTimeoutMs,
          ...(signal ? { signal } : {}),
        });
        this.#statuses.set(p.id, { status });
      } catch (e) {
        if (signal?.aborted) return;
        const timedOut = e instanceof DOMException && e.name === "TimeoutError";
        this.#statuses.set(p.id, {
          error: timedOut
            ? `no answer to /route_status within ${this.#opts.fetchTimeoutMs} ms`
            : (e as Error).message,
        });
      }
    }));
  }

  /** GET /dashboard */
  page(): Response {
    return new Response(DASHBOARD_HTML, {
      headers: {
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-store",
        // Everything is inline and ours: nothing may load from elsewhere.
        "content-security-policy":
          "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
      },
    });
  }

  /** GET /dashboard/events: a snapshot now, then one per change or tick until either side ends. */
  events(signal?: AbortSignal): Response {
    const max = this.#opts.maxClients ?? DEFAULT_MAX_DASHBOARD_CLIENTS;
    if (this.#clients.size >= max) {
      return new Response(
        `too many dashboard streams open (${max}): close a dashboard tab, or retry later\n`,
        {
          status: 503,
          headers: { "content-type": "text/plain; charset=utf-8", "retry-after": "5" },
        },
      );
    }
    let client: Client | null = null;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        let open = true;
        const end = () => {
          if (!open) return;
          open = false;
          this.#clients.delete(client!);
          signal?.removeEventListener("abort", end);
          try {
            controller.close();
          } catch { /* the reader is gone */ }
        };
        client = {
          send: (chunk) => {
            if (!open) return;
            try {
              controller.enqueue(enc.encode(chunk));
            } catch {
              end();
            }
          },
          close: end,
        };
        this.#clients.add(client);
        // Reconnect soon after the scaler restarts.
        client.send(`retry: 2000\n\n${frame(this.snapshot())}`);
        // A client that hangs up cancels the body (below); req.signal is not
        // used: Deno aborts it after every successful response too.
        signal?.addEventListener("abort", end, { once: true });
        if (signal?.aborted) end();
        this.#wakeUp?.();
      },
      cancel: () => client?.close(),
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  /** A lifetime member: feeds the open streams; ends them when the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const interval = this.#opts.intervalMs ?? 1000;
    const minGap = this.#opts.minGapMs ?? 100;
    try {
      while (!signal.aborted) {
        if (this.#clients.size === 0) {
          await this.#pause(Infinity, signal);
          continue;
        }
        const started = performance.now();
        this.#changed = false;
        await this.refresh(signal);
        if (signal.aborted) break;
        const chunk = frame(this.snapshot());
        for (const c of [...this.#clients]) c.send(chunk);
        if (!this.#changed) await this.#pause(interval - (performance.now() - started), signal);
        const gap = minGap - (performance.now() - started);
        if (gap > 0) await sleep(gap, signal);
      }
    } finally {
      for (const c of [...this.#clients]) c.close();
    }
  }

  /** Waits `ms` (Infinity: until woken), or until a change, a new stream or the signal. */
  #pause(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.#wakeUp = null;
        resolve();
      };
      const timer = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
      this.#wakeUp = done;
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

function frame(snapshot: DashboardSnapshot): string {
  return `event: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`;
}
