/**
 * `deno task dev`: the whole system on this machine in one command.
 *
 * - If KUBECONFIG points at a reachable cluster, use it; otherwise start the
 *   local cluster (tests/cluster) and install KEDA into it.
 * - Install our CRD; run the operator, the scaler and the interceptor as local
 *   processes with `deno run --watch` (they restart when sources change).
 * - Make them reachable from pods the way the real install names them:
 *   selector-less Services in the install namespace whose EndpointSlices point
 *   at this host, so KEDA dials `keda-add-ons-http-external-scaler.<ns>:9090`
 *   and the scaler finds the interceptor through its admin Service.
 * - Deploy a demo app at 0 replicas with an HTTPScaledObject, and print what
 *   to curl and what to watch. Ctrl-C stops everything and leaves nothing.
 */
import { isNotFound, KubeClient, type KubeObject, loadKubeConfig } from "../shared/kube.ts";
import { LifetimeGroup, osSignals } from "../shared/lifetime.ts";
import { createLogger } from "../shared/log.ts";
import { type Program, programSpecs, repoPath } from "./programs.ts";
import { demoAppManifests } from "../tests/fixtures/demo_manifests.ts";

const log = createLogger({ fields: { component: "dev" } });
const NAMESPACE = Deno.env.get("KEDAHTTP_NAMESPACE") || "kedahttp";
const DEMO_NS = "dev-demo";
const PORTS = {
  proxy: 8080,
  interceptorAdmin: 9090,
  scalerGrpc: 9190,
  scalerHttp: 9191,
  operatorAdmin: 8081,
};

async function reachable(kubeconfig: string): Promise<boolean> {
  try {
    using client = new KubeClient(loadKubeConfig(kubeconfig));
    await client.get("/version", { signal: AbortSignal.timeout(3000) });
    return true;
  } catch {
    return false;
  }
}

/** REST path of the few kinds dev applies (group/version → plural, and scope). */
const KINDS: Record<string, { plural: string; namespaced: boolean }> = {
  "v1/Namespace": { plural: "namespaces", namespaced: false },
  "v1/Service": { plural: "services", namespaced: true },
  "apps/v1/Deployment": { plural: "deployments", namespaced: true },
  "discovery.k8s.io/v1/EndpointSlice": { plural: "endpointslices", namespaced: true },
  "apiextensions.k8s.io/v1/CustomResourceDefinition": {
    plural: "customresourcedefinitions",
    namespaced: false,
  },
  "http.keda.sh/v1alpha1/HTTPScaledObject": { plural: "httpscaledobjects", namespaced: true },
};

function objectPath(obj: KubeObject): string {
  const kind = KINDS[`${obj.apiVersion}/${obj.kind}`];
  if (!kind) {
    throw new Error(`dev: no REST path for ${obj.apiVersion} ${obj.kind}; add it to KINDS`);
  }
  const base = obj.apiVersion!.includes("/") ? `/apis/${obj.apiVersion}` : `/api/${obj.apiVersion}`;
  const ns = kind.namespaced ? `/namespaces/${obj.metadata!.namespace}` : "";
  return `${base}${ns}/${kind.plural}/${obj.metadata!.name}`;
}

/** Applies objects with server-side apply (create or update, idempotent). */
async function apply(client: KubeClient, objects: KubeObject[]): Promise<void> {
  for (const obj of objects) {
    await client.patch(objectPath(obj), obj, {
      contentType: "application/apply-patch+yaml",
      query: { fieldManager: "keda-http-dev", force: true },
    });
  }
}

/** A selector-less Service whose EndpointSlice points at this host. */
function hostService(
  name: string,
  hostIp: string,
  ports: Array<{ name: string; port: number }>,
): KubeObject[] {
  return [
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace: NAMESPACE },
      spec: { ports: ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.port })) },
    },
    {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: {
        name: `${name}-dev`,
        namespace: NAMESPACE,
        labels: { "kubernetes.io/service-name": name },
      },
      addressType: "IPv4",
      endpoints: [{ addresses: [hostIp], conditions: { ready: true } }],
      ports: ports.map((p) => ({ name: p.name, port: p.port, protocol: "TCP" })),
    },
  ];
}

function demoApp(): KubeObject[] {
  return [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: DEMO_NS } },
    ...demoAppManifests({
      namespace: DEMO_NS,
      replicas: 0,
      host: "demo.local",
      spec: {
        replicas: { min: 0, max: 5 },
        scaledownPeriod: 30,
        scalingMetric: { concurrency: { targetValue: 10 } },
      },
    }),
  ];
}

function programEnv(program: Program, kubeconfig: string): Record<string, string> {
  const common = { KUBECONFIG: kubeconfig, LOG_LEVEL: Deno.env.get("LOG_LEVEL") ?? "info" };
  switch (program) {
    case "interceptor":
      return {
        ...common,
        KEDA_HTTP_PROXY_PORT: String(PORTS.proxy),
        KEDA_HTTP_ADMIN_PORT: String(PORTS.interceptorAdmin),
        KEDA_HTTP_READINESS_TIMEOUT: "60s",
        KEDA_HTTP_SHUTDOWN_DELAY: "0s",
      };
    case "scaler":
      return {
        ...common,
        KEDA_HTTP_SCALER_PORT: String(PORTS.scalerGrpc),
        KEDA_HTTP_SCALER_HTTP_PORT: String(PORTS.scalerHttp),
        KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: NAMESPACE,
        KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: "keda-add-ons-http-interceptor-admin",
        KEDA_HTTP_SCALER_TARGET_ADMIN_PORT: String(PORTS.interceptorAdmin),
      };
    case "operator":
      return {
        ...common,
        KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: "keda-add-ons-http-external-scaler",
        KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT: String(PORTS.scalerGrpc),
        KEDA_HTTP_OPERATOR_NAMESPACE: NAMESPACE,
        KEDA_HTTP_OPERATOR_ADMIN_PORT: String(PORTS.operatorAdmin),
        POD_NAME: "dev-operator",
      };
  }
}

/**
 * A program under `deno run --watch`, as a lifetime member. The watcher
 * forwards SIGTERM to the program but then keeps waiting for file changes,
 * so once the program had time to drain, the watcher is killed.
 */
function runProgram(program: Program, kubeconfig: string) {
  const spec = programSpecs().find((p) => p.name === program)!;
  return async (signal: AbortSignal) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--watch", "--no-clear-screen", ...spec.permissions, repoPath(spec.entry)],
      env: programEnv(program, kubeconfig),
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const stop = () => {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
      }, 5000);
    };
    signal.addEventListener("abort", stop, { once: true });
    const status = await child.status;
    signal.removeEventListener("abort", stop);
    if (!signal.aborted) throw new Error(`${program} exited with code ${status.code}`);
  };
}

async function main(): Promise<void> {
  const group = new LifetimeGroup();
  const cleanups: Array<() => Promise<void>> = [];
  try {
    let kubeconfig = Deno.env.get("KUBECONFIG");
    let hostIp = "10.244.0.1";
    let local = false;
    if (kubeconfig && await reachable(kubeconfig)) {
      log.info("using the cluster in KUBECONFIG", { kubeconfig });
      hostIp = Deno.env.get("KEDAHTTP_DEV_HOST_IP") ?? "";
      if (!hostIp) {
        throw new Error(
          "with an existing cluster, set KEDAHTTP_DEV_HOST_IP to this machine's address as pods see it (KEDA must reach the scaler here), or unset KUBECONFIG to use the local cluster",
        );
      }
    } else {
      if (kubeconfig) {
        log.warn("KUBECONFIG is set but the cluster does not answer; starting the local cluster", {
          kubeconfig,
        });
      }
      const { startCluster } = await import("../tests/cluster/mod.ts");
      const { BRIDGE_IP } = await import("../tests/cluster/paths.ts");
      log.info(
        "starting the local cluster (the first run builds Kubernetes and KEDA: several minutes)",
      );
      const cluster = await startCluster({ log: createLogger({ level: "warn" }) });
      cleanups.push(() => cluster.stop());
      kubeconfig = cluster.kubeconfigPath;
      hostIp = BRIDGE_IP;
      local = true;
      const { installKeda } = await import("../tests/keda/mod.ts");
      log.info("installing KEDA");
      const keda = await installKeda(cluster);
      cleanups.push(async () => await keda[Symbol.asyncDispose]());
    }
    const client = new KubeClient(loadKubeConfig(kubeconfig));
    cleanups.push(() => Promise.resolve(client.close()));
    const { parse } = await import("yaml");
    await apply(client, [
      parse(await Deno.readTextFile(repoPath("k8s/crd/httpscaledobjects.yaml"))) as KubeObject,
      parse(await Deno.readTextFile(repoPath("k8s/crd/interceptorroutes.yaml"))) as KubeObject,
    ]);
    await apply(client, [
      { apiVersion: "v1", kind: "Namespace", metadata: { name: NAMESPACE } },
      ...hostService("keda-add-ons-http-external-scaler", hostIp, [{
        name: "grpc",
        port: PORTS.scalerGrpc,
      }]),
      ...hostService("keda-add-ons-http-interceptor-admin", hostIp, [{
        name: "admin",
        port: PORTS.interceptorAdmin,
      }]),
      ...hostService("keda-add-ons-http-interceptor-proxy", hostIp, [{
        name: "proxy",
        port: PORTS.proxy,
      }]),
    ]);
    await apply(client, demoApp());
    cleanups.push(async () => {
      try {
        await client.delete(`/api/v1/namespaces/${DEMO_NS}`);
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    });

    for (const p of ["operator", "scaler", "interceptor"] as Program[]) {
      group.add(p, runProgram(p, kubeconfig));
    }
    group.add("signals", osSignals((s) => log.info(`${s}: stopping everything`)));

    // kubectl may not be installed; the local cluster builds one.
    const { findBinary } = await import("../tests/cluster/binaries.ts");
    const onPath = await new Deno.Command("sh", {
      args: ["-c", "command -v kubectl"],
      stdout: "null",
    })
      .output().then((o) => o.success, () => false);
    const kubectl = onPath ? "kubectl" : findBinary("kubectl") ?? "kubectl";
    const watch =
      `KUBECONFIG=${kubeconfig} ${kubectl} get httpso,scaledobject,deploy,pods -n ${DEMO_NS} -w`;
    log.info("ready", {
      curl: `curl -si -H 'Host: demo.local' http://127.0.0.1:${PORTS.proxy}/`,
      watch,
      routingTable: `curl -s http://127.0.0.1:${PORTS.interceptorAdmin}/routing_table`,
      queue: `curl -s http://127.0.0.1:${PORTS.scalerHttp}/queue`,
      dashboard: `http://127.0.0.1:${PORTS.scalerHttp}/dashboard`,
      localCluster: local,
    });
    await Deno.stdout.write(new TextEncoder().encode(
      [
        "",
        "The system is running. Try:",
        `  curl -si -H 'Host: demo.local' http://127.0.0.1:${PORTS.proxy}/     # cold start: held until the demo app is up`,
        `  ${watch}`,
        `  curl -s http://127.0.0.1:${PORTS.scalerHttp}/queue                  # what the scaler sees`,
        `  open http://127.0.0.1:${PORTS.scalerHttp}/dashboard                 # the live dashboard`,
        "Ctrl-C stops everything.",
        "",
      ].join("\n"),
    ));
    await group.run();
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (e) {
        log.warn("cleanup step failed", { error: e });
      }
    }
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    log.error((e as Error).message);
    Deno.exit(1);
  }
}
