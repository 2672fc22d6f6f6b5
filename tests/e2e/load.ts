/**
 * Load for the end-to-end suite: a closed loop of N workers (sustained
 * concurrency, for the concurrency metric) and an open loop at a fixed rate
 * (for the requestRate metric). Every outcome is tallied so a case can say
 * exactly which requests failed and how.
 */
import { sleep } from "../../shared/lifetime.ts";
import {
  HttpClient,
  type HttpRequest,
  HttpRequestError,
  type HttpResponse,
  type HttpTarget,
  requestWithRetry,
} from "./http_client.ts";

export interface LoadTally {
  /** Requests started (retries of stale connections not counted twice). */
  sent: number;
  /** Answered with a 2xx status. */
  ok: number;
  /** Answered, but not with 2xx: status → count. */
  statuses: Record<string, number>;
  /** Refused or unreachable connections: never accepted, retried by the loop. */
  notAccepted: number;
  /** Stale keep-alive connections retried once on a fresh one (then answered). */
  retriedStale: number;
  /** Sent and then lost: the connection broke or timed out before a full answer. */
  lost: number;
  /** The first few failures in words, for messages. */
  failures: string[];
  /** Response times of answered requests (ms). */
  latenciesMs: number[];
  /** How many answers carried X-KEDA-HTTP-Cold-Start: true. */
  coldStarts: number;
}

export function emptyTally(): LoadTally {
  return {
    sent: 0,
    ok: 0,
    statuses: {},
    notAccepted: 0,
    retriedStale: 0,
    lost: 0,
    failures: [],
    latenciesMs: [],
    coldStarts: 0,
  };
}

/** Accepted requests that did not get a 2xx answer. */
export function failedAccepted(t: LoadTally): number {
  return t.lost + Object.values(t.statuses).reduce((n, c) => n + c, 0);
}

/** One line for logs and messages. */
export function describeTally(t: LoadTally): string {
  const statuses = Object.entries(t.statuses).map(([s, n]) => `${s}×${n}`).join(" ") || "none";
  return `sent ${t.sent}, ok ${t.ok}, non-2xx ${statuses}, lost ${t.lost}, ` +
    `refused (not accepted) ${t.notAccepted}, stale keep-alive retried ${t.retriedStale}` +
    (t.failures.length ? `; first failures: ${t.failures.slice(0, 5).join(" | ")}` : "");
}

const MAX_FAILURE_TEXTS = 20;

/** Records one finished request in the tally. */
export function record(
  t: LoadTally,
  outcome:
    | { response: HttpResponse & { retried?: boolean } }
    | { error: unknown },
): void {
  if ("response" in outcome) {
    const r = outcome.response;
    if (r.retried) t.retriedStale++;
    t.latenciesMs.push(r.headAt - r.sentAt);
    if (r.headers.get("x-keda-http-cold-start") === "true") t.coldStarts++;
    if (r.status >= 200 && r.status < 300) t.ok++;
    else {
      t.statuses[r.status] = (t.statuses[r.status] ?? 0) + 1;
      if (t.failures.length < MAX_FAILURE_TEXTS) {
        t.failures.push(`${r.status}: ${r.body.slice(0, 160).trim()}`);
      }
    }
    return;
  }
  const e = outcome.error;
  if (e instanceof HttpRequestError && !e.accepted) t.notAccepted++;
  else t.lost++;
  if (t.failures.length < MAX_FAILURE_TEXTS) t.failures.push((e as Error).message);
}

export interface LoadOptions {
  /** Where to send (the interceptor proxy); several are used round-robin by worker. */
  targets: HttpTarget[];
  request: Omit<HttpRequest, "signal">;
  signal: AbortSignal;
  /** Called with every answered request (e.g. to check which app answered). */
  onResponse?: (r: HttpResponse) => void;
}

/**
 * A request that is not accepted (connection refused) is retried after a
 * short pause: a real client would, and it was never in the system.
 */
async function oneRequest(
  client: HttpClient,
  opts: LoadOptions,
  tally: LoadTally,
): Promise<void> {
  tally.sent++;
  while (true) {
    try {
      const r = await requestWithRetry(client, { ...opts.request, signal: opts.signal });
      record(tally, { response: r });
      opts.onResponse?.(r);
      return;
    } catch (e) {
      if (opts.signal.aborted) {
        // Stopped by the caller: the request was cut by us, not by the system.
        tally.sent--;
        return;
      }
      record(tally, { error: e });
      if (e instanceof HttpRequestError && !e.accepted) {
        await sleep(100, opts.signal);
        if (opts.signal.aborted) return;
        continue;
      }
      return;
    }
  }
}

/**
 * `concurrency` workers, each sending its next request as soon as the last
 * one is answered, until the signal aborts. Resolves with the tally.
 */
export async function closedLoop(
  opts: LoadOptions & { concurrency: number; tally?: LoadTally },
): Promise<LoadTally> {
  // A caller-owned tally can be read while the load runs (per-phase counts).
  const tally = opts.tally ?? emptyTally();
  const workers = Array.from({ length: opts.concurrency }, async (_, i) => {
    using client = new HttpClient(opts.targets[i % opts.targets.length]!);
    while (!opts.signal.aborted) await oneRequest(client, opts, tally);
  });
  await Promise.all(workers);
  return tally;
}

/**
 * An open loop: a request every 1000/rps ms whatever the answers, each on an
 * idle connection of a pool (or a new one), until the signal aborts.
 */
export async function fixedRate(
  opts: LoadOptions & { rps: number; tally?: LoadTally },
): Promise<LoadTally> {
  // A caller-owned tally can be read while the load runs (per-step counts).
  const tally = opts.tally ?? emptyTally();
  const idle: HttpClient[] = [];
  const running = new Set<Promise<void>>();
  const interval = 1000 / opts.rps;
  const start = performance.now();
  let n = 0;
  while (!opts.signal.aborted) {
    const client = idle.pop() ?? new HttpClient(opts.targets[n % opts.targets.length]!);
    const p: Promise<void> = oneRequest(client, opts, tally).finally(() => {
      running.delete(p);
      idle.push(client);
    });
    running.add(p);
    n++;
    // Schedule from the start so timer drift does not lower the rate.
    const wait = start + n * interval - performance.now();
    if (wait > 0) await sleep(wait, opts.signal);
  }
  await Promise.all(running);
  for (const c of idle) c.close();
  return tally;
}

/** The p-th percentile (0..100) by nearest rank; NaN for no values. */
export function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}
