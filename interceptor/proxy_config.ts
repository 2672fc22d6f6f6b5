/**
 * The data plane's settings from the environment, and how many isolates to
 * run by default.
 */
import type { InterceptorConfig } from "../shared/config.ts";
import { connectTimeoutMsOf } from "./deadlines.ts";
import type { ProxyConfig } from "./proxy_contract.ts";
import { upstreamTlsOf } from "./upstream_tls.ts";

/** The data plane's settings; time bounds are resolved by deadlines.ts. */
export function proxyConfigOf(c: InterceptorConfig): ProxyConfig {
  return {
    readinessTimeoutMs: c.readinessTimeoutMs,
    requestTimeoutMs: c.requestTimeoutMs,
    responseHeaderTimeoutMs: c.responseHeaderTimeoutMs,
    connectTimeoutMs: connectTimeoutMsOf(c.connectTimeoutMs),
    coldStartHeader: c.coldStartHeader,
    logRequests: c.logRequests,
    maxHeldRequests: c.maxHeldRequests,
    podConcurrencyLimit: c.podConcurrencyLimit,
    idleTimeoutMs: c.idleTimeoutMs,
    headTimeoutMs: c.requestHeadTimeoutMs,
    retryAfterSeconds: 2,
    upstreamTls: upstreamTlsOf(c),
  };
}

/** Most isolates the default picks: each costs memory (README Measured), and the benefit flattens out. */
export const MAX_DEFAULT_ISOLATES = 8;

/**
 * CPUs this process may use: the cgroup's CPU quota when one is set (in a pod
 * with a CPU limit navigator.hardwareConcurrency still counts the node's CPUs).
 */
export function cpuBudget(): number {
  const cpus = navigator.hardwareConcurrency || 1;
  const read = (path: string) => {
    try {
      return Deno.readTextFileSync(path).trim();
    } catch {
      return undefined;
    }
  };
  let quota: number | undefined;
  const v2 = read("/sys/fs/cgroup/cpu.max")?.split(/\s+/);
  if (v2 && v2[0] !== "max" && v2[0] !== undefined && v2[1] !== undefined) {
    quota = Number(v2[0]) / Number(v2[1]);
  } else {
    const q = Number(read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"));
    const p = Number(read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
    if (q > 0 && p > 0) quota = q / p;
  }
  return quota !== undefined && Number.isFinite(quota) && quota > 0
    ? Math.max(1, Math.min(cpus, Math.ceil(quota)))
    : cpus;
}
