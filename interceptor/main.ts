/**
 * The interceptor: wiring only. The data plane runs in worker isolates
 * (dataplane.ts, proxy.ts); the watches, counters and admin API run here
 * (control.ts, admin.ts).
 */
import {
  ConfigError,
  type InterceptorConfig,
  interceptorEnvSchema,
  parseConfig,
  withDeprecatedEnv,
} from "../shared/config.ts";
import { KubeApiClient, loadCredentials } from "../shared/kube_api.ts";
import { aborted, LifetimeGroup, osSignals, sleep } from "../shared/lifetime.ts";
import { FlagError } from "../shared/go_flags.ts";
import {
  type Level,
  type LogFormat,
  loggerFromEnv,
  type LogSettings,
  parseFormat,
  parseLevel,
} from "../shared/log.ts";
import { nodeTlsVersion } from "../shared/tls_options.ts";
import { adminHandler } from "./admin.ts";
import { Control } from "./control.ts";
import { SharedCounters } from "./counters.ts";
import { DataPlane } from "./dataplane.ts";
import { renderMetrics } from "./metrics.ts";
import { servePrometheus } from "../shared/prometheus_server.ts";
import { startOtlpMetrics } from "../shared/otlp_metrics.ts";
import { DEFAULT_POLICY, scaleIsolates } from "./isolate_scaling.ts";
import { reduceMemoryWhenQuiet } from "./memory.ts";
import { cpuBudget, MAX_DEFAULT_ISOLATES, proxyConfigOf } from "./proxy_config.ts";
import { interceptorIgnoredEnv, parseInterceptorFlags, withChartAliases } from "./startup.ts";

// Replaced once the flags are read: --zap-* flags choose level and format.
let log = loggerFromEnv("interceptor");
let logSettings: LogSettings = {};

function logLevel(): Level {
  if (logSettings.level) return logSettings.level;
  try {
    return parseLevel(Deno.env.get("LOG_LEVEL") ?? "info");
  } catch {
    return "info";
  }
}

function logFormat(): LogFormat {
  try {
    return parseFormat(Deno.env.get("LOG_FORMAT") ?? "json");
  } catch {
    return "json";
  }
}

async function main(): Promise<number> {
  let config: InterceptorConfig;
  try {
    const flags = parseInterceptorFlags(Deno.args);
    logSettings = flags.log;
    log = loggerFromEnv("interceptor", undefined, logSettings);
    for (const n of flags.notes) log.info(n);
    const aliased = withChartAliases(Deno.env.toObject());
    for (const n of aliased.notes) log.info(n);
    for (const n of interceptorIgnoredEnv(aliased.env)) log[n.level](n.msg);
    const { env, warnings } = withDeprecatedEnv("interceptor", aliased.env);
    for (const w of warnings) log.warn(w);
    config = parseConfig("interceptor", interceptorEnvSchema(), env);
  } catch (e) {
    if (e instanceof ConfigError) {
      log.error(e.message, { problems: e.problems });
      return 2;
    }
    if (e instanceof FlagError) {
      log.error(`interceptor: ${e.message}`);
      return 2;
    }
    throw e;
  }
  let client: KubeApiClient;
  try {
    // Not client-node's KubeConfig: loading that library alone costs ~80 MB.
    client = new KubeApiClient(await loadCredentials());
  } catch (e) {
    log.error("no access to the Kubernetes API", { error: e });
    return 2;
  }
  const counters = SharedCounters.create();
  // KEDA_HTTP_PROXY_WORKERS pins the isolate count; unset, it follows the load.
  const fixed = config.workers > 0;
  const maxIsolates = fixed ? config.workers : Math.min(cpuBudget(), MAX_DEFAULT_ISOLATES);
  const activity: { control?: Control } = {};
  const dataPlane = new DataPlane({
    workers: fixed ? config.workers : 1,
    config: proxyConfigOf(config),
    listen: { hostname: config.bindAddress, port: config.proxyPort },
    tls: config.tls.enabled
      ? {
        port: config.tls.port,
        certPath: config.tls.certPath,
        keyPath: config.tls.keyPath,
        certStorePaths: config.tls.certStorePaths,
        ...(config.tls.minVersion ? { minVersion: nodeTlsVersion(config.tls.minVersion) } : {}),
        ...(config.tls.maxVersion ? { maxVersion: nodeTlsVersion(config.tls.maxVersion) } : {}),
      }
      : null,
    counters,
    log,
    logLevel: logLevel(),
    logSettings: { format: logFormat(), ...logSettings },
    tracing: config.tracing,
    onActivity: (slot, active) => activity.control?.onActivity(slot, active),
  });
  const control = new Control({
    client,
    log,
    watchNamespace: config.watchNamespace,
    counters,
    sink: dataPlane,
    directPodRouting: config.directPodRouting,
    probeStartingPods: config.probeStartingPods,
  });
  activity.control = control;
  try {
    await dataPlane.start();
  } catch (e) {
    log.error("the proxy could not start", { error: e });
    return 1;
  }
  log.info("proxy listening", {
    port: dataPlane.port,
    tlsPort: dataPlane.tlsPort,
    isolates: dataPlane.isolates,
    maxIsolates: fixed ? config.workers : dataPlane.canGrow ? maxIsolates : 1,
    watchNamespace: config.watchNamespace || "(all)",
  });

  let draining = false;
  const group = new LifetimeGroup();
  const c = control;
  group.add(
    "signals",
    osSignals(async (signal) => {
      draining = true;
      log.info("shutting down: not ready, then draining", {
        signal,
        shutdownDelayMs: config.shutdownDelayMs,
        drainTimeoutMs: config.drainTimeoutMs,
      });
      // Load balancers see /readyz fail and stop sending before we stop accepting.
      await sleep(config.shutdownDelayMs, group.signal);
      await dataPlane.drain(config.drainTimeoutMs);
      log.info("drained");
    }),
  );
  group.add("watches", (signal) => c.run(signal));
  if (!fixed && maxIsolates > 1 && dataPlane.canGrow) {
    group.add(
      "isolate-scaling",
      (signal) =>
        scaleIsolates(dataPlane, { ...DEFAULT_POLICY, max: maxIsolates }, {
          signal,
          log,
          drainTimeoutMs: config.drainTimeoutMs,
        }),
    );
  }
  group.add("memory", (signal) => reduceMemoryWhenQuiet({ signal, log, ready: () => c.ready }));
  group.add("dataplane", async (signal) => {
    await aborted(signal);
    dataPlane.stop();
  });
  /** Every isolate's counts merged: the same text on the admin /metrics and the Prometheus port. */
  const metrics = async () => {
    const { snapshots, connections } = await dataPlane.metrics();
    const routes: Array<[string, number, number]> = [];
    for (const [key, slot] of c.routeSlots.entries()) {
      routes.push([key, counters.concurrency(slot), counters.held(slot)]);
    }
    return renderMetrics(snapshots, {
      routes,
      connections,
      rssBytes: Deno.memoryUsage().rss,
      isolates: dataPlane.isolates,
    });
  };
  if (config.prometheus.enabled) {
    group.add(
      "prometheus",
      servePrometheus({
        hostname: config.bindAddress,
        port: config.prometheus.port,
        render: metrics,
        log,
      }),
    );
  }
  const otlpMetrics = await startOtlpMetrics(config.otlpMetrics, { render: metrics, log });
  if (otlpMetrics) group.add("otlp metrics", (s) => otlpMetrics.run(s));
  group.add("admin", async (signal) => {
    const handler = adminHandler({
      queueCounts: () => c.queueCounts(),
      watchQueue: (send) => c.watchQueue(send),
      routingTable: () => c.table,
      routingPing: () => c.routingPing(),
      deployments: () => c.deployments(),
      routeStatus: () => c.routeStatus(),
      ready: () => c.ready,
      draining: () => draining,
      metrics,
      log,
      signal,
    });
    const server = Deno.serve({
      hostname: config.bindAddress,
      port: config.adminPort,
      signal,
      onListen: (addr) => log.info("admin listening", { port: addr.port }),
    }, handler);
    await server.finished;
  });
  try {
    await group.run();
  } catch (e) {
    log.error("stopped after a failure", { error: e });
    return 1;
  } finally {
    dataPlane.stop();
    client.close();
  }
  log.info("stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await main());
