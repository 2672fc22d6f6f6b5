/**
 * Gives memory back once the process goes quiet. V8 shrinks its heap only
 * while it collects garbage, and an idle process allocates nothing, so never
 * collects: what startup or a load left behind (young-generation pages grown
 * under load, half-empty old-space pages) would stay resident until the next
 * load. After startup, and each time a load has ended, one full
 * memory-reducing collection (V8's "last resort" flavour: compacts, shrinks
 * the young generation, releases free pages) returns it. It needs
 * --v8-flags=--expose-gc; without it this member only waits.
 */
import { aborted } from "../shared/lifetime.ts";
import type { Logger } from "../shared/log.ts";
import { CpuSampler } from "./isolate_scaling.ts";

export interface QuietPolicy {
  /** A sample above this (cores) is load: arms a collection for when it ends. */
  busyAbove: number;
  /** Samples below this (cores) are quiet... */
  quietBelow: number;
  /** ...and this many in a row end a load. */
  quietFor: number;
}

export const DEFAULT_QUIET_POLICY: QuietPolicy = {
  // /proc counts CPU in 10 ms ticks: one tick per second reads as 0.01 cores.
  busyAbove: 0.05,
  // 1000 requests/s cost ~0.03 cores: a steady load like that is not quiet.
  quietBelow: 0.015,
  quietFor: 2,
};

/** Decides from CPU samples when a collection is due; pure, so tested without a process. */
export class QuietDetector {
  // Startup is a load of its own: armed from the start.
  #armed = true;
  #quiet = 0;

  constructor(readonly policy: QuietPolicy = DEFAULT_QUIET_POLICY) {}

  /** One sample of `cores` used over the last interval; true when a collection is due now. */
  observe(cores: number): boolean {
    const p = this.policy;
    if (cores > p.busyAbove) this.#armed = true;
    this.#quiet = cores < p.quietBelow ? this.#quiet + 1 : 0;
    if (!this.#armed || this.#quiet < p.quietFor) return false;
    this.#armed = false;
    return true;
  }
}

/** V8's gc() as --expose-gc installs it, with the options V8 has taken since 2023. */
export type GcFunction = (options: {
  type: "major";
  execution: "sync";
  flavor: "last-resort";
}) => void;

/** The gc() that --expose-gc installs, when it is there. */
export function exposedGc(): GcFunction | null {
  const gc = (globalThis as { gc?: unknown }).gc;
  return typeof gc === "function" ? gc as GcFunction : null;
}

/**
 * Lifetime member: samples the process's CPU once a second and runs one
 * memory-reducing collection whenever the process goes quiet after startup
 * or after a load (only once `ready`: before that, startup is still going).
 */
export async function reduceMemoryWhenQuiet(opts: {
  signal: AbortSignal;
  log: Logger;
  ready: () => boolean;
  gc?: GcFunction | null;
  intervalMs?: number;
  cpuSeconds?: () => number | null;
}): Promise<void> {
  const gc = opts.gc === undefined ? exposedGc() : opts.gc;
  const sampler = new CpuSampler(opts.cpuSeconds);
  if (gc === null || !sampler.available) {
    opts.log.info("memory is not given back when quiet", {
      reason: gc === null ? "gc() not exposed: run with --v8-flags=--expose-gc" : "no /proc",
    });
    // A lifetime-group member: returning early would stop the interceptor.
    return aborted(opts.signal);
  }
  const interval = opts.intervalMs ?? 1000;
  const detector = new QuietDetector();
  while (!opts.signal.aborted) {
    const cores = await sampler.next(interval, opts.signal);
    if (cores === null) return aborted(opts.signal);
    // Not ready yet: still starting, whatever the CPU says.
    if (!detector.observe(opts.ready() ? cores : Infinity)) continue;
    const before = Deno.memoryUsage();
    const t0 = performance.now();
    gc({ type: "major", execution: "sync", flavor: "last-resort" });
    const pauseMs = performance.now() - t0;
    const after = Deno.memoryUsage();
    const mb = (n: number) => Math.round(n / 1e5) / 10;
    opts.log.debug("memory given back", {
      pauseMs: Math.round(pauseMs),
      heapMb: [mb(before.heapTotal), mb(after.heapTotal)],
      rssMb: [mb(before.rss), mb(after.rss)],
    });
    // The collection's own CPU is not load.
    sampler.restart();
  }
}
