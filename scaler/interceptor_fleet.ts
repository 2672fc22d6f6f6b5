/**
 * Talks to every interceptor pod: one worker per pod, each with
 *  - a poll loop: GET /queue every tick (with a timeout), fed to the
 *    aggregator as authoritative counts and rate samples;
 *  - a watch loop: GET /queue/watch held open, its lines fed to the
 *    aggregator the moment they arrive (instant activation); reopened with
 *    jittered backoff when it ends.
 * Workers are independent, so a slow or dead pod never delays the others.
 */
import type { Logger } from "../shared/log.ts";
import { aborted, backoffMs, sleep } from "../shared/lifetime.ts";
import { fetchQueueCounts, watchQueueCounts } from "../shared/queue_counts.ts";
import type { Tracing } from "../shared/tracing.ts";
import type { InterceptorPod, QueueAggregator } from "./queue_aggregator.ts";
import type { ScalerMetrics } from "./scaler_metrics.ts";

export interface InterceptorFleetOptions {
  aggregator: QueueAggregator;
  /** KEDA_HTTP_QUEUE_TICK_DURATION. */
  tickMs: number;
  /** Timeout of each /queue fetch (and of opening a watch). */
  fetchTimeoutMs: number;
  /** A watch that sends nothing (not even a heartbeat) this long is reopened. */
  watchIdleTimeoutMs?: number;
  /** Hold a /queue/watch stream per pod (default true). */
  watch?: boolean;
  log: Logger;
  metrics?: ScalerMetrics;
  /** OpenTelemetry traces: a client span per /queue poll. */
  tracing?: Tracing | null;
}

/** What a worker asks of its fleet. */
interface FleetView extends InterceptorFleetOptions {
  /** True when some pod's last poll succeeded. */
  anyAnswering(): boolean;
}

class PodWorker {
  pod: InterceptorPod;
  readonly #controller = new AbortController();
  readonly #fleet: FleetView;
  readonly #log: Logger;
  #failing = false;
  /** The last poll succeeded (false until one has). */
  answering = false;
  #watchFailing = false;
  #loops: Promise<unknown> = Promise.resolve();

  /** The last poll failed (Go's unreachable pod). */
  get failing(): boolean {
    return this.#failing;
  }

  constructor(pod: InterceptorPod, fleet: FleetView) {
    this.pod = pod;
    this.#fleet = fleet;
    this.#log = fleet.log.with({ pod: pod.name, url: pod.url });
  }

  start(parent: AbortSignal): void {
    const signal = AbortSignal.any([parent, this.#controller.signal]);
    const loops = [this.#pollLoop(signal)];
    if (this.#fleet.watch !== false) loops.push(this.#watchLoop(signal));
    this.#loops = Promise.allSettled(loops);
  }

  /** Stops both loops; resolves when they have. */
  stop(): Promise<unknown> {
    this.#controller.abort();
    return this.#loops;
  }

  /** One poll of /queue, applied to the aggregator. Never throws. */
  async pollOnce(signal?: AbortSignal): Promise<void> {
    const { aggregator, fetchTimeoutMs, metrics } = this.#fleet;
    const startedAt = performance.now();
    const span = this.#fleet.tracing?.root("GET /queue", {
      "server.address": this.pod.url,
      "keda.interceptor_pod": this.pod.name,
    }, "client") ?? null;
    try {
      const counts = await fetchQueueCounts(this.pod.url, {
        timeoutMs: fetchTimeoutMs,
        signal: signal
          ? AbortSignal.any([signal, this.#controller.signal])
          : this.#controller.signal,
        headers: span?.context(),
      });
      span?.set({ "keda.routes": Object.keys(counts).length });
      aggregator.applyPoll(this.pod.id, startedAt, counts);
      this.answering = true;
      metrics?.polls.inc({ result: "ok" });
      metrics?.pingerFetchDuration.observe((performance.now() - startedAt) / 1000);
      if (this.#failing) {
        this.#failing = false;
        this.#log.info("interceptor answers /queue again");
      }
    } catch (e) {
      span?.fail(e instanceof Error ? e.message : String(e));
      if (this.#controller.signal.aborted || signal?.aborted) return;
      aggregator.applyPollError(this.pod.id, e);
      this.answering = false;
      metrics?.polls.inc({ result: "error" });
      metrics?.pingerFetchDuration.observe((performance.now() - startedAt) / 1000);
      // Go counts a fetch cycle as failed when no interceptor pod answered it.
      if (!this.#fleet.anyAnswering()) metrics?.pingerFetchErrors.inc();
      const message = describe(e, fetchTimeoutMs);
      if (!this.#failing) {
        this.#failing = true;
        this.#log.warn(
          this.pod.ready
            ? "interceptor does not answer /queue; keeping its last counts for now"
            : "interceptor (not ready) does not answer /queue; ignoring its counts",
          { error: message },
        );
      } else this.#log.debug("interceptor still does not answer /queue", { error: message });
    } finally {
      span?.end();
    }
  }

  async #pollLoop(signal: AbortSignal): Promise<void> {
    let next = performance.now();
    while (!signal.aborted) {
      await this.pollOnce(signal);
      // Fixed rate, not fixed delay; a slow answer skips missed ticks instead of bunching.
      next += this.#fleet.tickMs;
      const now = performance.now();
      if (next < now) next = now + this.#fleet.tickMs - ((now - next) % this.#fleet.tickMs);
      await sleep(next - now, signal);
    }
  }

  async #watchLoop(signal: AbortSignal): Promise<void> {
    const { aggregator, fetchTimeoutMs, metrics } = this.#fleet;
    let attempt = 0;
    while (!signal.aborted) {
      try {
        await watchQueueCounts(
          this.pod.url,
          (counts, snapshot) => {
            attempt = 0;
            if (this.#watchFailing) {
              this.#watchFailing = false;
              this.#log.info("queue watch to interceptor reopened");
            }
            aggregator.applyWatch(this.pod.id, counts, snapshot);
          },
          {
            signal,
            connectTimeoutMs: fetchTimeoutMs,
            idleTimeoutMs: this.#fleet.watchIdleTimeoutMs ?? 15_000,
          },
        );
        if (signal.aborted) return;
        this.#log.debug("queue watch ended; reopening");
      } catch (e) {
        if (signal.aborted) return;
        if (!this.#watchFailing) {
          this.#watchFailing = true;
          // Polls still work without the watch; only activation gets slower.
          this.#log.warn("queue watch to interceptor failed; activation falls back to polling", {
            error: describe(e, fetchTimeoutMs),
          });
        }
      }
      metrics?.watchReconnects.inc();
      await sleep(backoffMs(attempt++, 100, 5_000), signal);
    }
  }
}

function describe(e: unknown, timeoutMs: number): string {
  if (e instanceof DOMException && (e.name === "TimeoutError" || e.name === "AbortError")) {
    return `no answer within ${timeoutMs} ms`;
  }
  return (e as Error)?.message ?? String(e);
}

export class InterceptorFleet {
  readonly #opts: FleetView;
  readonly #workers = new Map<string, PodWorker>();
  #signal?: AbortSignal;

  constructor(options: InterceptorFleetOptions) {
    this.#opts = {
      ...options,
      anyAnswering: () => [...this.#workers.values()].some((w) => w.answering),
    };
    options.metrics?.setPinger({
      endpoints: () => this.size,
      unreachable: () => this.unreachable,
    });
  }

  get size(): number {
    return this.#workers.size;
  }

  /** Some pod's last poll succeeded. */
  get anyAnswering(): boolean {
    return this.#opts.anyAnswering();
  }

  /** Pods whose last poll failed. */
  get unreachable(): number {
    let n = 0;
    for (const w of this.#workers.values()) if (w.failing) n++;
    return n;
  }

  /** Replaces the set of pods: new ones get a worker, gone ones are stopped and drop out. */
  setPods(pods: readonly InterceptorPod[]): void {
    const seen = new Set<string>();
    for (const pod of pods) {
      seen.add(pod.id);
      const w = this.#workers.get(pod.id);
      if (w) {
        if (w.pod.url !== pod.url) {
          // Same pod, new address (rare): restart its connections.
          void w.stop();
          this.#add(pod);
        } else w.pod = pod;
      } else this.#add(pod);
    }
    for (const [id, w] of this.#workers) {
      if (!seen.has(id)) {
        this.#opts.log.info("interceptor left the endpoints", { pod: w.pod.name, url: w.pod.url });
        void w.stop();
        this.#workers.delete(id);
      }
    }
    this.#opts.aggregator.setPods(pods);
  }

  #add(pod: InterceptorPod): void {
    const w = new PodWorker(pod, this.#opts);
    this.#workers.set(pod.id, w);
    this.#opts.log.info("interceptor joined the endpoints", {
      pod: pod.name,
      url: pod.url,
      ready: pod.ready,
    });
    if (this.#signal && !this.#signal.aborted) w.start(this.#signal);
  }

  /** Polls every pod now; resolves when all have answered or timed out. */
  async pingAll(signal?: AbortSignal): Promise<void> {
    await Promise.all([...this.#workers.values()].map((w) => w.pollOnce(signal)));
  }

  /** A lifetime member: runs the workers until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    this.#signal = signal;
    for (const w of this.#workers.values()) w.start(signal);
    // Stale pods must drop out on time even if nothing else happens.
    const expiry = setInterval(() => this.#opts.aggregator.expire(), 1_000);
    try {
      await aborted(signal);
    } finally {
      clearInterval(expiry);
      await Promise.all([...this.#workers.values()].map((w) => w.stop()));
    }
  }
}
