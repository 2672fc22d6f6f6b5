/**
 * The external scaler: KEDA asks it (gRPC) whether each HTTP app must run
 * and how many replicas it needs; it answers from the queue counts of every
 * interceptor pod. Wiring only; see README.md for the design.
 */
import { ConfigError, parseConfig, scalerEnvSchema } from "../shared/config.ts";
import { API_VERSION, PLURAL } from "../shared/httpso.ts";
import { IR_API_VERSION, IR_PLURAL } from "../shared/interceptor_route.ts";
import { Informer, KubeApiClient, loadCredentials } from "../shared/kube_api.ts";
import { LifetimeGroup, osSignals } from "../shared/lifetime.ts";
import { loggerFromEnv } from "../shared/log.ts";
import { FlagError } from "../shared/go_flags.ts";
import { startTracing } from "../shared/tracing.ts";
import { startOtlpMetrics } from "../shared/otlp_metrics.ts";
import { endpointSliceInformer, followInterceptorEndpoints } from "./interceptor_endpoints.ts";
import { buildScaler, HTTPSOS_LISTED, ROUTES_LISTED } from "./scaler.ts";
import { ignoredEnvNotes, parseScalerFlags } from "./startup.ts";

let log = loggerFromEnv("scaler");

let config;
let kube: KubeApiClient;
try {
  // The Go chart passes zap flags: they choose the logger's level and format.
  const flags = parseScalerFlags(Deno.args);
  log = loggerFromEnv("scaler", undefined, flags.log);
  for (const n of flags.notes) log.info(n);
  for (const n of ignoredEnvNotes(Deno.env.toObject())) log[n.level](n.msg);
  config = parseConfig("scaler", scalerEnvSchema());
  // kube_api.ts, not client-node: loading that library alone costs ~80 MB.
  kube = new KubeApiClient(await loadCredentials());
} catch (e) {
  log.error(
    e instanceof ConfigError
      ? e.message
      : e instanceof FlagError
      ? `scaler: ${e.message}`
      : `cannot start: ${(e as Error).message}`,
  );
  Deno.exit(2);
}

/** A collection path, in KEDA_HTTP_WATCH_NAMESPACE when it is set. */
const collection = (apiVersion: string, plural: string) =>
  config.watchNamespace
    ? `/apis/${apiVersion}/namespaces/${encodeURIComponent(config.watchNamespace)}/${plural}`
    : `/apis/${apiVersion}/${plural}`;
const httpsoInformer = new Informer(kube, {
  path: collection(API_VERSION, PLURAL),
  log: log.with({ watch: PLURAL }),
});
const routeInformer = new Informer(kube, {
  path: collection(IR_API_VERSION, IR_PLURAL),
  // Clusters upgraded from an older add-on may not have the CRD yet.
  missingHint:
    "the InterceptorRoute CRD (http.keda.sh/v1beta1) is not installed: apply k8s/crd/interceptorroutes.yaml",
  log: log.with({ watch: IR_PLURAL }),
});
const tracing = await startTracing(config.tracing, log, "keda-http-external-scaler");
const scaler = buildScaler(config, {
  httpsoStore: httpsoInformer.store,
  routeStore: routeInformer.store,
  log,
  tracing,
});

const { namespace, service, port } = config.targetAdmin;
const sliceInformer = endpointSliceInformer(
  kube,
  namespace,
  service,
  log.with({ watch: "endpointslices" }),
);
followInterceptorEndpoints(sliceInformer, {
  namespace,
  service,
  port,
  log,
  onPods: (pods) => scaler.fleet.setPods(pods),
});
void httpsoInformer.synced.then(() => scaler.readiness.done(HTTPSOS_LISTED));
void routeInformer.synced.then(() => scaler.readiness.done(ROUTES_LISTED));
void sliceInformer.synced.then(async () => {
  await scaler.endpointsListed();
  log.info("ready", {
    interceptors: scaler.fleet.size,
    httpScaledObjects: scaler.httpsos.size,
    interceptorRoutes: scaler.routes.size,
  });
});

const group = new LifetimeGroup()
  .add(
    "signals",
    osSignals((sig) => {
      scaler.readiness.stopping();
      log.info("shutting down", { signal: sig });
    }),
  )
  .add("httpscaledobjects informer", (s) => httpsoInformer.run(s))
  .add("interceptorroutes informer", (s) => routeInformer.run(s))
  .add("endpointslices informer", (s) => sliceInformer.run(s));
for (const [name, member] of scaler.members) group.add(name, member);
const otlpMetrics = await startOtlpMetrics(config.otlpMetrics, {
  render: () => scaler.metrics.render(),
  log,
});
if (otlpMetrics) group.add("otlp metrics", (s) => otlpMetrics.run(s));

log.info("starting", {
  grpcPort: config.grpcPort,
  httpPort: config.httpPort,
  interceptorAdmin: config.targetAdmin,
  queueTickMs: config.queueTickMs,
  streamIntervalMs: config.streamIntervalMs,
  watchNamespace: config.watchNamespace || "(all)",
  wakeToken: config.wakeToken ? "set" : "none (POST and DELETE /wake are open on the HTTP port)",
});

let code = 0;
try {
  const first = await group.run();
  if (first !== "signals") {
    log.error(`${first} stopped unexpectedly; exiting`);
    code = 1;
  }
} catch (e) {
  log.error("exiting after a fatal error", { error: e });
  code = 1;
} finally {
  kube.close();
  // What is still batched goes out before the process ends.
  await tracing?.shutdown().catch((e) => log.warn("could not export the last spans", { error: e }));
}
log.info("stopped");
Deno.exit(code);
