/**
 * Test support: the operator in-process (its real Controller against a real
 * API server) and as a real `deno run operator/main.ts` subprocess.
 */
import { KubeClient, loadKubeConfig } from "../shared/kube.ts";
import { LifetimeGroup, sleep } from "../shared/lifetime.ts";
import { createLogger, type Logger } from "../shared/log.ts";
import { Controller } from "./controller.ts";
import { EventRecorder } from "./events.ts";
import { OperatorMetrics } from "./metrics.ts";
import { FIELD_MANAGER } from "./reconcile.ts";
import { RouteController } from "./route_controller.ts";

export const SCALER_ADDRESS = "keda-http-scaler.kedahttp:9090";

export interface InProcessOperator extends AsyncDisposable {
  controller: Controller;
  routes: RouteController;
  metrics: OperatorMetrics;
  /** Log lines (JSON) the operator wrote. */
  logs: string[];
}

/** The operator's controllers in this process, without leader election. */
export async function startInProcessOperator(
  kubeconfigPath: string,
  options: { watchNamespace?: string; resyncPeriodMs?: number } = {},
): Promise<InProcessOperator> {
  const logs: string[] = [];
  const log: Logger = createLogger({
    level: "info",
    sink: (line) => logs.push(line),
    fields: { component: "operator" },
  });
  const client = new KubeClient(loadKubeConfig(kubeconfigPath));
  const metrics = new OperatorMetrics();
  const events = new EventRecorder({
    client,
    log,
    component: FIELD_MANAGER,
    instance: "test",
    onWrite: () => metrics.writes.inc({ resource: "events", verb: "create" }),
  });
  const controller = new Controller({
    client,
    log,
    watchNamespace: options.watchNamespace ?? "",
    scalerAddress: SCALER_ADDRESS,
    resyncPeriodMs: options.resyncPeriodMs ?? 300_000,
    metrics,
    events,
    recheckMs: 1_000,
  });
  const routes = new RouteController({
    client,
    log,
    routes: controller.interceptorRoutes,
    services: controller.services,
    resyncPeriodMs: options.resyncPeriodMs ?? 300_000,
    metrics,
  });
  const group = new LifetimeGroup();
  for (const [name, member] of controller.informerMembers()) group.add(name, member);
  group.add("resync", (s) => controller.resync(s));
  group.add("resync/interceptorroutes", (s) => routes.resync(s));
  group.add("worker", (s) => controller.runWorker(s));
  group.add("worker/interceptorroutes", (s) => routes.runWorker(s));
  const stop = new AbortController();
  const running = group.run({ signal: stop.signal });
  running.catch(() => {});
  const synced = new AbortController();
  const timer = setTimeout(() => synced.abort(), 30_000);
  try {
    if (!(await controller.waitForSync(synced.signal))) {
      throw new Error(`operator caches did not sync in 30 s; log:\n${logs.join("\n")}`);
    }
  } finally {
    clearTimeout(timer);
  }
  return {
    controller,
    routes,
    metrics,
    logs,
    async [Symbol.asyncDispose]() {
      stop.abort();
      await running.catch(() => {});
      await events.flush();
      controller.queue.shutDown();
      routes.queue.shutDown();
      client.close();
    },
  };
}

/** Prometheus text → "name{labels}" → value. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Sum of every series of a metric name. */
export function metricSum(metrics: Map<string, number>, name: string): number {
  let n = 0;
  for (const [k, v] of metrics) if (k === name || k.startsWith(`${name}{`)) n += v;
  return n;
}

export interface OperatorProcess extends AsyncDisposable {
  readonly pid: number;
  readonly adminPort: number;
  readonly status: Promise<Deno.CommandStatus>;
  /** True once the process has exited. */
  readonly exited: boolean;
  /** stderr so far (JSON log lines). */
  output(): string;
  /** Parsed /metrics; undefined while the server is not up. */
  metrics(): Promise<Map<string, number> | undefined>;
  kill(signal?: Deno.Signal): void;
}

const OPERATOR_MAIN = new URL("./main.ts", import.meta.url).pathname;
const DENO_JSON = new URL("../deno.json", import.meta.url).pathname;

export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Runs `deno run operator/main.ts` with this kubeconfig and env. */
export function spawnOperator(options: {
  kubeconfigPath: string;
  namespace: string;
  env?: Record<string, string>;
  /** Command-line flags, e.g. the Go operator's. */
  args?: string[];
}): OperatorProcess {
  const adminPort = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      `--config=${DENO_JSON}`,
      OPERATOR_MAIN,
      ...(options.args ?? []),
    ],
    env: {
      KUBECONFIG: options.kubeconfigPath,
      KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: "keda-http-scaler",
      KEDA_HTTP_OPERATOR_NAMESPACE: options.namespace,
      KEDA_HTTP_OPERATOR_ADMIN_PORT: String(adminPort),
      // Its own Prometheus port: replicas share this host (the default 2223 would clash).
      OTEL_PROM_EXPORTER_PORT: String(freePort()),
      ...options.env,
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const drained = (async () => {
    for await (const chunk of child.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  const status = child.status;
  let exited = false;
  status.then(() => (exited = true));
  return {
    pid: child.pid,
    adminPort,
    status,
    get exited() {
      return exited;
    },
    output: () => text,
    async metrics() {
      try {
        const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, {
          signal: AbortSignal.timeout(5_000),
        });
        return parseMetrics(await res.text());
      } catch {
        return undefined;
      }
    },
    kill(signal: Deno.Signal = "SIGTERM") {
      if (exited) return;
      try {
        child.kill(signal);
      } catch {
        // Already gone.
      }
    },
    async [Symbol.asyncDispose]() {
      if (!exited) {
        this.kill("SIGTERM");
        const timer = new AbortController();
        await Promise.race([status, sleep(15_000, timer.signal)]);
        timer.abort();
        if (!exited) this.kill("SIGKILL");
      }
      await status;
      await drained;
    },
  };
}
