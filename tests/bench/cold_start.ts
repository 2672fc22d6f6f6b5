/**
 * `deno task bench:coldstart [--trials N] [--default-probes]`: cold start
 * decomposed, on the local cluster (or KEDAHTTP_TEST_KUBECONFIG's, or an
 * existing one) with the real KEDA and our system deployed from k8s/.
 *
 * Each trial waits until the app is at 0 replicas with no pods and no
 * endpoints, sends one request through the interceptor Service and records
 * when each step was first seen (tests/e2e/cold_start_timeline.ts):
 *
 *   sent           the client wrote the request
 *   held           an interceptor's /queue/watch stream shows the route in flight
 *   active         the scaler pushes true on StreamIsActive — observed on a
 *                  second stream this bench opens with KEDA's exact
 *                  ScaledObjectRef (the scaler pushes to every stream of a
 *                  route at the same moment)
 *   scaled         a watch sees the Deployment's spec.replicas >= 1 (KEDA)
 *   podStarted     a watch sees a pod of the app with a running container
 *                  (ReplicaSet, scheduler, node: the process was started)
 *   listening      the demo app listens (its own clock, reported in its answer)
 *   response       the client read the response head
 *   podReady       a watch sees a pod of the app turn Ready (the kubelet's probe passed)
 *   endpointReady  a watch sees the app's EndpointSlice list a ready endpoint
 *
 * Every time is this machine's clock, taken when the event reached this
 * process, so watch delivery (a few ms) is inside the stage it ends. The
 * table gives p50/p99/min/max per stage; the last line reads
 * `cold start p50: <ms> ms, p99: <ms> ms`.
 *
 * --default-probes: two apps as most are written, Kubernetes' default probe
 * timings (periodSeconds 10) and 500 ms from process start to listening, one
 * with probe-driven forwarding and one opted out (annotation
 * http.keda.sh/probe-starting-pods: "false"), their trials alternating in the
 * same run. A table for each, then the line
 * `default probes: cold start p50 <ms> ms, app start p50 <ms> ms, waiting for the kubelet p50 <ms> ms`:
 * the cold start with our probing; app start = request sent to the app
 * listening (the soonest any cold start could answer); the kubelet's wait =
 * app listening to the response without our probing.
 */
import { ExternalScalerClient } from "../../scaler/external_scaler.ts";
import { Informer, type KubeObject } from "../../shared/kube.ts";
import { sleep } from "../../shared/lifetime.ts";
import { watchQueueCounts } from "../../shared/queue_counts.ts";
import { PROBE_STARTING_PODS_ANNOTATION } from "../../shared/routing_table.ts";
import type { AppSpec } from "../e2e/apps.ts";
import {
  decompose,
  type Decomposition,
  formatReport,
  type Marks,
  p50Of,
  STAGES,
} from "../e2e/cold_start_timeline.ts";
import { E2E, e2eLogger } from "../e2e/harness.ts";
import { httpGet, type HttpTarget } from "../e2e/http_client.ts";

const log = e2eLogger("bench-coldstart");
/** The stage from the app listening to the answer: without probing, the wait for the kubelet. */
const RESPONSE_STAGE = STAGES.find((s) => s.from === "listening" && s.to === "response")!.name;

function flag(name: string, fallback: number): number {
  const i = Deno.args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return fallback;
  const raw = Deno.args[i]!.includes("=") ? Deno.args[i]!.split("=")[1] : Deno.args[i + 1];
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`--${name} must be a whole number of 1 or more, got ${raw}`);
  }
  return n;
}

/** Epoch ms with sub-ms resolution (performance.now() is monotonic and finer than Date.now()). */
const now = () => performance.timeOrigin + performance.now();

interface PodLike extends KubeObject {
  status?: {
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{ state?: { running?: unknown } }>;
  };
}
interface SliceLike extends KubeObject {
  endpoints?: Array<{ conditions?: { ready?: boolean } }>;
}
interface DeploymentLike extends KubeObject {
  spec?: { replicas?: number };
  status?: { replicas?: number };
}

/** One benchmarked app: its watches, and the marks of the trial running now. */
class Bench {
  readonly key: string;
  readonly host: string;
  readonly trials: Decomposition[] = [];
  marks: Marks | undefined;
  active = false;
  readonly #deployments: Informer<DeploymentLike>;
  readonly #pods: Informer<PodLike>;
  readonly #slices: Informer<SliceLike>;

  constructor(env: E2E, readonly ns: string, readonly name: string) {
    this.key = `${ns}/${name}`;
    this.host = `${name}.e2e.test`;
    this.#deployments = new Informer<DeploymentLike>(env.client, {
      path: `/apis/apps/v1/namespaces/${ns}/deployments`,
      fieldSelector: `metadata.name=${name}`,
      log,
    });
    this.#deployments.subscribe((e) => {
      if (e.object && (e.object.spec?.replicas ?? 0) >= 1) this.mark("scaled");
    });
    this.#pods = new Informer<PodLike>(env.client, {
      path: `/api/v1/namespaces/${ns}/pods`,
      labelSelector: `app=${name}`,
      log,
    });
    this.#pods.subscribe((e) => {
      if (e.type === "DELETED" || !e.object) return;
      const st = e.object.status;
      if (st?.containerStatuses?.some((c) => c.state?.running)) this.mark("podStarted");
      if (st?.conditions?.some((c) => c.type === "Ready" && c.status === "True")) {
        this.mark("podReady");
      }
    });
    this.#slices = new Informer<SliceLike>(env.client, {
      path: `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`,
      labelSelector: `kubernetes.io/service-name=${name}`,
      log,
    });
    this.#slices.subscribe((e) => {
      if (e.type !== "DELETED" && e.object?.endpoints?.some((x) => x.conditions?.ready)) {
        this.mark("endpointReady");
      }
    });
  }

  mark(m: keyof Marks, at = now()): void {
    if (this.marks && this.marks[m] === undefined) this.marks[m] = at;
  }

  run(signal: AbortSignal): Promise<unknown>[] {
    return [this.#deployments, this.#pods, this.#slices].map((inf) => inf.run(signal));
  }

  get synced(): Promise<unknown> {
    return Promise.all([this.#deployments.synced, this.#pods.synced, this.#slices.synced]);
  }

  atZero(): boolean {
    const d = this.#deployments.store.get(this.key);
    return (d?.spec?.replicas ?? 0) === 0 && (d?.status?.replicas ?? 0) === 0 &&
      this.#pods.store.size === 0 &&
      ![...this.#slices.store.values()].some((s) => (s.endpoints ?? []).length > 0) &&
      !this.active;
  }

  /** A StreamIsActive stream like KEDA's: the moment the scaler says true. */
  async watchActive(scaler: ExternalScalerClient, signal: AbortSignal): Promise<void> {
    const ref = {
      name: this.name,
      namespace: this.ns,
      scalerMetadata: { httpScaledObject: this.name },
    };
    while (!signal.aborted) {
      try {
        for await (const result of scaler.streamIsActive(ref, { signal })) {
          this.active = result;
          if (result) this.mark("active");
        }
      } catch (e) {
        if (!signal.aborted) log.warn("StreamIsActive ended; reopening", { error: e });
      }
      await sleep(500, signal);
    }
  }

  async trial(env: E2E, proxy: HttpTarget, n: number): Promise<void> {
    await env.cluster.waitFor(() => this.atZero(), {
      what: `${this.name} at 0 replicas with no pods, no endpoints and the scaler inactive`,
      timeoutMs: 120_000,
      intervalMs: 100,
    });
    // Let late events of the scale-in settle before the clock starts.
    await sleep(1_000);
    const marks: Marks = this.marks = {};
    const perfOffset = performance.timeOrigin;
    const r = await httpGet(proxy, { host: this.host, path: `/trial/${n}`, timeoutMs: 120_000 });
    marks.sent = perfOffset + r.sentAt;
    marks.response = perfOffset + r.headAt;
    if (r.status !== 200 || r.headers.get("x-keda-http-cold-start") !== "true") {
      throw new Error(
        `${this.name} trial ${n}: expected a cold-start 200, got ${r.status} cold-start=${
          r.headers.get("x-keda-http-cold-start")
        }: ${r.body.slice(0, 200)}`,
      );
    }
    const listeningAt = (JSON.parse(r.body) as { listeningAt?: number }).listeningAt ?? 0;
    if (listeningAt > 0) marks.listening = listeningAt;
    // The last steps may come after the response: with our probing the
    // kubelet's Ready is up to a probe period (10 s) later, unless KEDA scales
    // the idle app in first (then those stages are left out of this trial).
    await env.cluster.waitFor(
      () => marks.endpointReady !== undefined || this.#pods.store.size === 0,
      {
        what: `${this.name}'s EndpointSlice to list a ready endpoint, or the app to scale in`,
        timeoutMs: 60_000,
        intervalMs: 50,
      },
    );
    await sleep(200);
    const d = decompose(marks);
    this.trials.push(d);
    log.info("trial", {
      app: this.name,
      trial: n,
      totalMs: Math.round(d.totalMs ?? NaN),
      stages: Object.fromEntries(
        Object.entries(d.stages).map(([k, v]) => [k, v === undefined ? null : Math.round(v)]),
      ),
      ...(d.outOfOrder.length ? { outOfOrder: d.outOfOrder } : {}),
    });
    this.marks = undefined;
  }
}

const ms = (v: number) => (Number.isNaN(v) ? "-" : String(Math.round(v)));

async function main(): Promise<void> {
  const defaultProbes = Deno.args.includes("--default-probes");
  // A default-probes trial waits for the kubelet's second probe (10 s) and a scale-in.
  const trials = flag("trials", defaultProbes ? 5 : 10);
  await using env = await E2E.start({ log });
  const ns = await env.namespace("bench-cold");
  // scaledownPeriod 1: between trials the wait is KEDA's 15 s poll, not a cooldown.
  const apps: AppSpec[] = defaultProbes
    ? [
      { name: "probed", defaultProbes: true, env: { LISTEN_DELAY_MS: "500" } },
      {
        name: "kubelet",
        defaultProbes: true,
        env: { LISTEN_DELAY_MS: "500" },
        annotations: { [PROBE_STARTING_PODS_ANNOTATION]: "false" },
      },
    ]
    : [{ name: "coldbench" }];
  await env.deploy(
    ns,
    ...apps.map((a) => ({ ...a, hosts: [`${a.name}.e2e.test`], scaledownPeriod: 1 })),
  );
  await env.waitRoutes(apps.map((a) => `${ns}/${a.name}`));
  const benches = apps.map((a) => new Bench(env, ns, a.name));
  const byKey = new Map(benches.map((b) => [b.key, b]));

  const stop = new AbortController();
  const background: Promise<unknown>[] = [];
  for (const b of benches) background.push(...b.run(stop.signal));
  await Promise.all(benches.map((b) => b.synced));

  // Every interceptor's /queue/watch: the first line with the route in flight.
  for (const i of await env.interceptors()) {
    background.push((async () => {
      while (!stop.signal.aborted) {
        await watchQueueCounts(`http://${i.admin.hostname}:${i.admin.port}`, (counts) => {
          for (const [key, c] of Object.entries(counts)) {
            if ((c?.Concurrency ?? 0) > 0) byKey.get(key)?.mark("held");
          }
        }, { signal: stop.signal }).catch(() => {});
        await sleep(200, stop.signal);
      }
    })());
  }
  const scaler = new ExternalScalerClient(await env.scalerGrpc());
  for (const b of benches) background.push(b.watchActive(scaler, stop.signal));

  const proxy = await env.proxy();
  try {
    for (let n = 1; n <= trials; n++) {
      for (const b of benches) await b.trial(env, proxy, n);
    }
  } finally {
    stop.abort();
    scaler.close();
    await Promise.allSettled(background);
  }
  const out: string[] = [];
  if (!defaultProbes) {
    out.push(formatReport(benches[0]!.trials));
  } else {
    const [probed, kubelet] = benches as [Bench, Bench];
    out.push(
      "default probe timings (periodSeconds 10), app listening 500 ms after its start",
      "",
      "with probe-driven forwarding:",
      formatReport(probed.trials),
      "",
      `without (${PROBE_STARTING_PODS_ANNOTATION}: "false"):`,
      formatReport(kubelet.trials),
      "",
      `default probes: cold start p50 ${ms(p50Of(probed.trials, (d) => d.totalMs))} ms, ` +
        `app start p50 ${ms(p50Of(probed.trials, (d) => d.untilListeningMs))} ms, ` +
        `waiting for the kubelet p50 ${
          ms(p50Of(kubelet.trials, (d) => d.stages[RESPONSE_STAGE]))
        } ms`,
    );
  }
  Deno.stdout.writeSync(new TextEncoder().encode(out.join("\n") + "\n"));
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    log.error("cold start benchmark failed", { error: e });
    Deno.exit(1);
  }
}
