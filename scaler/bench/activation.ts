/**
 * Activation latency: from the first request held at an interceptor to the
 * `true` message on KEDA's StreamIsActive stream, over many trials.
 *
 *   deno task bench:activation [--trials=200] [--fake]
 *
 * Default (root, control-plane binaries available): a real kube-apiserver,
 * one real interceptor process (interceptor/main.ts) routing to an app with no
 * ready endpoints, so each request is held; the scaler's real parts
 * (buildScaler) following that interceptor's /queue/watch; a real gRPC client
 * on StreamIsActive. --fake replaces the interceptor and the API server by a
 * process serving the same admin wire format (scaler/testing/queue_server.ts).
 *
 * Each trial: send a request (or set Concurrency 1), wait for `true`, then
 * release it and wait for `false`. The same run measures the scaler with the
 * watch turned off (activation then waits for the next /queue poll, as in the
 * Go add-on) and prints the ratio. The last line is
 * `activation p50: <ms> ms, p99: <ms> ms`.
 */
import { startTestScaler, type TestScaler } from "../testing/harness.ts";

const enc = new TextEncoder();
const say = (line: string) => Deno.stdout.writeSync(enc.encode(line + "\n"));

function arg(name: string): string | undefined {
  const hit = Deno.args.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (!hit) return undefined;
  return hit.includes("=") ? hit.slice(hit.indexOf("=") + 1) : "true";
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

const fmt = (ms: number) => ms < 10 ? ms.toFixed(2) : ms.toFixed(1);

interface Interceptor {
  name: string;
  adminUrl: string;
  /** Starts one held request; the returned function releases it. */
  hold(): () => Promise<void>;
  close(): Promise<void>;
}

interface Setup {
  description: string;
  namespace: string;
  httpso: Record<string, unknown>;
  interceptor: Interceptor;
  close(): Promise<void>;
}

async function realSetup(): Promise<Setup> {
  const { startCluster } = await import("../../tests/cluster/mod.ts");
  const { appObjects, startInterceptor } = await import("../../interceptor/cluster_testing.ts");
  const cluster = await startCluster({ node: false });
  try {
    const ns = await cluster.createNamespace("bench-activation");
    const app = appObjects({ namespace: ns, name: "app", spec: { hosts: ["app.test"] } });
    await cluster.applyYaml([app.service, app.httpso], { namespace: ns });
    const ic = await startInterceptor({
      kubeconfigPath: cluster.kubeconfigPath,
      env: {
        KEDA_HTTP_WATCH_NAMESPACE: ns,
        KEDA_HTTP_READINESS_TIMEOUT: "600s",
        LOG_LEVEL: "warn",
      },
    });
    await cluster.waitFor(async () => {
      const table = await ic.adminJson<{ routes: Record<string, unknown> }>("/routing_table");
      return `${ns}/app` in table.routes;
    }, { what: "the route in the interceptor's table" });
    return {
      description: "a real interceptor process (interceptor/main.ts) holding real requests",
      namespace: ns,
      httpso: { ...app.httpso, metadata: { name: "app", namespace: ns } },
      interceptor: {
        name: "interceptor",
        adminUrl: ic.adminUrl,
        hold() {
          const ctl = new AbortController();
          const done = ic.request("app.test", "/", { signal: ctl.signal }).then(
            (r) => r.body?.cancel(),
            () => {},
          );
          return async () => {
            ctl.abort();
            await done;
          };
        },
        close: async () => void await ic.stop(),
      },
      close: () => cluster.stop(),
    };
  } catch (e) {
    await cluster.stop();
    throw e;
  }
}

async function fakeSetup(): Promise<Setup> {
  const ns = "bench";
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      new URL("../testing/queue_server_main.ts", import.meta.url).pathname,
      "127.0.0.1",
      "0",
      `${ns}/app`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the queue server exited before listening");
    text += value;
  }
  reader.releaseLock();
  const url = /listening (\S+)/.exec(text)![1]!;
  const set = (n: number) =>
    fetch(`${url}/_test/concurrency?route=${ns}/app&n=${n}`, { method: "POST" }).then((r) =>
      r.text()
    );
  return {
    description: "a process serving the interceptor admin wire format (--fake)",
    namespace: ns,
    httpso: {
      apiVersion: "http.keda.sh/v1alpha1",
      kind: "HTTPScaledObject",
      metadata: { namespace: ns, name: "app" },
      spec: { hosts: ["app.test"], scaleTargetRef: { name: "app", service: "app", port: 80 } },
    },
    interceptor: {
      name: "queue-server",
      adminUrl: url,
      hold() {
        const started = set(1);
        return async () => {
          await started;
          await set(0);
        };
      },
      close: async () => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        await child.status;
        await child.stdout.cancel().catch(() => {});
      },
    },
    close: async () => {},
  };
}

/** Runs `trials` activations against a scaler; returns sorted latencies in ms. */
async function measure(
  setup: Setup,
  scaler: TestScaler,
  trials: number,
  /** Random pause before each trial, so trials do not line up with the poll tick. */
  jitterMs: number,
): Promise<number[]> {
  scaler.parts.fleet.setPods([{
    id: setup.interceptor.name,
    name: setup.interceptor.name,
    url: setup.interceptor.adminUrl,
    ready: true,
  }]);
  const started = performance.now();
  while (!scaler.parts.aggregator.podStatuses().every((p) => p.health === "ok")) {
    if (performance.now() - started > 30_000) throw new Error("the interceptor never answered");
    await new Promise((r) => setTimeout(r, 20));
  }
  const ref = {
    name: "app",
    namespace: setup.namespace,
    scalerMetadata: { httpScaledObject: "app" },
  };
  const controller = new AbortController();
  const stream = scaler.client.streamIsActive(ref, { signal: controller.signal });
  const until = async (want: boolean) => {
    for (;;) {
      const next = await stream.next();
      if (next.done) throw new Error("StreamIsActive ended");
      if (next.value === want) return;
    }
  };
  const latencies: number[] = [];
  try {
    await until(false);
    for (let i = 0; i < trials; i++) {
      await new Promise((r) => setTimeout(r, Math.random() * jitterMs));
      const t0 = performance.now();
      const release = setup.interceptor.hold();
      await until(true);
      latencies.push(performance.now() - t0);
      await release();
      await until(false);
    }
  } finally {
    controller.abort();
    await stream.return(undefined);
  }
  return latencies.sort((a, b) => a - b);
}

const trials = Number(arg("trials") ?? 200);
const baselineTrials = Math.max(10, Math.min(40, Math.round(trials / 5)));
const wantFake = arg("fake") === "true";
let setup: Setup;
if (wantFake) setup = await fakeSetup();
else {
  try {
    setup = await realSetup();
  } catch (e) {
    say(`real interceptor setup failed (${(e as Error).message.split("\n")[0]}); using --fake`);
    setup = await fakeSetup();
  }
}

try {
  const env = {
    KEDA_HTTP_QUEUE_TICK_DURATION: "500ms",
    // Heartbeats off the measured path: every message on the stream is a transition.
    KEDA_HTTP_SCALER_STREAM_INTERVAL_MS: "600000",
  };
  let withWatch: number[];
  {
    await using scaler = await startTestScaler({ httpsos: [setup.httpso], env });
    withWatch = await measure(setup, scaler, trials, 20);
  }
  let polling: number[];
  {
    await using scaler = await startTestScaler({ httpsos: [setup.httpso], env, watch: false });
    polling = await measure(setup, scaler, baselineTrials, 500);
  }
  const p50 = percentile(withWatch, 50);
  const p99 = percentile(withWatch, 99);
  say(`setup: ${setup.description}; scaler tick 500ms; ${trials} trials`);
  say(
    `with /queue/watch:  p50 ${fmt(p50)} ms, p90 ${fmt(percentile(withWatch, 90))} ms, p99 ${
      fmt(p99)
    } ms, max ${fmt(withWatch.at(-1)!)} ms, min ${fmt(withWatch[0]!)} ms`,
  );
  const b50 = percentile(polling, 50);
  say(
    `polling only (${baselineTrials} trials): p50 ${fmt(b50)} ms, p99 ${
      fmt(percentile(polling, 99))
    } ms; watch is ${(b50 / p50).toFixed(0)}x faster at p50`,
  );
  say(`activation p50: ${fmt(p50)} ms, p99: ${fmt(p99)} ms`);
} finally {
  await setup.interceptor.close();
  await setup.close();
}
