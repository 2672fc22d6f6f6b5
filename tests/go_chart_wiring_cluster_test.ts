/**
 * From the Go add-on's Helm install to ours, on the local cluster with the
 * real KEDA. First our three programs under the Go chart's wiring
 * (kedacore/charts `keda-add-ons-http` 0.15 at its default values): a Helm
 * release of a stand-in chart built here from k8s/ with the Go chart's
 * object names, selectors, pod labels, PodDisruptionBudget and operator
 * metrics Service, and on each container what that chart puts there: its
 * args (the zap flags; the operator's metrics, probe and leader-election
 * flags), its env (the variables the chart sets, at its defaults), its ports
 * and its probes (the operator's /healthz and /readyz on port "probes" 8081,
 * the scaler's gRPC `liveness` / `readiness` checks, which the node agent
 * runs as the kubelet does). The chart's own files are not used: the facts
 * are written below.
 *
 * Asserted: every Deployment becomes ready under those probes with no restart;
 * the operator took its flags (no exit 2; its start line says metrics on 8443,
 * probes on the admin port) and answers /healthz, /readyz on 8081 and /metrics
 * on 8443 (plain HTTP); the chart's variables we do not use are logged once
 * each as ignored by the interceptor and the scaler, in zap's console layout
 * with RFC 3339 times; a cold start through the interceptor's proxy Service
 * (app at 0 replicas, HTTPScaledObject) is answered 200 with
 * `X-KEDA-HTTP-Cold-Start: true`. Then `helm upgrade` of that release to
 * k8s/chart/keda-add-ons-http while 20 requests/s run against the warm app:
 * every request answered 200; the interceptor Deployment updated in place
 * with the Go chart's selector kept (Kubernetes refuses to change it: tried,
 * the upgrade fails with `spec.selector: ... field is immutable`); the Go
 * chart's scaler and operator Deployments replaced by ours; and a second app
 * cold-starts through our chart's install.
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { ensureBinaries } from "./cluster/binaries.ts";
import { helmBinary } from "./tools/helm.ts";
import { imageNames } from "../build/image.ts";
import { describeTally, emptyTally, failedAccepted, fixedRate, percentile } from "./e2e/load.ts";
import { startCluster } from "./cluster/mod.ts";
import { installKeda } from "./keda/mod.ts";
import { ClusterAccess } from "./e2e/access.ts";
import { e2eLogger, waitNamespaceGone, withTimeout } from "./e2e/harness.ts";
import { httpGet } from "./e2e/http_client.ts";
import {
  ADMIN_SERVICE,
  CHART,
  coldStartThroughProxy,
  type Component,
  DEPLOYMENTS,
  HELM_RELEASE,
  helmImageValues,
  installSystem,
  OUR_NAMES,
  PROXY_SERVICE,
  renderOverlay,
  SCALER_SERVICE,
  systemImages,
  type SystemInstall,
  type SystemNames,
} from "./e2e/system.ts";
import { isNotFound, type KubeObject } from "../shared/kube.ts";
import { ExternalScalerClient } from "../scaler/external_scaler.ts";

const NAMESPACE = "kedahttp-gowiring";
const HOST = "gowiring.e2e.test";
const HOST2 = "gowiring2.e2e.test";
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

/** The Go chart's labels that select a component's pods (its matchLabels), for release `release`. */
function goSelector(c: Component, release: string): Record<string, string> {
  return {
    "app.kubernetes.io/component": c,
    "app.kubernetes.io/name": "http-add-on",
    "app.kubernetes.io/part-of": "keda-add-ons-http",
    "app.kubernetes.io/managed-by": "Helm",
    "app.kubernetes.io/instance": release,
  };
}

/** Where the Go chart's install has its Deployments and pods. */
function goNames(release: string): SystemNames {
  const pods = (c: Component) =>
    Object.entries(goSelector(c, release)).map(([k, v]) => `${k}=${v}`).join(",");
  return {
    deployments: {
      interceptor: "keda-add-ons-http-interceptor",
      scaler: "keda-add-ons-http-external-scaler",
      operator: "keda-add-ons-http-controller-manager",
    },
    podSelectors: {
      interceptor: pods("interceptor"),
      scaler: pods("scaler"),
      operator: pods("operator"),
    },
  };
}

/**
 * The objects of a Go chart install at its default values (kedacore/charts
 * keda-add-ons-http 0.15, written from its facts, not copied): ours as k8s/
 * renders them with the chart's wiring on the containers, under the Go
 * chart's names (scaler Deployment and ServiceAccount
 * keda-add-ons-http-external-scaler, operator Deployment
 * keda-add-ons-http-controller-manager with ServiceAccount keda-add-ons-http,
 * its RBAC as keda-add-ons-http-role*), its selectors and pod labels, its
 * interceptor PodDisruptionBudget, its operator metrics Service; without our
 * Namespace (the chart has none) or our interceptor metrics Service.
 */
function goChartObjects(ours: KubeObject[], namespace: string, release: string): KubeObject[] {
  const renames: Record<string, Record<string, string>> = {
    Deployment: {
      [DEPLOYMENTS.scaler]: "keda-add-ons-http-external-scaler",
      [DEPLOYMENTS.operator]: "keda-add-ons-http-controller-manager",
    },
    ServiceAccount: {
      "keda-add-ons-http-scaler": "keda-add-ons-http-external-scaler",
      "keda-add-ons-http-operator": "keda-add-ons-http",
    },
    ClusterRole: {
      "keda-add-ons-http-scaler": "keda-add-ons-http-external-scaler",
      "keda-add-ons-http-operator": "keda-add-ons-http-role",
    },
    ClusterRoleBinding: {
      "keda-add-ons-http-scaler": "keda-add-ons-http-external-scaler",
      "keda-add-ons-http-operator": "keda-add-ons-http-rolebinding",
    },
    Role: {
      "keda-add-ons-http-scaler": "keda-add-ons-http-external-scaler",
      "keda-add-ons-http-operator-leader-election": "keda-add-ons-http-role",
    },
    RoleBinding: {
      "keda-add-ons-http-scaler": "keda-add-ons-http-external-scaler",
      "keda-add-ons-http-operator-leader-election": "keda-add-ons-http-role-rolebinding",
    },
  };
  const renamed = (kind: string, name: string) => renames[kind]?.[name] ?? name;
  const componentOf: Record<string, Component> = {
    [DEPLOYMENTS.interceptor]: "interceptor",
    [DEPLOYMENTS.scaler]: "scaler",
    [DEPLOYMENTS.operator]: "operator",
    [PROXY_SERVICE]: "interceptor",
    [ADMIN_SERVICE]: "interceptor",
    [SCALER_SERVICE]: "scaler",
  };
  // deno-lint-ignore no-explicit-any
  const out: any[] = [];
  // deno-lint-ignore no-explicit-any
  for (const o of structuredClone(ours) as any[]) {
    const name = o.metadata.name as string;
    if (o.kind === "Namespace" || name === "keda-add-ons-http-interceptor-metrics") continue;
    const c = componentOf[name];
    o.metadata.name = renamed(o.kind, name);
    if (o.kind === "Deployment" && c) {
      const labels = { ...goSelector(c, release), "app.kubernetes.io/version": "0.15.0" };
      o.spec.selector = { matchLabels: goSelector(c, release) };
      o.spec.template.metadata.labels = labels;
      o.spec.template.spec.serviceAccountName = renamed(
        "ServiceAccount",
        o.spec.template.spec.serviceAccountName,
      );
    }
    if (o.kind === "Service" && c) o.spec.selector = goSelector(c, release);
    if (o.kind === "RoleBinding" || o.kind === "ClusterRoleBinding") {
      o.roleRef.name = renamed(o.roleRef.kind, o.roleRef.name);
      for (const s of o.subjects ?? []) s.name = renamed("ServiceAccount", s.name);
    }
    out.push(o);
  }
  out.push({
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: { name: DEPLOYMENTS.interceptor, namespace },
    spec: { selector: { matchLabels: goSelector("interceptor", release) }, maxUnavailable: 1 },
  }, {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "keda-add-ons-http-controller-manager-metrics-service", namespace },
    spec: {
      selector: goSelector("operator", release),
      ports: [{ name: "metrics", port: 8443, targetPort: "metrics" }],
    },
  });
  return out;
}

/**
 * A chart whose templates are `objects` as they are (their text goes through
 * .Files.Get, so nothing in them is read as a template), in a new temporary
 * directory the caller removes.
 */
async function writeChart(objects: KubeObject[]): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "kedahttp-go-chart-" });
  await Deno.mkdir(`${dir}/templates`);
  await Deno.mkdir(`${dir}/files`);
  await Deno.writeTextFile(
    `${dir}/Chart.yaml`,
    stringify({
      apiVersion: "v2",
      name: "keda-add-ons-http",
      description: "stand-in for the Go add-on's chart at its defaults (tests only)",
      version: "0.15.0",
      appVersion: "0.15.0",
    }),
  );
  await Deno.writeTextFile(
    `${dir}/files/objects.yaml`,
    objects.map((o) => stringify(o)).join("---\n"),
  );
  await Deno.writeTextFile(
    `${dir}/templates/objects.yaml`,
    '{{ .Files.Get "files/objects.yaml" }}\n',
  );
  return dir;
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
    const helm = await helmBinary();
    const goChart = await writeChart(goChartObjects(
      await renderOverlay(kubectl, {
        namespace: NAMESPACE,
        images: systemImages(true),
        patches: wiringPatches(wiring),
      }),
      NAMESPACE,
      HELM_RELEASE,
    ));
    await using _removeChart = {
      [Symbol.asyncDispose]: () => Deno.remove(goChart, { recursive: true }).catch(() => {}),
    };
    const go = goNames(HELM_RELEASE);
    // Ready: all three Deployments rolled out under the chart's probes, and
    // KEDA has taken the interceptor's ScaledObject (installSystem waits).
    // --take-ownership: the test cluster applied our CRDs before.
    await using system: SystemInstall = await installSystem(cluster, {
      namespace: NAMESPACE,
      kubectl,
      client,
      log,
      images: systemImages(true),
      helm: { binary: helm, chart: goChart, args: ["--create-namespace", "--take-ownership"] },
      names: go,
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
    const appNs2 = await cluster.createNamespace("gowiring-app2");
    try {
      await withTimeout("the wiring took", 120_000, async (ctx) => {
        ctx.step("the Deployments carry the chart's wiring");
        for (const c of Object.keys(wiring) as Component[]) {
          const d = await client.get<DeploymentObject>(
            `/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${go.deployments[c]}`,
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
        // OTEL_EXPORTER_OTLP_TRACES_* and _METRICS_ENABLED are not asserted:
        // the scaler reads them (shared/config.ts).
        await once("scaler", ["KEDA_HTTP_SCALER_TARGET_ADMIN_DEPLOYMENT"]);
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
        const ms = await coldStartThroughProxy({
          cluster,
          client,
          system,
          access,
          namespace: NAMESPACE,
          appNs,
          host: HOST,
          step: ctx.step,
        });
        figures.info("cold start under the Go chart's wiring", { ms });
      }, () => system.describe());

      // 3. helm upgrade from the Go chart's install to our chart, requests running.
      await withTimeout("upgrade from the Go chart under load", 300_000, async (ctx) => {
        const path = (name: string) => `/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${name}`;
        const before = await client.get<DeploymentObject>(path(DEPLOYMENTS.interceptor));
        const proxy = await access.proxy(NAMESPACE, PROXY_SERVICE, 8080);
        const load = new AbortController();
        ctx.signal.addEventListener("abort", () => load.abort());
        const tally = emptyTally();
        const running = fixedRate({
          targets: [proxy],
          request: { host: HOST, path: "/hello", timeoutMs: 30_000 },
          signal: load.signal,
          rps: 20,
          tally,
        });
        try {
          ctx.step("load running; helm upgrade to k8s/chart/keda-add-ons-http");
          await new Promise((r) => setTimeout(r, 2_000));
          const tUpgrade = Date.now();
          // The Go chart makes no Namespace: ours must not either (Helm would
          // refuse to adopt the existing one).
          const up = await system.helm!([
            "upgrade",
            HELM_RELEASE,
            CHART,
            ...helmImageValues(await imageNames(systemImages(true))),
            "--set",
            "createNamespace=false",
          ]);
          assert.equal(up.code, 0, `helm upgrade from the Go chart failed:\n${up.err}`);
          // The interceptor's pods keep the Go chart's selector; the scaler and
          // the operator are new Deployments, at our names.
          system.rename({
            deployments: DEPLOYMENTS,
            podSelectors: { ...OUR_NAMES.podSelectors, interceptor: go.podSelectors.interceptor },
          });
          ctx.step("ours roll out; the Go chart's objects go; load continues");
          await cluster.waitFor(async () => {
            const d = await client.get<DeploymentObject & { status?: Record<string, number> }>(
              path(DEPLOYMENTS.interceptor),
            );
            const st = d.status ?? {};
            return (d.metadata?.generation ?? 0) > (before.metadata?.generation ?? 0) &&
              (st.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
              st.updatedReplicas === st.replicas && st.readyReplicas === st.replicas;
          }, { what: "the interceptor's rollout", timeoutMs: 120_000, intervalMs: 250 });
          await system.waitSettled("interceptor", 1, 120_000);
          await system.waitSettled("scaler", 1, 120_000);
          await system.waitSettled("operator", 2, 120_000);
          const gone = [
            path(go.deployments.scaler),
            path(go.deployments.operator),
            `/api/v1/namespaces/${NAMESPACE}/serviceaccounts/keda-add-ons-http`,
            `/api/v1/namespaces/${NAMESPACE}/services/keda-add-ons-http-controller-manager-metrics-service`,
          ];
          await cluster.waitFor(async () => {
            for (const p of gone) {
              try {
                await client.get(p);
                return false;
              } catch (e) {
                if (!isNotFound(e)) throw e;
              }
            }
            return true;
          }, { what: "the Go chart's objects to go", timeoutMs: 60_000, intervalMs: 500 });
          figures.info("helm upgrade from the Go chart rolled out", { ms: Date.now() - tUpgrade });
          // Requests after the old pods have gone, too.
          await new Promise((r) => setTimeout(r, 3_000));
        } finally {
          load.abort();
        }
        await running;
        figures.info("load during the upgrade from the Go chart", {
          tally: describeTally(tally),
          p50: percentile(tally.latenciesMs, 50),
          p99: percentile(tally.latenciesMs, 99),
        });
        assert.ok(tally.sent >= 60, `too few requests to say anything: ${describeTally(tally)}`);
        assert.equal(failedAccepted(tally), 0, describeTally(tally));
        assert.equal(tally.ok, tally.sent, `every request answered 200: ${describeTally(tally)}`);

        ctx.step("the interceptor Deployment was updated in place, its selector kept");
        const after = await client.get<DeploymentObject>(path(DEPLOYMENTS.interceptor));
        assert.equal(after.metadata?.uid, before.metadata?.uid, "the same Deployment");
        assert.deepEqual(
          (after.spec as { selector?: unknown } | undefined)?.selector,
          { matchLabels: goSelector("interceptor", HELM_RELEASE) },
        );
        const svc = await client.get<{ spec?: { selector?: Record<string, string> } }>(
          `/api/v1/namespaces/${NAMESPACE}/services/${PROXY_SERVICE}`,
        );
        assert.deepEqual(svc.spec?.selector, goSelector("interceptor", HELM_RELEASE));
        const status = await system.helm!(["status", HELM_RELEASE, "-o", "json"]);
        const release = JSON.parse(status.out) as {
          version: number;
          info: { status: string };
          chart?: { metadata?: { description?: string } };
        };
        assert.equal(release.version, 2);
        assert.equal(release.info.status, "deployed");
      }, () => system.describe());

      // 4. Our chart's install at work: a cold start of another app.
      await withTimeout("cold start after the switch", 180_000, async (ctx) => {
        const ms = await coldStartThroughProxy({
          cluster,
          client,
          system,
          access,
          namespace: NAMESPACE,
          appNs: appNs2,
          host: HOST2,
          step: ctx.step,
        });
        figures.info("cold start under our chart, after the switch", { ms });
      }, () => system.describe());

      figures.info("go chart wiring test done", {
        clusterMs: tCluster - t0,
        kedaMs: tKeda - tCluster,
        installMs: tSystem - tKeda,
        totalMs: Date.now() - t0,
      });
    } finally {
      for (const ns of [appNs, appNs2]) {
        await client.delete(`/api/v1/namespaces/${ns}`).catch(() => {});
      }
      for (const ns of [appNs, appNs2]) {
        if (!(await waitNamespaceGone(client, ns, 90_000))) {
          log.warn("app namespace still terminating after 90 s", { namespace: ns });
        }
      }
    }
  },
});
