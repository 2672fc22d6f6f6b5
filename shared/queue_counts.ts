/**
 * The interceptor <-> scaler wire format, server side and client side together.
 *
 * GET /queue -> {"<namespace>/<name>": {"Concurrency": n, "RequestCount": n}, ...}
 * (the Go add-on's format). Concurrency = requests in flight, held ones
 * included; RequestCount is monotonic per interceptor process.
 *
 * GET /queue/watch -> NDJSON stream (our addition, for instant activation):
 * the first line is a full snapshot in the /queue format; each later line
 * carries only the routes whose Concurrency changed between zero and non-zero
 * (sent at once) or other changes (coalesced); `{}` is a heartbeat.
 */
import { z } from "./zod.ts";

export const QUEUE_PATH = "/queue";
export const QUEUE_WATCH_PATH = "/queue/watch";

export interface Count {
  Concurrency: number;
  RequestCount: number;
}

export type QueueCounts = Record<string, Count>;

const countValue = z.number().check(z.int(), z.minimum(0));
const countSchema = z.object({
  Concurrency: countValue,
  RequestCount: countValue,
});
export const QueueCountsSchema = z.record(z.string(), countSchema);

/** Server side: the /queue response. */
export function queueResponse(counts: QueueCounts): Response {
  return new Response(JSON.stringify(counts), {
    headers: { "content-type": "application/json" },
  });
}

/** Parses a /queue body (or one /queue/watch line); throws saying what is malformed. */
export function parseQueueCounts(text: string): QueueCounts {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`queue counts are not JSON: ${(e as Error).message}`);
  }
  const r = QueueCountsSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`queue counts malformed at ${i?.path.join(".") || "(root)"}: ${i?.message}`);
  }
  return r.data;
}

/** Client side: fetches /queue with a timeout (the Go scaler had none). */
export async function fetchQueueCounts(
  baseUrl: string,
  options: { signal?: AbortSignal; timeoutMs: number; headers?: Array<[string, string]> },
): Promise<QueueCounts> {
  const signals = [AbortSignal.timeout(options.timeoutMs)];
  if (options.signal) signals.push(options.signal);
  const res = await fetch(new URL(QUEUE_PATH, baseUrl), {
    signal: AbortSignal.any(signals),
    ...(options.headers ? { headers: options.headers } : {}),
  });
  const body = await res.text();
  if (!res.ok) {
    throw new Error(
      `GET ${QUEUE_PATH} from ${baseUrl} answered ${res.status}: ${body.slice(0, 200)}`,
    );
  }
  return parseQueueCounts(body);
}

/** Server side: a /queue/watch stream. `subscribe` returns an unsubscribe function. */
export function queueWatchResponse(
  snapshot: () => QueueCounts,
  subscribe: (send: (changed: QueueCounts) => void) => () => void,
  options: { heartbeatMs?: number; signal?: AbortSignal } = {},
): Response {
  const enc = new TextEncoder();
  let cleanup = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const write = (c: QueueCounts) => {
        try {
          controller.enqueue(enc.encode(JSON.stringify(c) + "\n"));
        } catch {
          cleanup();
        }
      };
      write(snapshot());
      const unsubscribe = subscribe(write);
      const beat = setInterval(() => write({}), options.heartbeatMs ?? 5000);
      const onAbort = () => {
        cleanup();
        try {
          controller.close();
        } catch { /* already closed */ }
      };
      cleanup = () => {
        clearInterval(beat);
        unsubscribe();
        options.signal?.removeEventListener("abort", onAbort);
      };
      options.signal?.addEventListener("abort", onAbort, { once: true });
    },
    cancel() {
      cleanup();
    },
  });
  return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
}

/**
 * Client side: follows /queue/watch, calling onCounts for each line (the first
 * is a full snapshot). Resolves when the stream ends; rejects on a network
 * error, a bad line, or when no line (heartbeats included) arrives within
 * idleTimeoutMs.
 */
export async function watchQueueCounts(
  baseUrl: string,
  onCounts: (counts: QueueCounts, snapshot: boolean) => void,
  options: { signal?: AbortSignal; idleTimeoutMs?: number; connectTimeoutMs?: number },
): Promise<void> {
  const idle = new AbortController();
  const signals = [idle.signal];
  if (options.signal) signals.push(options.signal);
  const connect = setTimeout(
    () => idle.abort(new Error(`no answer from ${baseUrl}${QUEUE_WATCH_PATH}`)),
    options.connectTimeoutMs ?? 2000,
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(
      () =>
        idle.abort(
          new Error(
            `${baseUrl}${QUEUE_WATCH_PATH} sent nothing for ${options.idleTimeoutMs ?? 15000} ms`,
          ),
        ),
      options.idleTimeoutMs ?? 15000,
    );
  };
  try {
    const res = await fetch(new URL(QUEUE_WATCH_PATH, baseUrl), {
      signal: AbortSignal.any(signals),
    });
    clearTimeout(connect);
    if (!res.ok || !res.body) {
      throw new Error(`GET ${QUEUE_WATCH_PATH} from ${baseUrl} answered ${res.status}`);
    }
    arm();
    const decoder = new TextDecoder();
    let buffer = "";
    let first = true;
    for await (const chunk of res.body) {
      arm();
      buffer += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (line === "") continue;
        onCounts(parseQueueCounts(line), first);
        first = false;
      }
    }
  } finally {
    clearTimeout(connect);
    clearTimeout(timer);
  }
}

/**
 * GET /route_status -> what the scaler's dashboard shows of one interceptor
 * replica (ours; the Go add-on has no such endpoint): per route the requests
 * held now and the target's pods as this replica's EndpointSlice watch sees
 * them, and its recent cold starts, newest first. Times are epoch ms of the
 * interceptor's clock.
 */
export const ROUTE_STATUS_PATH = "/route_status";

export const COLD_START_OUTCOMES = ["waiting", "ready", "abandoned"] as const;
export type ColdStartOutcome = (typeof COLD_START_OUTCOMES)[number];

const epochMs = z.number().check(z.minimum(0));
const coldStartSchema = z.object({
  route: z.string(),
  /** The target "<ns>/<service>:<port>" that had no ready endpoint. */
  target: z.string(),
  /** The route became busy while its target had no ready endpoint. */
  heldAt: epochMs,
  /** A pod of the target first appeared (ready or not); heldAt when one was already starting. */
  podSeenAt: z.optional(epochMs),
  /** The target got a ready endpoint and held requests were released. */
  readyAt: z.optional(epochMs),
  /** The route went idle with no ready endpoint (held requests timed out or left). */
  endedAt: z.optional(epochMs),
  outcome: z.enum(COLD_START_OUTCOMES),
  /** Who said ready: the kubelet (EndpointSlice) or the interceptor's own probe of the pod. */
  readyBy: z.optional(z.enum(["kubelet", "probe"])),
  /** Most requests seen held at once during this cold start. */
  held: countValue,
});
export type ColdStartRecord = z.infer<typeof coldStartSchema>;

const routeStatusEntry = z.object({
  held: countValue,
  /** Ready pods of the route's target. */
  readyPods: countValue,
  /** Pods of the target, ready or not. */
  pods: countValue,
});
export type RouteStatusEntry = z.infer<typeof routeStatusEntry>;

export const RouteStatusSchema = z.object({
  routes: z.record(z.string(), routeStatusEntry),
  coldStarts: z.array(coldStartSchema),
});
export type RouteStatus = z.infer<typeof RouteStatusSchema>;

/** Server side: the /route_status response. */
export function routeStatusResponse(status: RouteStatus): Response {
  return new Response(JSON.stringify(status), {
    headers: { "content-type": "application/json" },
  });
}

/** Client side: fetches /route_status with a timeout; throws saying what was wrong. */
export async function fetchRouteStatus(
  baseUrl: string,
  options: { signal?: AbortSignal; timeoutMs: number },
): Promise<RouteStatus> {
  const signals = [AbortSignal.timeout(options.timeoutMs)];
  if (options.signal) signals.push(options.signal);
  const res = await fetch(new URL(ROUTE_STATUS_PATH, baseUrl), {
    signal: AbortSignal.any(signals),
  });
  const body = await res.text();
  if (!res.ok) {
    throw new Error(
      `GET ${ROUTE_STATUS_PATH} from ${baseUrl} answered ${res.status}: ${body.slice(0, 200)}` +
        (res.status === 404 ? " (an interceptor older than the dashboard: upgrade it)" : ""),
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (e) {
    throw new Error(`${ROUTE_STATUS_PATH} from ${baseUrl} is not JSON: ${(e as Error).message}`);
  }
  const r = RouteStatusSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(
      `${ROUTE_STATUS_PATH} from ${baseUrl} malformed at ${
        i?.path.join(".") || "(root)"
      }: ${i?.message}`,
    );
  }
  return r.data;
}
