/**
 * Demo apps as a user of the Go add-on writes them: a Deployment at 0
 * replicas, its Service, and an HTTPScaledObject in the shape of the add-on's
 * documentation (YAML text, applied as is), or, with the current API, an
 * InterceptorRoute and the user's own KEDA ScaledObject. Plus what the cases observe of an
 * app: its Deployment over time (a watch, so no change is missed), and a
 * diagnosis for failure messages.
 */
import { Informer, type KubeClient, type KubeObject } from "../../shared/kube.ts";
import type { Logger } from "../../shared/log.ts";
import { DEMO_APP_IMAGE } from "../cluster/images.ts";

export const DEMO_IMAGE = Deno.env.get("KEDAHTTP_TEST_DEMO_IMAGE") ?? DEMO_APP_IMAGE;

export interface AppSpec {
  name: string;
  hosts?: string[];
  pathPrefixes?: string[];
  headers?: Array<{ name: string; value?: string }>;
  min?: number;
  max?: number;
  scaledownPeriod?: number;
  scalingMetric?:
    | { concurrency: { targetValue: number } }
    | { requestRate: { targetValue: number; window: string; granularity: string } };
  /** The Service the HTTPScaledObject names (default: the app's own). */
  service?: string;
  /** Create the Service (default true). */
  createService?: boolean;
  /** RESPONSE_TEXT of the demo app: tells apps apart in answers. */
  text?: string;
  /** More env of the demo app (e.g. LISTEN_DELAY_MS). */
  env?: Record<string, string>;
  /**
   * The readiness probe as most apps write it, Kubernetes' defaults (period
   * 10 s, failureThreshold 3); unset: period 1 s, the suite's fast probe.
   */
  defaultProbes?: boolean;
  /** Annotations of the HTTPScaledObject (e.g. http.keda.sh/probe-starting-pods). */
  annotations?: Record<string, string>;
}

function yamlList(items: string[] | undefined, indent: string): string {
  return (items ?? []).map((i) => `${indent}- ${JSON.stringify(i)}`).join("\n");
}

/** The HTTPScaledObject alone (for updates). */
export function httpScaledObjectYaml(namespace: string, app: AppSpec): string {
  const lines = [
    "apiVersion: http.keda.sh/v1alpha1",
    "kind: HTTPScaledObject",
    "metadata:",
    `  name: ${app.name}`,
    `  namespace: ${namespace}`,
  ];
  if (app.annotations && Object.keys(app.annotations).length) {
    lines.push("  annotations:");
    for (const [k, v] of Object.entries(app.annotations)) {
      lines.push(`    ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
    }
  }
  lines.push("spec:");
  if (app.hosts?.length) lines.push("  hosts:", yamlList(app.hosts, "    "));
  if (app.pathPrefixes?.length) lines.push("  pathPrefixes:", yamlList(app.pathPrefixes, "    "));
  if (app.headers?.length) {
    lines.push("  headers:");
    for (const h of app.headers) {
      lines.push(`    - name: ${JSON.stringify(h.name)}`);
      if (h.value !== undefined) lines.push(`      value: ${JSON.stringify(h.value)}`);
    }
  }
  lines.push(
    "  scaleTargetRef:",
    `    name: ${app.name}`,
    "    kind: Deployment",
    "    apiVersion: apps/v1",
    `    service: ${app.service ?? app.name}`,
    "    port: 8080",
    "  replicas:",
    `    min: ${app.min ?? 0}`,
    `    max: ${app.max ?? 10}`,
    `  scaledownPeriod: ${app.scaledownPeriod ?? 5}`,
  );
  const m = app.scalingMetric;
  if (m && "concurrency" in m) {
    lines.push(
      "  scalingMetric:",
      "    concurrency:",
      `      targetValue: ${m.concurrency.targetValue}`,
    );
  } else if (m && "requestRate" in m) {
    lines.push(
      "  scalingMetric:",
      "    requestRate:",
      `      granularity: ${m.requestRate.granularity}`,
      `      targetValue: ${m.requestRate.targetValue}`,
      `      window: ${m.requestRate.window}`,
    );
  }
  return lines.join("\n") + "\n";
}

/** An InterceptorRoute (http.keda.sh/v1beta1) as the Go add-on's docs write it. */
export interface RouteSpec {
  name: string;
  /** The target Service (default: the route's name), port 8080. */
  service?: string;
  rules?: Array<{
    hosts?: string[];
    paths?: string[];
    headers?: Array<{ name: string; value?: string }>;
  }>;
  /** At least one; both: the scaler reports both metrics. */
  scalingMetric: {
    concurrency?: { targetValue: number };
    requestRate?: { targetValue: number; window?: string; granularity?: string };
  };
}

/** The InterceptorRoute alone. */
export function interceptorRouteYaml(namespace: string, route: RouteSpec): string {
  const lines = [
    "apiVersion: http.keda.sh/v1beta1",
    "kind: InterceptorRoute",
    "metadata:",
    `  name: ${route.name}`,
    `  namespace: ${namespace}`,
    "spec:",
    "  target:",
    `    service: ${route.service ?? route.name}`,
    "    port: 8080",
  ];
  if (route.rules?.length) {
    lines.push("  rules:");
    for (const r of route.rules) {
      const rule: string[] = [];
      if (r.hosts?.length) rule.push("hosts:", ...r.hosts.map((h) => `  - ${JSON.stringify(h)}`));
      if (r.paths?.length) {
        rule.push("paths:", ...r.paths.map((p) => `  - value: ${JSON.stringify(p)}`));
      }
      if (r.headers?.length) {
        rule.push("headers:");
        for (const h of r.headers) {
          rule.push(`  - name: ${JSON.stringify(h.name)}`);
          if (h.value !== undefined) rule.push(`    value: ${JSON.stringify(h.value)}`);
        }
      }
      if (!rule.length) rule.push("{}");
      // Each rule is a list item: its first line after "- ", the rest under it.
      rule.forEach((l, i) => lines.push(`${i === 0 ? "    - " : "      "}${l}`));
    }
  }
  lines.push("  scalingMetric:");
  const { concurrency, requestRate } = route.scalingMetric;
  if (concurrency) lines.push("    concurrency:", `      targetValue: ${concurrency.targetValue}`);
  if (requestRate) {
    lines.push("    requestRate:", `      targetValue: ${requestRate.targetValue}`);
    if (requestRate.window) lines.push(`      window: ${requestRate.window}`);
    if (requestRate.granularity) lines.push(`      granularity: ${requestRate.granularity}`);
  }
  return lines.join("\n") + "\n";
}

/** A KEDA ScaledObject the user writes for an InterceptorRoute (the operator writes none). */
export interface ScaledObjectSpec {
  name: string;
  /** The Deployment it scales (default: the ScaledObject's name). */
  deployment?: string;
  /** host:port of our scaler, as KEDA dials it (`<service>.<namespace>:9090`). */
  scalerAddress: string;
  /** The trigger's metadata `interceptorRoute` (default: the ScaledObject's name). */
  interceptorRoute?: string;
  min?: number;
  max?: number;
  cooldownPeriod?: number;
  /**
   * Unset: KEDA's default, 30 s. KEDA 2.20 ignores a push scaler's `false`
   * (pkg/scaling/scale_handler.go), so scaling to 0 happens at a poll: up to
   * pollingInterval after cooldownPeriod has passed.
   */
  pollingInterval?: number;
}

/** The ScaledObject alone, in the shape of the Go add-on's InterceptorRoute docs. */
export function scaledObjectYaml(namespace: string, so: ScaledObjectSpec): string {
  return [
    "apiVersion: keda.sh/v1alpha1",
    "kind: ScaledObject",
    "metadata:",
    `  name: ${so.name}`,
    `  namespace: ${namespace}`,
    "spec:",
    "  scaleTargetRef:",
    `    name: ${so.deployment ?? so.name}`,
    `  minReplicaCount: ${so.min ?? 0}`,
    `  maxReplicaCount: ${so.max ?? 10}`,
    `  cooldownPeriod: ${so.cooldownPeriod ?? 5}`,
    ...(so.pollingInterval === undefined ? [] : [`  pollingInterval: ${so.pollingInterval}`]),
    "  triggers:",
    "    - type: external-push",
    "      metadata:",
    `        scalerAddress: ${JSON.stringify(so.scalerAddress)}`,
    `        interceptorRoute: ${JSON.stringify(so.interceptorRoute ?? so.name)}`,
  ].join("\n") + "\n";
}

/** Deployment (at 0) and, unless `createService` is false, its Service. */
export function workloadYaml(namespace: string, app: AppSpec, image = DEMO_IMAGE): string {
  const docs = [
    `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${app.name}
  namespace: ${namespace}
  labels:
    app: ${app.name}
spec:
  replicas: 0
  selector:
    matchLabels:
      app: ${app.name}
  template:
    metadata:
      labels:
        app: ${app.name}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: ${image}
          ports:
            - containerPort: 8080
              name: http
          env:
            - name: RESPONSE_TEXT
              value: ${JSON.stringify(app.text ?? app.name)}
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
${
      Object.entries(app.env ?? {}).map(([k, v]) =>
        `            - name: ${JSON.stringify(k)}\n              value: ${JSON.stringify(v)}\n`
      ).join("")
    }          readinessProbe:
            httpGet:
              path: /healthz
              port: 8080
${app.defaultProbes ? "" : "            periodSeconds: 1\n            failureThreshold: 1\n"}`,
  ];
  if (app.createService ?? true) {
    docs.push(`apiVersion: v1
kind: Service
metadata:
  name: ${app.name}
  namespace: ${namespace}
spec:
  selector:
    app: ${app.name}
  ports:
    - name: http
      port: 8080
      targetPort: http
`);
  }
  return docs.join("---\n");
}

/** Deployment + Service + HTTPScaledObject, as one YAML stream. */
export function appYaml(namespace: string, app: AppSpec, image = DEMO_IMAGE): string {
  return `${workloadYaml(namespace, app, image)}---\n${httpScaledObjectYaml(namespace, app)}`;
}

interface DeploymentObject extends KubeObject {
  spec?: { replicas?: number };
  status?: { readyReplicas?: number; replicas?: number; availableReplicas?: number };
}

export interface ReplicaSample {
  at: number;
  /** spec.replicas: what KEDA / the HPA asked for. */
  desired: number;
  ready: number;
  /** status.replicas: pods that exist (terminating ones excluded). */
  current: number;
}

/** A Deployment's replica counts over time, from a watch. */
export class DeploymentWatch implements AsyncDisposable {
  readonly history: ReplicaSample[] = [];
  readonly #informer: Informer<DeploymentObject>;
  readonly #stop = new AbortController();
  readonly #done: Promise<void>;
  readonly #waiters = new Set<() => void>();

  constructor(client: KubeClient, readonly namespace: string, readonly name: string, log: Logger) {
    this.#informer = new Informer<DeploymentObject>(client, {
      path: `/apis/apps/v1/namespaces/${namespace}/deployments`,
      fieldSelector: `metadata.name=${name}`,
      log,
    });
    this.#informer.subscribe((e) => {
      if (e.type !== "ADDED" && e.type !== "MODIFIED") return;
      const d = e.object;
      const sample = {
        at: Date.now(),
        desired: d.spec?.replicas ?? 0,
        ready: d.status?.readyReplicas ?? 0,
        current: d.status?.replicas ?? 0,
      };
      const last = this.history.at(-1);
      if (
        !last || last.desired !== sample.desired || last.ready !== sample.ready ||
        last.current !== sample.current
      ) {
        this.history.push(sample);
      }
      for (const w of [...this.#waiters]) w();
    });
    this.#done = this.#informer.run(this.#stop.signal);
  }

  get synced(): Promise<void> {
    return this.#informer.synced;
  }

  get now(): ReplicaSample | undefined {
    return this.history.at(-1);
  }

  /**
   * Resolves with the first sample (at or after `since`, default now) that
   * satisfies `ok`; rejects after timeoutMs with `what` and the history.
   */
  async until(
    what: string,
    ok: (s: ReplicaSample) => boolean,
    options: { timeoutMs: number; since?: number; signal?: AbortSignal },
  ): Promise<ReplicaSample> {
    await this.synced;
    const since = options.since ?? Date.now();
    const find = () => {
      const first = this.history.find((s) => s.at >= since && ok(s));
      if (first) return first;
      // The state at `since` counts too (it may have changed before).
      const before = [...this.history].reverse().find((s) => s.at < since);
      return before && ok(before) ? { ...before, at: since } : undefined;
    };
    const found = find();
    if (found) return found;
    return await new Promise<ReplicaSample>((resolve, reject) => {
      const check = () => {
        const f = find();
        if (f) finish(() => resolve(f));
      };
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new Error(
                `timed out after ${options.timeoutMs} ms waiting for ${what}; ` +
                  `Deployment ${this.namespace}/${this.name} history: ${
                    this.describeHistory(since)
                  }`,
              ),
            )
          ),
        options.timeoutMs,
      );
      const onAbort = () => finish(() => reject(options.signal?.reason));
      const finish = (f: () => void) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        options.signal?.removeEventListener("abort", onAbort);
        f();
      };
      this.#waiters.add(check);
      options.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Samples since `since`: "+0.0s desired 0 ready 0, +1.2s desired 1 …". */
  describeHistory(since = 0): string {
    const start = this.history.find((s) => s.at >= since)?.at ?? since;
    const before = [...this.history].reverse().find((s) => s.at < since);
    const shown = [...(before ? [before] : []), ...this.history.filter((s) => s.at >= since)];
    return shown.map((s) =>
      `${
        ((s.at - start) / 1000).toFixed(1)
      }s desired ${s.desired} ready ${s.ready} current ${s.current}`
    ).join(", ") || "(no samples)";
  }

  /** Largest desired replica count from `since` on (the state at `since` included). */
  maxDesiredSince(since: number): number {
    return Math.max(...this.#window(since).map((s) => s.desired));
  }

  /** Smallest desired replica count between `since` and `until` (the state at `since` included). */
  minDesiredBetween(since: number, until = Infinity): number {
    return Math.min(...this.#window(since, until).map((s) => s.desired));
  }

  #window(since: number, until = Infinity): ReplicaSample[] {
    const before = [...this.history].reverse().find((s) => s.at <= since);
    return [
      ...(before ? [before] : []),
      ...this.history.filter((s) => s.at > since && s.at <= until),
    ];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#stop.abort();
    await this.#done.catch(() => {});
  }
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

/** The app's Deployment, HPA, ScaledObject and HTTPScaledObject in a few lines. */
export async function diagnoseApp(
  client: KubeClient,
  namespace: string,
  name: string,
): Promise<string> {
  const get = <T>(path: string) =>
    client.get<T>(path).catch((e) => ({ error: (e as Error).message }) as T & { error: string });
  const conds = (c?: Condition[]) =>
    (c ?? []).map((x) =>
      `${x.type}=${x.status}${x.reason ? `(${x.reason}: ${x.message ?? ""})` : ""}`
    )
      .join(" ") || "no conditions";
  const [d, hpa, so, httpso, route] = await Promise.all([
    get<DeploymentObject & { error?: string }>(
      `/apis/apps/v1/namespaces/${namespace}/deployments/${name}`,
    ),
    get<
      {
        error?: string;
        spec?: { minReplicas?: number; maxReplicas?: number };
        status?: {
          currentReplicas?: number;
          desiredReplicas?: number;
          currentMetrics?: unknown;
          conditions?: Condition[];
        };
      }
    >(
      `/apis/autoscaling/v2/namespaces/${namespace}/horizontalpodautoscalers/keda-hpa-${name}`,
    ),
    get<
      {
        error?: string;
        spec?: { cooldownPeriod?: number };
        status?: { conditions?: Condition[]; lastActiveTime?: string };
      }
    >(
      `/apis/keda.sh/v1alpha1/namespaces/${namespace}/scaledobjects/${name}`,
    ),
    get<{ error?: string; status?: { conditions?: Condition[] } }>(
      `/apis/http.keda.sh/v1alpha1/namespaces/${namespace}/httpscaledobjects/${name}`,
    ),
    get<{ error?: string; status?: { conditions?: Condition[] } }>(
      `/apis/http.keda.sh/v1beta1/namespaces/${namespace}/interceptorroutes/${name}`,
    ),
  ]);
  return [
    `Deployment ${namespace}/${name}: ${
      d.error ?? `replicas ${d.spec?.replicas} ready ${d.status?.readyReplicas ?? 0}`
    }`,
    `HPA keda-hpa-${name}: ${
      hpa.error ??
        `min ${hpa.spec?.minReplicas} max ${hpa.spec?.maxReplicas} current ${hpa.status?.currentReplicas} desired ${hpa.status?.desiredReplicas} metrics ${
          JSON.stringify(hpa.status?.currentMetrics)
        } ${conds(hpa.status?.conditions)}`
    }`,
    `ScaledObject: ${
      so.error ?? `${conds(so.status?.conditions)} lastActiveTime ${so.status?.lastActiveTime}`
    }`,
    `HTTPScaledObject: ${httpso.error ?? conds(httpso.status?.conditions)}`,
    `InterceptorRoute: ${route.error ?? conds(route.status?.conditions)}`,
  ].join("\n");
}
