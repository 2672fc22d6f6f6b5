/**
 * deno task bench — the interceptor against the origin direct and against
 * nginx as a keep-alive reverse proxy, on this machine, in one run:
 *
 *   1. routing at scale (10,000 HTTPScaledObjects: rebuild and lookup);
 *   2. a control-plane-only cluster, the origin in a network namespace, an
 *      HTTPScaledObject + EndpointSlice routing to it, the real interceptor
 *      process, and nginx (as many workers as the interceptor);
 *   3. latency at a fixed rate (hey; the interceptor measured once its
 *      isolates have settled for that rate, i.e. shrunk back after the
 *      previous throughput phase), then throughput (wrk, closed loop; each
 *      target first gets an unmeasured wrk of --warm seconds, so that what is
 *      measured is its steady state under that load: for the interceptor,
 *      after it has grown its isolates), alternating targets over several
 *      rounds and taking medians;
 *   4. memory: RSS of the interceptor idle and after load;
 *   5. HTTP/2 (bench/h2_bench.ts): h2load over h2c against a Go origin,
 *      nginx and the interceptor, plain GETs and gRPC unary calls.
 *
 * Flags: --duration=10 (s per measurement), --warm=4 (s of unmeasured wrk before each
 * throughput measurement), --rounds=3, --connections=50,
 * --threads=1 (wrk), --rate=1000 (rps for hey), --hey-workers=10 (clients making up the rate,
 * their starts spread so requests arrive evenly), --hey-bursts (one hey with that many workers
 * instead: they arrive as synchronized bursts), --workers=<n> (pins the
 * interceptor's isolates and nginx's workers; default: the interceptor as deployed, isolates
 * following the load up to one per CPU, and nginx with one worker per CPU, its "auto"),
 * --soak[=600] (only: hold the fixed rate
 * for that many seconds and report RSS growth), --skip-routing,
 * --only-h2 / --skip-h2 (the HTTP/2 section alone / not at all), --h2-duration=5,
 * --h2-warm=4, --h2-connections=10, --h2-streams=10 (its h2load; rounds: --rounds).
 * The line before the last reads: interceptor/nginx http2 throughput: <ratio>, grpc: <ratio>
 * The last line reads: interceptor/nginx throughput: <ratio>, added p99: <ms> ms
 */
import { programSpecs } from "../build/programs.ts";
import { startCluster } from "../tests/cluster/mod.ts";
import type { KubeObject } from "../tests/cluster/mod.ts";
import {
  appObjects,
  endpointSlice,
  Netns,
  startInterceptor,
} from "../interceptor/cluster_testing.ts";
import { LIST_PAGE_SIZE } from "../shared/kube_api.ts";
import { sleep } from "../shared/lifetime.ts";
import { parse as parseYaml } from "yaml";
import { hey, heySpread, type LoadResult, missingTools, wrk } from "./load_tools.ts";
import { H2_TOOLS, h2RatioLine, runH2Bench } from "./h2_bench.ts";
import { nginxMain, startNginx } from "./nginx.ts";
import { measureWorkerApply, type RoutingResult, runRoutingBenchFresh } from "./routing_bench.ts";

import { flag, out } from "./bench_args.ts";

const has = (name: string) =>
  Deno.args.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));

function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

/** CPU seconds [user, system] used so far by these processes (all their threads). */
function cpuSeconds(pids: number[]): [number, number] {
  let user = 0;
  let sys = 0;
  for (const pid of pids) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      user += Number(fields[11]);
      sys += Number(fields[12]);
    } catch {
      // Gone.
    }
  }
  return [user / 100, sys / 100];
}

/** A process and its direct children (nginx's workers). */
function processTree(pid: number): number[] {
  const out = [pid];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(e.name));
    } catch {
      // Gone.
    }
  }
  return out;
}

/** The interceptor's data-plane isolates now, from its /metrics. */
async function isolatesOf(ic: { admin(path: string): Promise<Response> }): Promise<number> {
  const text = await (await ic.admin("/metrics")).text();
  return Number(/^interceptor_dataplane_isolates (\d+)$/m.exec(text)?.[1] ?? NaN);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function fmt(n: number, digits = 2): string {
  return n.toFixed(digits);
}

function nginxConf(dir: string, port: number, upstream: string, workers: number): string {
  return `${nginxMain(dir, workers)}
http {
  access_log off;
  upstream origin { server ${upstream}; keepalive 256; }
  server {
    listen 127.0.0.1:${port} reuseport;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
`;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = (l.addr as Deno.NetAddr).port;
  l.close();
  return p;
}

async function main(): Promise<number> {
  const durationS = flag("duration", 10);
  const warmS = flag("warm", 4);
  const rounds = flag("rounds", 3);
  const connections = flag("connections", 50);
  const threads = flag("threads", 1);
  const rate = flag("rate", 1000);
  const pinned = flag("workers", undefined);
  const workers = pinned ?? (navigator.hardwareConcurrency || 1);
  const soakS = has("soak") ? flag("soak", 600) : undefined;
  // The fixed rate comes from this many clients of one connection each, their
  // starts spread so requests arrive evenly (heySpread); --hey-bursts uses one
  // hey with that many workers instead, which start on the same tick and so
  // arrive as synchronized bursts (the soak always does: it measures memory).
  const heyWorkers = flag("hey-workers", 10);
  const bursts = has("hey-bursts");
  const fixedRate = (url: string, host: string | undefined) =>
    bursts
      ? hey(url, { host, rate, workers: heyWorkers, durationS })
      : heySpread(url, { host, rate, clients: heyWorkers, durationS });
  // The interceptor runs with its deno.json task's memory flags, as deployed;
  // --v8-flags=... replaces the V8 part.
  const taskFlags = programSpecs().find((p) => p.name === "interceptor")!.permissions
    .filter((f) => f === "--no-code-cache" || f.startsWith("--v8-flags="));
  const v8Flags = Deno.args.find((a) => a.startsWith("--v8-flags="))?.slice("--v8-flags=".length) ??
    taskFlags.find((f) => f.startsWith("--v8-flags="))?.slice("--v8-flags=".length) ?? "";

  const onlyH2 = has("only-h2");
  const h2 = !has("skip-h2") && soakS === undefined;
  const missing = await missingTools([
    ...(onlyH2 ? ["nginx"] : ["wrk", "hey", "nginx"]),
    ...(h2 ? H2_TOOLS : []),
  ]);
  if (missing.length > 0) {
    out(`missing load tools: ${missing.join(", ")}`);
    out(
      "install them from Debian packages: apt-get update && apt-get install -y wrk hey nginx nghttp2-client",
    );
    return 2;
  }
  const h2Section = () =>
    runH2Bench({
      cluster,
      namespace: ns,
      net,
      interceptor: ic,
      workers,
      out,
    }, {
      durationS: flag("h2-duration", 5),
      warmS: flag("h2-warm", 4),
      rounds,
      connections: flag("h2-connections", 10),
      streams: flag("h2-streams", 10),
    });

  if (!has("skip-routing") && soakS === undefined && !onlyH2) {
    out("== routing with 10,000 HTTPScaledObjects");
    const runs = await runRoutingBenchFresh(3, taskFlags);
    const workersAppliedMs = await measureWorkerApply(10_000, workers);
    const m = (f: (r: RoutingResult) => number, digits = 1) =>
      `${fmt(median(runs.map(f)), digits)} (${runs.map((r) => fmt(f(r), digits)).join(", ")})`;
    out(`medians of ${runs.length} fresh processes (each run in brackets):`);
    out(
      `first list, per page of ${LIST_PAGE_SIZE} (p50 / max):  ${m((r) => r.pageP50Ms)} / ${
        m((r) => r.pageMaxMs)
      } ms`,
    );
    out(`first table after the list's last page:   ${m((r) => r.fullRebuildMs)} ms`);
    out(`rebuild after one object changed:         ${m((r) => r.incrementalRebuildMs)} ms`);
    out(`lookup p50:                               ${m((r) => r.lookupP50Us, 2)} µs`);
    out(`lookup p99:                               ${m((r) => r.lookupP99Us, 2)} µs`);
    out(`table copied to ${workers} workers + indexed:      ${fmt(workersAppliedMs, 1)} ms`);
    out();
  }

  out(
    `== starting: control plane, origin, interceptor (${
      pinned ? `${pinned} isolates` : `1 to ${workers} isolates, following the load`
    }, ${v8Flags}), nginx (${workers} workers)`,
  );
  await using cluster = await startCluster({ node: false, controllers: false });
  const ns = await cluster.createNamespace("bench");
  await using net = await Netns.create();
  const origin = await net.startApp({
    name: "origin",
    script: new URL("./origin.ts", import.meta.url).pathname,
  });
  const objs = appObjects({ namespace: ns, name: "bench", spec: { hosts: ["bench.local"] } });
  await cluster.applyYaml([
    objs.service,
    objs.httpso,
    endpointSlice({ namespace: ns, service: "bench", endpoints: [{ ip: origin.ip, ready: true }] }),
  ] as KubeObject[], { namespace: ns });
  // The same kubeconfig as JSON: in a pod the interceptor reads service-account
  // files and never loads a YAML parser, so neither should the measured RSS.
  const kubeconfigJson = await Deno.makeTempFile({ prefix: "bench-kubeconfig-", suffix: ".json" });
  await Deno.writeTextFile(
    kubeconfigJson,
    JSON.stringify(parseYaml(await Deno.readTextFile(cluster.kubeconfigPath))),
  );
  await using ic = await startInterceptor({
    kubeconfigPath: kubeconfigJson,
    env: { KEDA_HTTP_PROXY_WORKERS: String(pinned ?? 0), LOG_LEVEL: "warn" },
    // As deployed: see the interceptor README on DENO_V8_FLAGS.
    denoFlags: [
      ...taskFlags.filter((f) => !f.startsWith("--v8-flags=")),
      ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
    ],
  });
  await cluster.waitFor(async () => {
    const d = await ic.adminJson<Record<string, { ready: string[] }>>("/deployments");
    return d[`${ns}/bench:80`]?.ready.length === 1;
  }, { what: "the interceptor to know the origin's endpoint" });
  const dir = await Deno.makeTempDir({ prefix: "bench-nginx-" });
  const nginxPort = freePort();
  const nginx = await startNginx(
    dir,
    nginxConf(dir, nginxPort, `${origin.ip}:${origin.port}`, workers),
    nginxPort,
  );
  try {
    const targets = {
      direct: { url: `http://${origin.ip}:${origin.port}/`, host: undefined },
      nginx: { url: `http://127.0.0.1:${nginxPort}/`, host: "bench.local" },
      interceptor: { url: `http://127.0.0.1:${ic.proxyPort}/`, host: "bench.local" },
    };
    const check = await ic.request("bench.local", "/");
    if (check.status !== 200) {
      throw new Error(`interceptor answered ${check.status}: ${await check.text()}`);
    }
    await check.body?.cancel();
    // Settled: the interceptor gives back what startup left once it has been
    // quiet for 2 s (interceptor/memory.ts); measure after that.
    await sleep(5000);
    const idleRss = rssMb(ic.child.pid);
    out(`interceptor RSS idle: ${fmt(idleRss, 1)} MB (${await isolatesOf(ic)} isolate(s))`);

    if (soakS !== undefined) {
      out(`== soak: ${rate} rps for ${soakS} s through the interceptor`);
      const samples: Array<[number, number]> = [];
      const t0 = Date.now();
      const load = hey(targets.interceptor.url, {
        host: "bench.local",
        rate,
        workers: heyWorkers,
        durationS: soakS,
      });
      let done = false;
      load.finally(() => (done = true));
      while (!done) {
        await sleep(Math.min(30_000, soakS * 1000 / 10));
        if (done) break;
        const s = (Date.now() - t0) / 1000;
        const rss = rssMb(ic.child.pid);
        samples.push([s, rss]);
        out(`  t=${fmt(s, 0)}s RSS ${fmt(rss, 1)} MB`);
      }
      const r = await load;
      const warm = samples.find(([s]) => s >= 60)?.[1] ?? samples[0]?.[1] ?? idleRss;
      const last = samples.at(-1)?.[1] ?? idleRss;
      const peak = Math.max(idleRss, ...samples.map(([, m]) => m));
      await sleep(5000);
      const after = rssMb(ic.child.pid);
      out(
        `soak: ${fmt(r.rps, 0)} rps, p50 ${fmt(r.p50Ms)} ms, p99 ${
          fmt(r.p99Ms)
        } ms, errors ${r.errors}`,
      );
      out(
        `RSS: idle ${fmt(idleRss, 1)} MB; under load: after 60 s ${fmt(warm, 1)} MB, last ${
          fmt(last, 1)
        } MB, peak ${fmt(peak, 1)} MB; 5 s after the load: ${fmt(after, 1)} MB`,
      );
      out(
        `RSS growth: ${fmt(last - warm, 1)} MB under load after the first minute, ${
          fmt(after - idleRss, 1)
        } MB idle before vs after`,
      );
      return 0;
    }

    if (onlyH2) {
      out();
      out(h2RatioLine(await h2Section()));
      return 0;
    }

    out(`== warm-up`);
    for (const t of Object.values(targets)) {
      await wrk(t.url, { host: t.host, threads, connections, durationS: 2 });
    }
    const tput: Record<string, LoadResult[]> = { direct: [], nginx: [], interceptor: [] };
    // CPU per request of each proxy: robust to noisy neighbours, unlike req/s.
    const cpuPerReq: Record<string, number[]> = { nginx: [], interceptor: [] };
    const pidsOf = (name: string) =>
      name === "nginx" ? processTree(nginx.pid) : name === "interceptor" ? [ic.child.pid] : [];
    const fixed: Record<string, LoadResult[]> = { direct: [], nginx: [], interceptor: [] };
    // The fixed rate needs one isolate (~2.5% of a CPU): measure it once the
    // interceptor has shrunk back from the throughput phase before it (30 s of
    // low CPU), i.e. as it runs at that rate, not in the transient after wrk.
    const settle = async () => {
      if (pinned) return;
      const t0 = Date.now();
      while ((await isolatesOf(ic)) > 1 && Date.now() - t0 < 90_000) await sleep(1000);
      out(
        `  (interceptor back to ${await isolatesOf(ic)} isolate(s) after ${
          fmt((Date.now() - t0) / 1000, 0)
        } s idle)`,
      );
    };
    for (let round = 1; round <= rounds; round++) {
      out(
        `== round ${round}/${rounds}: ${rate} rps (${heyWorkers} hey clients, ${
          bursts ? "in bursts" : "spread"
        }), then wrk -t${threads} -c${connections} ${durationS}s (after ${warmS} s unmeasured)`,
      );
      // Alternate the order so drift (thermal, noisy neighbours) does not favour one target.
      const order = round % 2
        ? ["direct", "nginx", "interceptor"]
        : ["interceptor", "nginx", "direct"];
      for (const name of order) {
        const t = targets[name as keyof typeof targets];
        if (name === "interceptor") await settle();
        const r = await fixedRate(t.url, t.host);
        fixed[name]!.push(r);
        out(
          `  ${name.padEnd(12)} @${rate} rps: p50 ${fmt(r.p50Ms)} ms  p99 ${
            fmt(r.p99Ms)
          } ms  errors ${r.errors}${r.errors ? ` (${r.errorKinds})` : ""}${
            name === "interceptor" ? `  isolates ${await isolatesOf(ic)}` : ""
          }`,
        );
      }
      for (const name of order) {
        const t = targets[name as keyof typeof targets];
        const pids = pidsOf(name);
        // Steady state: the interceptor grows its isolates ~2 s into a load
        // (and the new isolate starts cold); that transient is not throughput.
        await wrk(t.url, { host: t.host, threads, connections, durationS: warmS });
        const [u0, s0] = cpuSeconds(pids);
        const r = await wrk(t.url, { host: t.host, threads, connections, durationS });
        const [u1, s1] = cpuSeconds(pids);
        const userUs = ((u1 - u0) / r.requests) * 1e6;
        const sysUs = ((s1 - s0) / r.requests) * 1e6;
        tput[name]!.push(r);
        if (pids.length) cpuPerReq[name]?.push(userUs + sysUs);
        out(
          `  ${name.padEnd(12)} ${fmt(r.rps, 0).padStart(8)} req/s  p50 ${fmt(r.p50Ms)} ms  p99 ${
            fmt(r.p99Ms)
          } ms  errors ${r.errors}${r.errors ? ` (${r.errorKinds})` : ""}${
            pids.length ? `  cpu ${fmt(userUs, 1)} user + ${fmt(sysUs, 1)} sys µs/req` : ""
          }${name === "interceptor" ? `  isolates ${await isolatesOf(ic)}` : ""}`,
        );
      }
    }
    const loadedRss = rssMb(ic.child.pid);
    const summary = (name: string) => ({
      rps: median(tput[name]!.map((r) => r.rps)),
      p50: median(tput[name]!.map((r) => r.p50Ms)),
      p99: median(tput[name]!.map((r) => r.p99Ms)),
      fp50: median(fixed[name]!.map((r) => r.p50Ms)),
      fp99: median(fixed[name]!.map((r) => r.p99Ms)),
      errors: [...tput[name]!, ...fixed[name]!].reduce((n, r) => n + r.errors, 0),
    });
    const d = summary("direct");
    const n = summary("nginx");
    const i = summary("interceptor");
    out();
    out(
      `== medians over ${rounds} rounds (${navigator.hardwareConcurrency} CPUs; load generator, proxies and origin share them)`,
    );
    out(`target        req/s     p50 ms  p99 ms | @${rate} rps p50 ms  p99 ms | errors`);
    for (const [name, s] of [["direct", d], ["nginx", n], ["interceptor", i]] as const) {
      out(
        `${name.padEnd(12)} ${fmt(s.rps, 0).padStart(7)}   ${fmt(s.p50).padStart(6)}  ${
          fmt(s.p99).padStart(6)
        } |` +
          `        ${fmt(s.fp50).padStart(6)}  ${fmt(s.fp99).padStart(6)} | ${s.errors}`,
      );
    }
    out(`interceptor RSS: idle ${fmt(idleRss, 1)} MB, after load ${fmt(loadedRss, 1)} MB`);
    out(
      `CPU per request: nginx ${fmt(median(cpuPerReq.nginx!), 1)} µs, interceptor ${
        fmt(median(cpuPerReq.interceptor!), 1)
      } µs`,
    );
    // Each round's pair ran minutes apart at most: their spread shows how
    // much of a difference this machine's drift alone makes.
    out(
      `interceptor/nginx throughput by round: ${
        tput.interceptor!.map((r, k) => fmt(r.rps / tput.nginx![k]!.rps)).join(", ")
      }`,
    );
    out(
      `nginx/direct throughput: ${fmt(n.rps / d.rps)}, added p99 at ${rate} rps: ${
        fmt(n.fp99 - d.fp99)
      } ms`,
    );
    if (h2) {
      out();
      const h2Line = h2RatioLine(await h2Section());
      out();
      out(h2Line);
    }
    out(
      `interceptor/nginx throughput: ${fmt(i.rps / n.rps)}, added p99: ${fmt(i.fp99 - d.fp99)} ms`,
    );
    return 0;
  } finally {
    await nginx.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.remove(kubeconfigJson).catch(() => {});
  }
}

Deno.exit(await main());
