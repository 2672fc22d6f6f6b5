/** The data plane with n isolates on a loopback port, idle, for bench/memory_probe.ts. */
import { createLogger } from "../shared/log.ts";
import { SharedCounters } from "../interceptor/counters.ts";
import { DataPlane } from "../interceptor/dataplane.ts";
import { TEST_PROXY_CONFIG } from "../interceptor/proxy_testing.ts";

export async function startIsolates(n: number): Promise<() => void> {
  const plane = new DataPlane({
    workers: n,
    config: TEST_PROXY_CONFIG,
    listen: { hostname: "127.0.0.1", port: 0 },
    tls: null,
    counters: SharedCounters.create(),
    log: createLogger({ level: "error" }),
    logLevel: "error",
    onActivity: () => {},
  });
  await plane.start();
  if (plane.isolates !== n) throw new Error(`asked for ${n} isolates, got ${plane.isolates}`);
  return () => plane.stop();
}
