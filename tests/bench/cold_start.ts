/**
 * `deno task bench:coldstart [--trials N]`: cold start decomposed, on the
 * local cluster (or KEDAHTTP_TEST_KUBECONFIG's, or an existing one) with the
 * real KEDA and our system deployed from k8s/.
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
 *   podReady       a watch sees a pod of the app turn Ready (the app listens
 *                  and its readiness probe, period 1 s, passed)
 *   endpointReady  a watch sees the app's EndpointSlice list a ready endpoint
 *                  (what wakes the interceptor's held request)
 *   response       the client read the response head
 *
 * Every time is this machine's clock, taken when the event reached this
 * process, so watch delivery (a few ms) is inside the stage it ends. The
 * table gives p50/p99/min/max per stage; the last line reads
 * `cold start p50: <ms> ms, p99: <ms> ms`.
 */
import { ExternalScalerClient } from "../../scaler/external_scaler.ts";
import { Informer, type KubeObject } from "../../shared/kube.ts";
import { sleep } from "../../shared/lifetime.ts";
import { watchQueueCounts } from "../../shared/queue_counts.ts";
import {
  decompose,
  type Decomposition,
  formatReport,
  type Marks,
} from "../e2e/cold_start_timeline.ts";
import { E2E, e2eLogger } from "../e2e/harness.ts";
import { httpGet } from "../e2e/http_client.ts";

const log = e2eLogger("bench-coldstart");

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

async function main(): Promise<void> {
  const trials = flag("trials", 10);
  const APP = "coldbench";
  const HOST = "coldbench.e2e.test";
  await using env = await E2E.start({ log });
  const ns = await env.namespace("bench-cold");
  // scaledownPeriod 1: between trials the wait is KEDA's 15 s poll, not a cooldown.
  await env.deploy(ns, { name: APP, hosts: [HOST], scaledownPeriod: 1 });
  await env.waitRoutes([`${ns}/${APP}`]);
  const key = `${ns}/${APP}`;

  let marks: Marks | undefined;
  const mark = (m: keyof Marks, at = now()) => {
    if (marks && marks[m] === undefined) marks[m] = at;
  };
  const stop = new AbortController();
  const background: Promise<unknown>[] = [];

  const deployments = new Informer<DeploymentLike>(env.client, {
    path: `/apis/apps/v1/namespaces/${ns}/deployments`,
    fieldSelector: `metadata.name=${APP}`,
    log,
  });
  deployments.subscribe((e) => {
    if (e.object && (e.object.spec?.replicas ?? 0) >= 1) mark("scaled");
  });
  const pods = new Informer<PodLike>(env.client, {
    path: `/api/v1/namespaces/${ns}/pods`,
    labelSelector: `app=${APP}`,
    log,
  });
  pods.subscribe((e) => {
    if (e.type === "DELETED" || !e.object) return;
    const st = e.object.status;
    if (st?.containerStatuses?.some((c) => c.state?.running)) mark("podStarted");
    if (st?.conditions?.some((c) => c.type === "Ready" && c.status === "True")) mark("podReady");
  });
  const slices = new Informer<SliceLike>(env.client, {
    path: `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`,
    labelSelector: `kubernetes.io/service-name=${APP}`,
    log,
  });
  slices.subscribe((e) => {
    if (e.type !== "DELETED" && e.object?.endpoints?.some((x) => x.conditions?.ready)) {
      mark("endpointReady");
    }
  });
  for (const inf of [deployments, pods, slices]) background.push(inf.run(stop.signal));
  await Promise.all([deployments.synced, pods.synced, slices.synced]);

  // Every interceptor's /queue/watch: the first line with the route in flight.
  for (const i of await env.interceptors()) {
    background.push((async () => {
      while (!stop.signal.aborted) {
        await watchQueueCounts(`http://${i.admin.hostname}:${i.admin.port}`, (counts) => {
          if ((counts[key]?.Concurrency ?? 0) > 0) mark("held");
        }, { signal: stop.signal }).catch(() => {});
        await sleep(200, stop.signal);
      }
    })());
  }
  // A StreamIsActive stream like KEDA's: the moment the scaler says true.
  const scaler = new ExternalScalerClient(await env.scalerGrpc());
  let active = false;
  background.push((async () => {
    const ref = { name: APP, namespace: ns, scalerMetadata: { httpScaledObject: APP } };
    while (!stop.signal.aborted) {
      try {
        for await (const result of scaler.streamIsActive(ref, { signal: stop.signal })) {
          active = result;
          if (result) mark("active");
        }
      } catch (e) {
        if (!stop.signal.aborted) log.warn("StreamIsActive ended; reopening", { error: e });
      }
      await sleep(500, stop.signal);
    }
  })());

  const atZero = () => {
    const d = deployments.store.get(`${ns}/${APP}`);
    return (d?.spec?.replicas ?? 0) === 0 && (d?.status?.replicas ?? 0) === 0 &&
      pods.store.size === 0 &&
      ![...slices.store.values()].some((s) => (s.endpoints ?? []).length > 0) && !active;
  };

  const proxy = await env.proxy();
  const results: Decomposition[] = [];
  try {
    for (let n = 1; n <= trials; n++) {
      await env.cluster.waitFor(atZero, {
        what: `${APP} at 0 replicas with no pods, no endpoints and the scaler inactive`,
        timeoutMs: 120_000,
        intervalMs: 100,
      });
      // Let late events of the scale-in settle before the clock starts.
      await sleep(1_000);
      marks = {};
      const perfOffset = performance.timeOrigin;
      const r = await httpGet(proxy, { host: HOST, path: `/trial/${n}`, timeoutMs: 120_000 });
      marks.sent = perfOffset + r.sentAt;
      marks.response = perfOffset + r.headAt;
      if (r.status !== 200 || r.headers.get("x-keda-http-cold-start") !== "true") {
        throw new Error(
          `trial ${n}: expected a cold-start 200, got ${r.status} cold-start=${
            r.headers.get("x-keda-http-cold-start")
          }: ${r.body.slice(0, 200)}`,
        );
      }
      // Watch events of the last steps may land just after the response.
      await sleep(500);
      const d = decompose(marks);
      results.push(d);
      log.info("trial", {
        trial: n,
        totalMs: Math.round(d.totalMs ?? NaN),
        stages: Object.fromEntries(
          Object.entries(d.stages).map(([k, v]) => [k, v === undefined ? null : Math.round(v)]),
        ),
        ...(d.outOfOrder.length ? { outOfOrder: d.outOfOrder } : {}),
      });
      marks = undefined;
    }
  } finally {
    stop.abort();
    scaler.close();
    await Promise.allSettled(background);
  }
  Deno.stdout.writeSync(new TextEncoder().encode(formatReport(results) + "\n"));
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    log.error("cold start benchmark failed", { error: e });
    Deno.exit(1);
  }
}
