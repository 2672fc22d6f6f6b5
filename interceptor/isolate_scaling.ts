/**
 * How many data-plane isolates run: one while traffic is light (each more
 * costs memory, README Measured, and, on a busy node, adds threads that compete for the same
 * cores), more while the process is CPU-bound, up to one per CPU of its
 * budget. Decided from the process's own CPU time, sampled once a second.
 */
import { aborted, sleep } from "../shared/lifetime.ts";
import type { Logger } from "../shared/log.ts";

export interface ScalingPolicy {
  /** Most isolates (the CPU budget). */
  max: number;
  /** Add one when the CPU used per isolate stays above this (cores)... */
  growAbove: number;
  /** ...for this many consecutive samples. */
  growAfter: number;
  /** Remove one when the CPU used would stay below this per remaining isolate... */
  shrinkBelow: number;
  /** ...for this many consecutive samples. */
  shrinkAfter: number;
}

export const DEFAULT_POLICY: Omit<ScalingPolicy, "max"> = {
  growAbove: 0.5,
  growAfter: 2,
  shrinkBelow: 0.2,
  // Long enough that a pause between bursts does not flap.
  shrinkAfter: 30,
};

/** Hysteresis over CPU samples: pure, so it is tested without processes. */
export class IsolateScaler {
  #above = 0;
  #below = 0;

  constructor(readonly policy: ScalingPolicy) {}

  /**
   * One sample: `cores` of CPU used by the process over the last interval
   * while `isolates` were running. Returns the change to make, if any.
   */
  observe(cores: number, isolates: number): "grow" | "shrink" | null {
    const p = this.policy;
    if (isolates < p.max && cores / isolates > p.growAbove) {
      this.#below = 0;
      if (++this.#above >= p.growAfter) {
        this.#above = 0;
        return "grow";
      }
      return null;
    }
    this.#above = 0;
    if (isolates > 1 && cores / (isolates - 1) < p.shrinkBelow) {
      if (++this.#below >= p.shrinkAfter) {
        this.#below = 0;
        return "shrink";
      }
      return null;
    }
    this.#below = 0;
    return null;
  }
}

/** CPU seconds (user + system, all threads) used by this process so far; null without /proc. */
export function processCpuSeconds(): number | null {
  try {
    const stat = Deno.readTextFileSync("/proc/self/stat");
    // Fields after the command name, which may contain spaces: utime and stime are 14 and 15.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(f[11]) + Number(f[12]);
    // USER_HZ is 100 on every Linux architecture Kubernetes runs on.
    return Number.isFinite(ticks) ? ticks / 100 : null;
  } catch {
    return null;
  }
}

/** The cores this process used per interval, sampled from its CPU time. */
export class CpuSampler {
  #last: number | null;
  #lastAt = performance.now();

  constructor(readonly cpuSeconds: () => number | null = processCpuSeconds) {
    this.#last = cpuSeconds();
  }

  /** False where there is no CPU time to read (no /proc). */
  get available(): boolean {
    return this.#last !== null;
  }

  /** Waits `intervalMs`, then the cores used since the last sample; null once aborted or unreadable. */
  async next(intervalMs: number, signal: AbortSignal): Promise<number | null> {
    await sleep(intervalMs, signal);
    const now = performance.now();
    const used = this.cpuSeconds();
    if (signal.aborted || used === null || this.#last === null) return null;
    const cores = (used - this.#last) / ((now - this.#lastAt) / 1000);
    this.#last = used;
    this.#lastAt = now;
    return cores;
  }

  /** Measures afresh from now, e.g. so our own work between samples is not counted as load. */
  restart(): void {
    this.#last = this.cpuSeconds() ?? this.#last;
    this.#lastAt = performance.now();
  }
}

export interface Resizable {
  readonly isolates: number;
  grow(): Promise<void>;
  shrink(drainTimeoutMs: number): Promise<void>;
}

/** Samples CPU once a second and resizes the data plane until the signal aborts. */
export async function scaleIsolates(
  plane: Resizable,
  policy: ScalingPolicy,
  opts: {
    signal: AbortSignal;
    log: Logger;
    drainTimeoutMs: number;
    intervalMs?: number;
    cpuSeconds?: () => number | null;
  },
): Promise<void> {
  const sampler = new CpuSampler(opts.cpuSeconds);
  const interval = opts.intervalMs ?? 1000;
  const scaler = new IsolateScaler(policy);
  if (!sampler.available) {
    opts.log.info("no /proc/self/stat: the data plane keeps one isolate", {});
    // A lifetime-group member: returning early would stop the interceptor.
    return aborted(opts.signal);
  }
  while (!opts.signal.aborted) {
    const cores = await sampler.next(interval, opts.signal);
    if (cores === null) return aborted(opts.signal);
    const before = plane.isolates;
    const change = scaler.observe(cores, before);
    if (change === null) continue;
    try {
      if (change === "grow") await plane.grow();
      else await plane.shrink(opts.drainTimeoutMs);
      opts.log.info(`data plane ${change === "grow" ? "grew" : "shrank"}`, {
        isolates: plane.isolates,
        cpuCores: Math.round(cores * 100) / 100,
      });
    } catch (e) {
      opts.log.error(`the data plane could not ${change}`, { isolates: before, error: e });
    }
    // The change itself costs CPU; measure afresh from here.
    sampler.restart();
  }
}
