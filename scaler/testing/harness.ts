/**
 * For tests and benchmarks: the scaler's real parts (buildScaler) with
 * HTTPScaledObjects and InterceptorRoutes from in-memory stores instead of
 * informers and
 * interceptor pods given directly instead of EndpointSlices, both servers on
 * loopback ports chosen by the OS.
 */
import type { Tracing } from "../../shared/tracing.ts";
import { parseConfig, scalerEnvSchema } from "../../shared/config.ts";
import type { HTTPScaledObjectInput } from "../../shared/httpso.ts";
import type { InterceptorRouteInput } from "../../shared/interceptor_route.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import { ExternalScalerClient } from "../external_scaler.ts";
import { scalerHttpHandler } from "../http_server.ts";
import type { InterceptorPod } from "../queue_aggregator.ts";
import { buildScaler, HTTPSOS_LISTED, ROUTES_LISTED, type ScalerParts } from "../scaler.ts";
import type { QueueServer } from "./queue_server.ts";

export interface TestScalerOptions {
  httpsos?: unknown[];
  /** Raw InterceptorRoutes (see interceptorRouteObject). */
  routes?: unknown[];
  interceptors?: QueueServer[];
  /** Extra environment, e.g. KEDA_HTTP_QUEUE_TICK_DURATION. */
  env?: Record<string, string>;
  watch?: boolean;
  /** Log lines are collected here (and not printed). */
  logLines?: string[];
  /** OpenTelemetry traces for the scaler's parts. */
  tracing?: Tracing | null;
}

export interface TestScaler extends AsyncDisposable {
  parts: ScalerParts;
  client: ExternalScalerClient;
  grpcAddress: string;
  httpUrl: string;
  /** The HTTPScaledObject store ("ns/name" → object); edit it to add or remove objects. */
  store: Map<string, unknown>;
  /** The InterceptorRoute store, likewise. */
  routeStore: Map<string, unknown>;
  log: Logger;
  setInterceptors(servers: QueueServer[]): void;
  close(): Promise<void>;
}

export function podOf(server: QueueServer, n: number): InterceptorPod {
  return { id: `uid-${n}-${server.port}`, name: `interceptor-${n}`, url: server.url, ready: true };
}

/** A raw HTTPScaledObject as the API server would return it. */
export function httpsoObject(
  namespace: string,
  name: string,
  spec: Partial<HTTPScaledObjectInput["spec"]> = {},
): Record<string, unknown> {
  return {
    apiVersion: "http.keda.sh/v1alpha1",
    kind: "HTTPScaledObject",
    metadata: { namespace, name, resourceVersion: "1" },
    spec: {
      hosts: [`${name}.example.com`],
      scaleTargetRef: { name, service: name, port: 8080 },
      ...spec,
    },
  };
}

/** A raw InterceptorRoute as the API server would return it. */
export function interceptorRouteObject(
  namespace: string,
  name: string,
  spec: Partial<InterceptorRouteInput["spec"]> = {},
): Record<string, unknown> {
  return {
    apiVersion: "http.keda.sh/v1beta1",
    kind: "InterceptorRoute",
    metadata: { namespace, name, resourceVersion: "1" },
    spec: {
      target: { service: name, port: 8080 },
      rules: [{ hosts: [`${name}.example.com`] }],
      scalingMetric: { concurrency: { targetValue: 100 } },
      ...spec,
    },
  };
}

function storeOf(objects: unknown[] = []): Map<string, unknown> {
  const store = new Map<string, unknown>();
  for (const o of objects) {
    const m = (o as { metadata: { namespace: string; name: string } }).metadata;
    store.set(`${m.namespace}/${m.name}`, o);
  }
  return store;
}

export async function startTestScaler(options: TestScalerOptions = {}): Promise<TestScaler> {
  const config = parseConfig("scaler", scalerEnvSchema(), {
    KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: "keda",
    KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: "interceptor-admin",
    KEDA_HTTP_QUEUE_TICK_DURATION: "100ms",
    ...options.env,
  });
  const sink = options.logLines ? (line: string) => options.logLines!.push(line) : () => {};
  const log = createLogger({ level: "debug", sink, fields: { component: "scaler" } });
  const store = storeOf(options.httpsos);
  const routeStore = storeOf(options.routes);
  const parts = buildScaler(config, {
    httpsoStore: store,
    routeStore,
    log,
    watch: options.watch,
    hostname: "127.0.0.1",
    tracing: options.tracing ?? null,
  });
  const controller = new AbortController();
  const fleetDone = parts.fleet.run(controller.signal);
  const grpcPort = await parts.grpc.listen(0, "127.0.0.1");
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {}, signal: controller.signal },
    scalerHttpHandler({ ...parts, log }),
  );
  const setInterceptors = (servers: QueueServer[]) =>
    parts.fleet.setPods(servers.map((s, i) => podOf(s, i)));
  setInterceptors(options.interceptors ?? []);
  parts.readiness.done(HTTPSOS_LISTED);
  parts.readiness.done(ROUTES_LISTED);
  await parts.endpointsListed();
  const grpcAddress = `127.0.0.1:${grpcPort}`;
  const client = new ExternalScalerClient(grpcAddress);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    client.close();
    await parts.grpc.close(1000);
    controller.abort();
    await fleetDone;
    await http.finished;
  };
  return {
    parts,
    client,
    grpcAddress,
    httpUrl: `http://127.0.0.1:${http.addr.port}`,
    store,
    routeStore,
    log,
    setInterceptors,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Polls `probe` until it returns a defined value; throws with `what` after timeoutMs. */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  while (performance.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${
      last ? ` (last error: ${(last as Error).message})` : ""
    }`,
  );
}
