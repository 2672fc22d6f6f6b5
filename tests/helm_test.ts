/**
 * The Helm chart (k8s/chart/keda-add-ons-http), no cluster needed: `helm lint`
 * passes; `helm template` with the default values renders exactly the objects
 * that `kubectl kustomize k8s/` renders (parsed, sorted by kind/namespace/name,
 * nothing normalised: the chart adds no labels of its own); values outside the
 * schema are refused with a message naming the value; a few non-default values
 * render what they promise. Helm is built from its Go module
 * (tests/tools/helm.ts), kubectl is the one tests/cluster builds.
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { ensureBinaries } from "./cluster/binaries.ts";
import { helmBinary, helmEnv } from "./tools/helm.ts";
import { parseInterceptorFlags } from "../interceptor/startup.ts";

const REPO = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const CHART = `${REPO}/k8s/chart/keda-add-ons-http`;
const NAMESPACE = "kedahttp";

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  [k: string]: unknown;
};

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Helm with its config, cache and data under a temporary directory (nothing in $HOME). */
let helmHome: string | undefined;
async function helm(args: string[]): Promise<Run> {
  helmHome ??= await Deno.makeTempDir({ prefix: "khd-helm-" });
  const out = await new Deno.Command(await helmBinary(), {
    args,
    env: helmEnv(helmHome),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

async function kubectlKustomize(dir: string): Promise<string> {
  const { kubectl } = await ensureBinaries(["kubectl"]);
  const out = await new Deno.Command(kubectl!, {
    args: ["kustomize", dir],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  if (!out.success) throw new Error(`kubectl kustomize ${dir} failed:\n${d.decode(out.stderr)}`);
  return d.decode(out.stdout);
}

function parseObjects(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length) throw new Error(`bad YAML: ${doc.errors[0]!.message}`);
      return doc.toJS() as Obj | null;
    })
    .filter((o): o is Obj => o !== null && typeof o === "object");
}

function key(o: Obj): string {
  return `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;
}

function byKey(objs: Obj[]): Map<string, Obj> {
  const m = new Map<string, Obj>();
  for (const o of objs) {
    assert.ok(!m.has(key(o)), `rendered twice: ${key(o)}`);
    m.set(key(o), o);
  }
  return new Map([...m].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0));
}

/** `helm template` of the chart with these extra arguments; throws with helm's stderr on failure. */
async function render(...args: string[]): Promise<Map<string, Obj>> {
  const r = await helm(["template", "keda-add-ons-http", CHART, "--namespace", NAMESPACE, ...args]);
  if (r.code !== 0) throw new Error(`helm template failed (${r.code}):\n${r.stderr}`);
  return byKey(parseObjects(r.stdout));
}

function container(objs: Map<string, Obj>, deployment: string): Record<string, unknown> {
  const d = objs.get(`Deployment/${NAMESPACE}/${deployment}`);
  assert.ok(d, `no Deployment ${deployment}`);
  // deno-lint-ignore no-explicit-any
  return (d.spec as any).template.spec.containers[0];
}

function envOf(c: Record<string, unknown>): Record<string, unknown> {
  const env = (c.env ?? []) as { name: string; value?: string; valueFrom?: unknown }[];
  return Object.fromEntries(env.map((e) => [e.name, e.value ?? e.valueFrom]));
}

Deno.test("helm lint passes on the chart", async () => {
  const r = await helm(["lint", "--strict", CHART]);
  assert.equal(r.code, 0, `helm lint failed:\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
});

Deno.test("helm template with default values renders the objects of kustomize k8s/", async () => {
  const [chart, kustomize] = await Promise.all([
    render(),
    kubectlKustomize(`${REPO}/k8s`).then((t) => byKey(parseObjects(t))),
  ]);
  // The same set first (a readable message), then each object field by field.
  assert.deepEqual([...chart.keys()], [...kustomize.keys()], "objects rendered: helm vs kustomize");
  for (const [k, want] of kustomize) {
    assert.deepStrictEqual(chart.get(k), want, `${k}: helm's object differs from kustomize's`);
  }
  // What the comparison covers, so it cannot pass vacuously.
  const kinds = new Set([...kustomize.values()].map((o) => o.kind));
  for (
    const kind of [
      "Namespace",
      "CustomResourceDefinition",
      "ServiceAccount",
      "ClusterRole",
      "ClusterRoleBinding",
      "Role",
      "RoleBinding",
      "Deployment",
      "Service",
      "ScaledObject",
    ]
  ) assert.ok(kinds.has(kind), `kustomize renders no ${kind}`);
  assert.equal([...kustomize.values()].filter((o) => o.kind === "Deployment").length, 3);
  // `helm uninstall` must never delete the CRDs (and with them every user's
  // HTTPScaledObject): k8s/crd carries Helm's keep policy, so both renders have it.
  for (const o of chart.values()) {
    if (o.kind !== "CustomResourceDefinition") continue;
    const annotations = (o.metadata as { annotations?: Record<string, string> }).annotations;
    assert.equal(annotations?.["helm.sh/resource-policy"], "keep", `${key(o)}: resource policy`);
  }
});

Deno.test("values outside the schema are refused with a message naming the value", async () => {
  const cases: { set: string; path: RegExp }[] = [
    { set: "operator.replicas=-1", path: /operator\/replicas/ },
    { set: "interceptor.replicas.min=-3", path: /interceptor\/replicas\/min/ },
    { set: "scaler.pullPolicy=Sometimes", path: /scaler\/pullPolicy/ },
    { set: "interceptor.readinessTimeout=20 seconds", path: /interceptor\/readinessTimeout/ },
    { set: "interceptor.proxy.port=70000", path: /interceptor\/proxy\/port/ },
    { set: "logging.operator.level=verbose", path: /logging\/operator\/level/ },
    { set: "logging.interceptor.format=xml", path: /logging\/interceptor\/format/ },
    { set: "logging.scaler.timeEncoding=unix", path: /logging\/scaler\/timeEncoding/ },
    { set: "scaler.tracing.protocol=http", path: /scaler\/tracing\/protocol/ },
  ];
  for (const c of cases) {
    const r = await helm(["template", "x", CHART, "--namespace", NAMESPACE, "--set", c.set]);
    assert.notEqual(r.code, 0, `--set ${c.set} was accepted`);
    assert.match(r.stderr, /values don't meet the specifications of the schema/, r.stderr);
    assert.match(
      r.stderr,
      c.path,
      `--set ${c.set}: the message should name the value:\n${r.stderr}`,
    );
  }
  // A mistake the schema cannot express is refused by the templates, also by name.
  const both = await helm([
    "template",
    "x",
    CHART,
    "--set",
    "interceptor.pdb.enabled=true,interceptor.pdb.minAvailable=1",
  ]);
  assert.notEqual(both.code, 0);
  assert.match(both.stderr, /interceptor\.pdb: set minAvailable or maxUnavailable, not both/);
});

Deno.test("non-default values render what they say", async () => {
  const objs = await render(
    "--set",
    [
      "interceptor.tls.enabled=true",
      "interceptor.tls.certSecret=my-certs",
      "interceptor.pdb.enabled=true",
      "interceptor.directPodRouting=false",
      "interceptor.requestTimeout=1m",
      "interceptor.pullPolicy=IfNotPresent",
      "interceptor.extraEnvs.KEDA_HTTP_LOG_REQUESTS=true",
      "interceptor.nodeSelector.disk=ssd",
      "images.tag=v1.2.3",
      "operator.replicas=0",
      "createNamespace=false",
      "crds.install=false",
      "logging.scaler.level=debug",
      "logging.interceptor.format=console",
      "logging.operator.timeEncoding=epoch",
      "logging.scaler.stackTracesEnabled=true",
      "scaler.tracing.enabled=true",
      "scaler.tracing.protocol=grpc",
      "scaler.metrics.otlp.enabled=true",
      "additionalLabels.team=web",
    ].join(","),
  );
  const keys = [...objs.keys()];
  assert.ok(!keys.some((k) => k.includes("operator")), `operator objects with replicas 0: ${keys}`);
  assert.ok(!keys.some((k) => k.startsWith("Namespace/")), "Namespace with createNamespace=false");
  assert.ok(!keys.some((k) => k.startsWith("CustomResourceDefinition/")), "CRDs not installed");
  assert.ok(objs.has(`PodDisruptionBudget/${NAMESPACE}/keda-add-ons-http-interceptor`));

  const ic = container(objs, "keda-add-ons-http-interceptor");
  const env = envOf(ic);
  assert.equal(env.KEDA_HTTP_PROXY_TLS_ENABLED, "true");
  assert.equal(env.KEDA_HTTP_PROXY_TLS_CERT_PATH, "/certs/tls.crt");
  assert.equal(env.KEDA_HTTP_DIRECT_POD_ROUTING, "false");
  assert.equal(env.KEDA_HTTP_REQUEST_TIMEOUT, "1m");
  assert.equal(env.KEDA_HTTP_LOG_REQUESTS, "true");
  assert.equal(ic.image, "keda-http-deno/interceptor:v1.2.3");
  assert.equal(ic.imagePullPolicy, "IfNotPresent");
  assert.ok(
    (ic.ports as { name: string }[]).some((p) => p.name === "proxy-tls"),
    "TLS container port",
  );
  // deno-lint-ignore no-explicit-any
  const pod = (objs.get(`Deployment/${NAMESPACE}/keda-add-ons-http-interceptor`)!.spec as any)
    .template;
  assert.deepEqual(pod.spec.nodeSelector, { disk: "ssd" });
  assert.equal(pod.metadata.labels.team, "web");
  assert.ok(
    // deno-lint-ignore no-explicit-any
    pod.spec.volumes.some((v: any) => v.name === "certs" && v.secret.secretName === "my-certs"),
  );
  const proxy = objs.get(`Service/${NAMESPACE}/keda-add-ons-http-interceptor-proxy`)!;
  // deno-lint-ignore no-explicit-any
  assert.deepEqual((proxy.spec as any).ports.map((p: any) => p.name), ["proxy", "proxy-tls"]);
  assert.equal(proxy.metadata.labels?.team, "web");

  assert.equal(envOf(container(objs, "keda-add-ons-http-scaler")).LOG_LEVEL, "debug");
  assert.equal(env.LOG_FORMAT, "console", "the Go chart's logging.interceptor.format");
  assert.equal(envOf(container(objs, "keda-add-ons-http-scaler")).LOG_FORMAT, undefined);

  const scaler = container(objs, "keda-add-ons-http-scaler");
  assert.equal(envOf(scaler).OTEL_EXPORTER_OTLP_TRACES_ENABLED, "true", "scaler.tracing.enabled");
  assert.equal(envOf(scaler).OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "grpc");
  assert.equal(envOf(scaler).OTEL_EXPORTER_OTLP_METRICS_ENABLED, "true", "scaler.metrics.otlp");
  assert.equal(env.OTEL_EXPORTER_OTLP_METRICS_ENABLED, undefined, "interceptor's stays off");
  assert.equal(env.OTEL_EXPORTER_OTLP_TRACES_ENABLED, undefined, "interceptor.tracing stays off");
  // stackTracesEnabled is accepted and changes nothing; no time encoding, no args.
  assert.equal(scaler.args, undefined);
});

Deno.test("logging.<program>.timeEncoding becomes the zap flag the programs read", async () => {
  const objs = await render("--set", "logging.interceptor.timeEncoding=rfc3339nano");
  assert.deepEqual(container(objs, "keda-add-ons-http-interceptor").args, [
    "--zap-time-encoding=rfc3339nano",
  ]);
  assert.equal(container(objs, "keda-add-ons-http-scaler").args, undefined);
  // The flag is one the interceptor accepts, with that meaning.
  const parsed = parseInterceptorFlags(["--zap-time-encoding=rfc3339nano"]);
  assert.equal(parsed.log.timeEncoding, "rfc3339nano");
});

Deno.test("the Go chart's deprecated snake_case TLS names still apply", async () => {
  const objs = await render(
    "--set",
    "interceptor.tls.enabled=true,interceptor.tls.cert_path=/c/a.crt,interceptor.tls.skip_verify=true",
  );
  const env = envOf(container(objs, "keda-add-ons-http-interceptor"));
  assert.equal(env.KEDA_HTTP_PROXY_TLS_CERT_PATH, "/c/a.crt");
  assert.equal(env.KEDA_HTTP_PROXY_TLS_SKIP_VERIFY, "true");
});

globalThis.addEventListener("unload", () => {
  if (helmHome) Deno.removeSync(helmHome, { recursive: true });
});
