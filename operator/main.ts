/**
 * The operator: turns HTTPScaledObjects into KEDA ScaledObjects and reports
 * the status of InterceptorRoutes. Wiring only; see controller.ts,
 * route_controller.ts, leader_election.ts and admin.ts.
 */
import { ConfigError } from "../shared/config.ts";
import { FlagError } from "../shared/go_flags.ts";
import { KubeClient, loadKubeConfig } from "../shared/kube.ts";
import { LifetimeGroup, osSignals } from "../shared/lifetime.ts";
import { loggerFromEnv } from "../shared/log.ts";
import { serveAdmin, serveProbes } from "./admin.ts";
import { loadOperatorConfig } from "./config.ts";
import { Controller } from "./controller.ts";
import { EventRecorder } from "./events.ts";
import { LeaderElector } from "./leader_election.ts";
import { OperatorMetrics } from "./metrics.ts";
import { servePrometheus } from "../shared/prometheus_server.ts";
import { startOtlpMetrics } from "../shared/otlp_metrics.ts";
import { FIELD_MANAGER, scalerAddressOf } from "./reconcile.ts";
import { RouteController } from "./route_controller.ts";
import { operatorUsage } from "./flags.ts";
import { runTogether } from "./worker.ts";

// Replaced once the flags are read: --zap-* flags choose level and format.
let log = loggerFromEnv("operator");

async function main(): Promise<number> {
  let loaded;
  try {
    loaded = loadOperatorConfig(Deno.args, Deno.env.toObject());
  } catch (e) {
    if (e instanceof ConfigError) {
      log.error(e.message, { problems: e.problems });
      return 2;
    }
    if (e instanceof FlagError) {
      log.error(`operator: ${e.message}`);
      return 2;
    }
    throw e;
  }
  const { config, flags, probe } = loaded;
  log = loggerFromEnv("operator", undefined, flags.log);
  if (flags.help) {
    log.info(operatorUsage());
    return 0;
  }
  for (const w of loaded.warnings) log.warn(w);
  const client = new KubeClient(loadKubeConfig());
  // In a pod HOSTNAME is the pod name; the suffix keeps two local runs apart.
  const identity = config.podName ||
    `${Deno.env.get("HOSTNAME") ?? "operator"}_${crypto.randomUUID().slice(0, 8)}`;
  const metrics = new OperatorMetrics();
  const events = new EventRecorder({
    client,
    log,
    component: FIELD_MANAGER,
    instance: identity,
    onWrite: () => metrics.writes.inc({ resource: "events", verb: "create" }),
  });
  const elector = config.leaderElection.enabled
    ? new LeaderElector({
      client,
      namespace: config.namespace,
      name: config.leaderElection.leaseName,
      identity,
      leaseDurationMs: config.leaderElection.leaseDurationMs,
      renewDeadlineMs: config.leaderElection.renewDeadlineMs,
      retryPeriodMs: config.leaderElection.retryPeriodMs,
      log,
      onChange: (leading) => metrics.leaderTransitions.inc({ to: leading ? "leader" : "follower" }),
    })
    : undefined;
  const controller = new Controller({
    client,
    log,
    watchNamespace: config.watchNamespace,
    scalerAddress: scalerAddressOf(
      config.externalScaler.service,
      config.namespace,
      config.externalScaler.port,
    ),
    resyncPeriodMs: config.resyncPeriodMs,
    metrics,
    events,
    canWrite: elector ? () => elector.holdsLease() : undefined,
  });
  const routes = new RouteController({
    client,
    log,
    routes: controller.interceptorRoutes,
    services: controller.services,
    resyncPeriodMs: config.resyncPeriodMs,
    metrics,
    canWrite: elector ? () => elector.holdsLease() : undefined,
  });
  metrics.setSources({
    queueDepth: () => controller.queue.length + routes.queue.length,
    leader: () => elector?.isLeader ?? true,
    httpScaledObjects: () => controller.httpsos.store.size,
    interceptorRoutes: () => routes.routes.store.size,
    informersSynced: () => controller.synced,
  });
  log.info("starting", {
    identity,
    watchNamespace: config.watchNamespace || "(all)",
    scalerAddress: scalerAddressOf(
      config.externalScaler.service,
      config.namespace,
      config.externalScaler.port,
    ),
    leaderElection: config.leaderElection.enabled ? config.leaderElection : false,
    adminPort: config.adminPort,
    probes: probe ? `${probe.hostname}:${probe.port}` : flags.probe ? "on the admin port" : "off",
    metrics: config.prometheus.enabled
      ? `${flags.metricsHostname}:${config.prometheus.port}`
      : "off",
  });

  // Members still running during shutdown, named in a log line if it drags.
  const running = new Set<string>();
  const group = new LifetimeGroup();
  const add = (name: string, member: (signal: AbortSignal) => Promise<void>) =>
    group.add(name, async (signal) => {
      running.add(name);
      try {
        await member(signal);
      } finally {
        running.delete(name);
      }
    });
  let slowStop: ReturnType<typeof setInterval> | undefined;
  add(
    "signals",
    osSignals((s) => {
      log.info("shutting down", { signal: s });
      slowStop = setInterval(
        () => log.warn("still stopping", { waitingFor: [...running] }),
        5_000,
      );
    }),
  );
  for (const [name, member] of controller.informerMembers()) add(name, member);
  add("resync", async (s) => {
    await controller.preflight(s);
    await controller.resync(s);
  });
  add("resync/interceptorroutes", (s) => routes.resync(s));
  const ready = () => {
    const missing = controller.unsynced();
    return missing.length
      ? { ready: false, detail: `waiting for the first list of: ${missing.join(", ")}` }
      : { ready: true, detail: "caches synced" };
  };
  const info = () => ({ identity, leader: elector?.isLeader ?? true });
  add(
    "admin",
    serveAdmin({
      port: config.adminPort,
      log,
      routingTable: () => controller.routingTableJSON(),
      ready,
      metrics: () => metrics.render(),
      info,
    }),
  );
  if (probe) add("probes", serveProbes({ ...probe, log, ready, info }));
  if (config.prometheus.enabled) {
    add(
      "prometheus",
      servePrometheus({
        port: config.prometheus.port,
        hostname: flags.metricsHostname || undefined,
        render: () => metrics.render(),
        log,
      }),
    );
  }
  const otlpMetrics = await startOtlpMetrics(config.otlpMetrics, {
    render: () => metrics.render(),
    log,
  });
  if (otlpMetrics) add("otlp metrics", (s) => otlpMetrics.run(s));
  // Both workers run while this process leads, and stop together.
  const work = (term: AbortSignal) =>
    runTogether(term, [(s) => controller.runWorker(s), (s) => routes.runWorker(s)]);
  add("controller", async (signal) => {
    if (elector) await elector.run(signal, work);
    else await work(signal);
    // A worker that returns while the group runs would leave nothing reconciling.
    if (!signal.aborted) throw new Error("the controller stopped unexpectedly");
  });
  try {
    await group.run();
  } finally {
    controller.queue.shutDown();
    routes.queue.shutDown();
    running.add("events");
    await events.flush();
    running.delete("events");
    clearInterval(slowStop);
    client.close();
  }
  log.info("stopped");
  return 0;
}

try {
  Deno.exit(await main());
} catch (e) {
  log.error("operator failed", { error: e });
  Deno.exit(1);
}
