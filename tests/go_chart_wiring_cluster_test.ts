/**
 * Our three programs under the Go add-on's Helm chart wiring (kedacore/charts,
 * `keda-add-ons-http`, default values), on the local cluster with the real
 * KEDA: k8s/ through installSystem's kustomize overlay, each Deployment's
 * container patched with what the Go chart puts there: its args (the zap
 * flags; the operator's metrics, probe and leader-election flags), its env
 * (the variables the chart sets, at the chart's default values, instead of
 * ours), its ports and its probes (the operator's /healthz and /readyz on port
 * "probes" 8081, the scaler's gRPC `liveness` / `readiness` health checks,
 * which the node agent runs as the kubelet does: Health/Check with the service
 * name, SERVING only). Our object names stay (they are the Go names).
 *
 * Asserted: every Deployment becomes ready under those probes with no restart;
 * the operator took its flags (no exit 2; its start line says metrics on 8443,
 * probes on the admin port) and answers /healthz, /readyz on 8081 and /metrics
 * on 8443 (plain HTTP); the chart's variables we do not use are logged once
 * each as ignored by the interceptor and the scaler, in zap's console layout
 * with RFC 3339 times; and a cold start through the interceptor's proxy
 * Service (app at 0 replicas, HTTPScaledObject) is answered 200 with
 * `X-KEDA-HTTP-Cold-Start: true`.
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { ensureBinaries } from "./cluster/binaries.ts";
import { startCluster } from "./cluster/mod.ts";
import { installKeda } from "./keda/mod.ts";
import { ClusterAccess } from "./e2e/access.ts";
import { e2eLogger, waitNamespaceGone, withTimeout } from "./e2e/harness.ts";
import { httpGet } from "./e2e/http_client.ts";
import {
  ADMIN_SERVICE,
  type Component,
  deployAppAtZero,
  DEPLOYMENTS,
  installSystem,
  PROXY_SERVICE,
  SCALER_SERVICE,
  systemImages,
  type SystemInstall,
} from "./e2e/system.ts";
import type { KubeObject } from "../shared/kube.ts";
import { ExternalScalerClient } from "../scaler/external_scaler.ts";

const NAMESPACE = "kedahttp-gowiring";
const HOST = "gowiring.e2e.test";
const figures = e2eLogger("go-wiring-figures");

type Env = Array<{ name: string; value: string }>;
interface Probe {
  httpGet?: { path: string; port: string | number };
  grpc?: { port: number; service?: string };
  timeoutSeconds?: number;
  periodSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}
interface Wiring {
  args: string[];
  env: Env;
  ports: Array<{ name: string; containerPort: number }>;
  livenessProbe: Probe;
  readinessProbe: Probe;
}

const env = (vars: Record<string, string>): Env =>
  Object.entries(vars).map(([name, value]) => ({ name, value }));

/** The Go chart's zap flags at its default values (logging.<program>.*). */
const ZAP = ["--zap-log-level=info", "--zap-encoder=console", "--zap-time-encoding=rfc3339"];

/**
 * What the Go chart sets on each program's container, at its default values
 * (written from the chart's facts, in our namespace; not copied from it).
 */
function goChartWiring(namespace: string): Record<Component, Wiring> {
  return {
    operator: {
      args: [
        "--metrics-bind-address=:8443",
        "--metrics-secure=true",
        "--metrics-auth=true",
        "--leader-elect",
        "--health-probe-bind-address=:8081",
        ...ZAP,
      ],
      env: env({
        KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: SCALER_SERVICE,
        KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT: "9090",
        KEDA_HTTP_OPERATOR_NAMESPACE: namespace,
        KEDA_HTTP_OPERATOR_WATCH_NAMESPACE: "",
      }),
      ports: [{ name: "metrics", containerPort: 8443 }, { name: "probes", containerPort: 8081 }],
      livenessProbe: { httpGet: { path: "/healthz", port: "probes" } },
      readinessProbe: { httpGet: { path: "/readyz", port: "probes" } },
    },
    scaler: {
      args: ZAP,
      env: env({
        KEDA_HTTP_SCALER_TARGET_ADMIN_DEPLOYMENT: DEPLOYMENTS.interceptor,
        KEDA_HTTP_SCALER_PORT: "9090",
        KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: namespace,
        KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: ADMIN_SERVICE,
        KEDA_HTTP_SCALER_TARGET_ADMIN_PORT: "9090",
        KEDA_HTTP_SCALER_STREAM_INTERVAL_MS: "200",
        OTEL_PROM_EXPORTER_ENABLED: "true",
        OTEL_PROM_EXPORTER_PORT: "2223",
        OTEL_EXPORTER_OTLP_METRICS_ENABLED: "false",
        OTEL_EXPORTER_OTLP_TRACES_ENABLED: "false",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "console",
      }),
      // The chart's grpc and metrics ports, and ours (http: our Service's targetPort).
      ports: [
        { name: "grpc", containerPort: 9090 },
        { name: "metrics", containerPort: 2223 },
        { name: "http", containerPort: 9091 },
      ],
      livenessProbe: {
        grpc: { port: 9090, service: "liveness" },
        timeoutSeconds: 5,
        periodSeconds: 5,
        successThreshold: 1,
        failureThreshold: 6,
      },
      readinessProbe: {
        grpc: { port: 9090, service: "readiness" },
        timeoutSeconds: 1,
        periodSeconds: 5,
        successThreshold: 1,
        failureThreshold: 3,
      },
    },
    interceptor: {
      args: [...ZAP, "--zap-stacktrace-level=error"],
      env: env({
        KEDA_HTTP_PROXY_PORT: "8080",
        KEDA_HTTP_ADMIN_PORT: "9090",
        KEDA_HTTP_MAX_IDLE_CONNS: "1000",
        KEDA_HTTP_MAX_IDLE_CONNS_PER_HOST: "200",
        KEDA_HTTP_DIRECT_POD_ROUTING: "true",
        KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS: "0",
        KEDA_HTTP_SHUTDOWN_DELAY: "5s",
        KEDA_HTTP_DRAIN_TIMEOUT: "30s",
        KEDA_HTTP_TLS_SKIP_VERIFY: "false",
      }),
      ports: [
        { name: "admin", containerPort: 9090 },
        { name: "proxy", containerPort: 8080 },
        { name: "metrics", containerPort: 2223 },
      ],
      // Kubernetes' probe defaults: the chart sets only the paths.
      livenessProbe: { httpGet: { path: "/livez", port: "admin" } },
      readinessProbe: { httpGet: { path: "/readyz", port: "admin" } },
    },
  };
}

/** JSON 6902 patches (kustomize `patches`) putting the wiring on each Deployment's container. */
function wiringPatches(
  wiring: Record<Component, Wiring>,
): Array<{ target: Record<string, string>; patch: string }> {
  return (Object.keys(wiring) as Component[]).map((c) => {
    const base = "/spec/template/spec/containers/0";
    const w = wiring[c];
    // `add` on an object member replaces it when present (args is not, in k8s/).
    const ops = (Object.keys(w) as Array<keyof Wiring>).map((key) => ({
      op: "add",
      path: `${base}/${key}`,
      value: w[key],
    }));
    return {
      target: { group: "apps", kind: "Deployment", name: DEPLOYMENTS[c] },
      patch: stringify(ops),
    };
  });
}

interface DeploymentObject extends KubeObject {
  spec?: { template?: { spec?: { containers?: Array<Record<string, unknown>> } } };
}

/**
 * `actual` has everything `expected` has (the API server adds defaults, e.g.
 * a probe's scheme, and drops empty strings such as an env value "").
 */
function assertIncludes(actual: unknown, expected: unknown, where: string): void {
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${where}: not a list: ${JSON.stringify(actual)}`);
    assert.equal(actual.length, expected.length, `${where}: ${JSON.stringify(actual)}`);
    expected.forEach((e, i) => assertIncludes(actual[i], e, `${where}[${i}]`));
  } else if (expected !== null && typeof expected === "object") {
    assert.ok(actual && typeof actual === "object", `${where}: ${JSON.stringify(actual)}`);
    for (const [k, v] of Object.entries(expected)) {
      assertIncludes((actual as Record<string, unknown>)[k], v, `${where}.${k}`);
    }
  } else if (expected === "") {
    assert.ok(actual === "" || actual === undefined, `${where}: ${JSON.stringify(actual)}`);
  } else {
    assert.equal(actual, expected, where);
  }
}

/** Lines of a log that contain every one of `parts`. */
function linesWith(log: string, ...parts: string[]): string[] {
  return log.split("\n").filter((l) => parts.every((p) => l.includes(p)));
}

/** zap's console layout with an RFC 3339 time: `<time>\t<LEVEL>\t<msg>…`. */
const CONSOLE_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)\t(DEBUG|INFO|WARN|ERROR)\t/;

/** Our lines are in the console layout: some are, none is JSON. */
function assertConsoleLayout(what: string, log: string): void {
  const lines = log.split("\n").filter((l) => l.trim());
  assert.ok(lines.some((l) => CONSOLE_LINE.test(l)), `${what}: zap console lines:\n${log}`);
  assert.deepEqual(lines.filter((l) => l.startsWith('{"')), [], `${what}: no JSON lines`);
}

function answer(body: string): { text?: string } {
  try {
    return JSON.parse(body);
  } catch {
    return {};
  }
}

Deno.test({
  name: "Go chart wiring: our programs under its args, env, ports and probes; a cold start",
  // Informers and HTTP clients keep timers between calls.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const log = e2eLogger("go-wiring-e2e");
    const t0 = Date.now();
    await using cluster = await startCluster();
    if (!cluster.node || !cluster.stateDir) {
      throw new Error(
        "this test needs the local cluster with its node agent (run as root): it reads pod logs " +
          "and relies on the node agent's gRPC probes",
      );
    }
    const kubectl = (await ensureBinaries(["kubectl"])).kubectl!;
    const tCluster = Date.now();
    await using keda = await installKeda(cluster);
    const client = keda.client;
    const tKeda = Date.now();
    assert.ok(
      await waitNamespaceGone(client, NAMESPACE, 120_000),
      `namespace ${NAMESPACE} of an earlier run is still there`,
    );

    // gRPC clients of the scaler are closed only after it has gone (declared
    // before `system`, so disposed after it): a Deno grpc-js client closing
    // its connection can abort a Deno gRPC server (scaler/README.md).
    const scalerClients: ExternalScalerClient[] = [];
    await using _closeScalerClients = {
      [Symbol.asyncDispose]: () => Promise.resolve(scalerClients.forEach((c) => c.close())),
    };
    const wiring = goChartWiring(NAMESPACE);
    // Ready: all three Deployments rolled out under the chart's probes, and
    // KEDA has taken the interceptor's ScaledObject (installSystem waits).
    await using system: SystemInstall = await installSystem(cluster, {
      namespace: NAMESPACE,
      kubectl,
      client,
      log,
      images: systemImages(true),
      patches: wiringPatches(wiring),
    });
    const tSystem = Date.now();
    figures.info("installed under the Go chart's wiring", { ms: tSystem - tKeda });

    await using access = new ClusterAccess({
      client,
      direct: true,
      kubectl,
      kubeconfigPath: cluster.kubeconfigPath,
    });
    const appNs = await cluster.createNamespace("gowiring-app");
    try {
      await withTimeout("the wiring took", 120_000, async (ctx) => {
        ctx.step("the Deployments carry the chart's wiring");
        for (const c of Object.keys(wiring) as Component[]) {
          const d = await client.get<DeploymentObject>(
            `/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${DEPLOYMENTS[c]}`,
          );
          const container = d.spec?.template?.spec?.containers?.[0] ?? {};
          for (const key of Object.keys(wiring[c]) as Array<keyof Wiring>) {
            assertIncludes(container[key], wiring[c][key], `${c} container ${key}`);
          }
        }

        ctx.step("the scaler's pods pass both gRPC probes and stay up");
        // Ready needs the node agent's Check("readiness") to answer SERVING.
        // Its liveness probe runs the same check with "liveness", which the
        // scaler answers SERVING as well (asked here directly: a failing
        // liveness probe would only restart the pod after 6 × 5 s).
        for (const pod of await system.readyPods("scaler")) {
          const c = new ExternalScalerClient(`${pod.ip}:9090`);
          scalerClients.push(c);
          for (const service of ["liveness", "readiness"]) {
            assert.equal(await c.healthCheck(service, { timeoutMs: 5_000 }), "SERVING", service);
          }
          await assert.rejects(c.healthCheck("no-such-service", { timeoutMs: 5_000 }), /NOT_FOUND/);
        }
        // Two liveness periods later: still ready, no restart.
        await new Promise((r) => setTimeout(r, 11_000));
        for (const c of Object.keys(wiring) as Component[]) {
          const pods = await system.pods(c);
          const want = c === "operator" ? 2 : 1;
          assert.equal(
            pods.filter((p) => p.ready && !p.deleting).length,
            want,
            `${c}: ${want} ready pod(s): ${JSON.stringify(pods)}\n${await system.describe()}`,
          );
          for (const p of pods) {
            assert.equal(p.restarts, 0, `${c} pod ${p.name} restarted\n${await system.describe()}`);
          }
        }

        ctx.step("the operator took its flags and answers on 8081 and 8443");
        for (const pod of await system.readyPods("operator")) {
          const text = await cluster.podLogs(NAMESPACE, pod.name);
          // No exit 2 (restarts 0 above) and no error line; the start line
          // says where its flags put metrics and probes.
          assert.deepEqual(linesWith(text, "\tERROR\t"), [], text);
          const starting = linesWith(text, "\tINFO\tstarting\t");
          assert.equal(starting.length, 1, `one start line:\n${text}`);
          assert.match(starting[0]!, /"metrics":":8443"/, starting[0]!);
          assert.match(starting[0]!, /"probes":"on the admin port"/, starting[0]!);
          assert.match(starting[0]!, /"leaderElection":\{"enabled":true/, starting[0]!);
          assert.equal(linesWith(text, "--metrics-secure ignored").length, 1, text);
          assert.equal(linesWith(text, "--metrics-auth ignored").length, 1, text);
          assertConsoleLayout(`operator ${pod.name}`, text);
          const probes = await access.pod(NAMESPACE, pod.name, 8081, pod.ip);
          const healthz = await httpGet(probes, { host: "probes", path: "/healthz" });
          assert.equal(healthz.status, 200, `/healthz: ${healthz.status} ${healthz.body}`);
          const readyz = await httpGet(probes, { host: "probes", path: "/readyz" });
          assert.equal(readyz.status, 200, `/readyz: ${readyz.status} ${readyz.body}`);
          const metrics = await httpGet(await access.pod(NAMESPACE, pod.name, 8443, pod.ip), {
            host: "metrics",
            path: "/metrics",
          });
          assert.equal(metrics.status, 200, `/metrics on 8443 (plain HTTP): ${metrics.status}`);
          assert.match(metrics.body, /keda_http_operator_/);
        }

        ctx.step("the chart's variables we do not use are logged once each as ignored");
        const once = async (c: Component, names: string[]) => {
          for (const pod of await system.readyPods(c)) {
            const text = await cluster.podLogs(NAMESPACE, pod.name);
            assertConsoleLayout(`${c} ${pod.name}`, text);
            for (const name of names) {
              const lines = linesWith(text, `${name}="`, "ignored");
              assert.equal(lines.length, 1, `${c}: ${name} logged once as ignored:\n${text}`);
              assert.match(lines[0]!, /\tINFO\t/, `${c}: ${name} at its default asks for nothing`);
            }
          }
        };
        await once("interceptor", [
          "KEDA_HTTP_MAX_IDLE_CONNS",
          "KEDA_HTTP_MAX_IDLE_CONNS_PER_HOST",
          "KEDA_HTTP_TLS_SKIP_VERIFY",
        ]);
        // OTEL_EXPORTER_OTLP_TRACES_ENABLED / _PROTOCOL are not asserted: the
        // scaler does read them (shared/config.ts, shared/tracing.ts).
        await once("scaler", [
          "KEDA_HTTP_SCALER_TARGET_ADMIN_DEPLOYMENT",
          "OTEL_EXPORTER_OTLP_METRICS_ENABLED",
        ]);
        for (const pod of await system.readyPods("interceptor")) {
          const text = await cluster.podLogs(NAMESPACE, pod.name);
          assert.equal(
            linesWith(text, "KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS=0").length,
            1,
            `the chart's maxPendingRequests=0 noted once:\n${text}`,
          );
          assert.equal(
            linesWith(text, "--zap-stacktrace-level=error ignored").length,
            1,
            `--zap-stacktrace-level noted once:\n${text}`,
          );
        }
      }, () => system.describe());

      await withTimeout("cold start", 180_000, async (ctx) => {
        ctx.step("deploy the app; wait for its route and its ScaledObject");
        await deployAppAtZero({
          cluster,
          client,
          system,
          access,
          namespace: NAMESPACE,
          appNs,
          host: HOST,
        });

        ctx.step("first request through the proxy Service (held while KEDA scales 0 → 1)");
        const proxy = await access.proxy(NAMESPACE, PROXY_SERVICE, 8080);
        const tSent = Date.now();
        const r = await httpGet(proxy, { host: HOST, path: "/hello", timeoutMs: 90_000 });
        assert.equal(r.status, 200, `the held request: ${r.status} ${r.body.slice(0, 300)}`);
        assert.equal(answer(r.body).text, "app", r.body.slice(0, 300));
        assert.equal(r.headers.get("x-keda-http-cold-start"), "true", "X-KEDA-HTTP-Cold-Start");
        figures.info("cold start under the Go chart's wiring", { ms: Date.now() - tSent });
      }, () => system.describe());

      figures.info("go chart wiring test done", {
        clusterMs: tCluster - t0,
        kedaMs: tKeda - tCluster,
        installMs: tSystem - tKeda,
        totalMs: Date.now() - t0,
      });
    } finally {
      await client.delete(`/api/v1/namespaces/${appNs}`).catch(() => {});
      if (!(await waitNamespaceGone(client, appNs, 90_000))) {
        log.warn("app namespace still terminating after 90 s", { namespace: appNs });
      }
    }
  },
});
