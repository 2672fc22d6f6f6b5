/**
 * deno task bench:tracing — what OpenTelemetry tracing costs the interceptor,
 * side by side in one run. The same setup as `deno task bench` (a
 * control-plane-only cluster, the origin (bench/origin.ts) in a network
 * namespace, an HTTPScaledObject + EndpointSlice routing bench.local to it,
 * the interceptor as its own process with its deno.json task's memory flags)
 * and a real Jaeger v2 (tests/tools/jaeger.ts) as the OTLP trace sink, all
 * on loopback. Three configurations:
 *
 *   off    tracing off (the default);
 *   on100  OTLP to Jaeger, sampler always_on (every request a recorded span);
 *   on1    the same exporter, sampler traceidratio with OTEL_TRACES_SAMPLER_ARG=0.01.
 *
 * Each round starts a fresh interceptor per configuration, in an order that
 * rotates from round to round (so drift and noisy neighbours hit all alike),
 * reads its idle RSS (VmRSS of the process and any children, after it has been
 * quiet for --settle seconds), then runs wrk: --warm seconds unmeasured (the
 * interceptor grows its isolates; each new isolate starts its own SDK), then
 * --duration seconds measured, with the interceptor's CPU time per request
 * (robust to neighbours, unlike req/s) and Jaeger's CPU time over the same
 * window. Before any of that it checks, from `deno info`'s module graph, that
 * nothing the interceptor loads statically (main.ts and its data-plane
 * worker.ts) reaches the OpenTelemetry SDK: with tracing off it is never loaded.
 *
 * Flags: --rounds=3, --duration=10, --warm=4, --settle=5, --connections=50,
 * --threads=1 (wrk), --workers=<n> (pins the data-plane isolates; default:
 * following the load up to one per CPU, as deployed), --protocol=http/protobuf
 * (or grpc), --batch-delay=<ms> (OTEL_BSP_SCHEDULE_DELAY; default the SDK
 * config's), --configs=off,on100,on1 (a subset, off always among them: ratios are to it),
 * --baseline=<commit> (adds "before": that commit's interceptor, tracing off, from
 * `git archive` into a temp dir, for tracing off before/after in the same run).
 * Roughly 25 s per configuration per round, plus ~15 s of setup:
 * --rounds=3 takes about 4 minutes.
 * The last line reads: tracing: 100% sampled <ratio> x off, 1% sampled <ratio> x off,
 * idle RSS off <N> MiB / on <M> MiB
 */
import { programSpecs } from "../build/programs.ts";
import { startCluster } from "../tests/cluster/mod.ts";
import type { KubeObject } from "../tests/cluster/mod.ts";
import { startJaeger } from "../tests/tools/jaeger.ts";
import {
  appObjects,
  endpointSlice,
  type InterceptorProcess,
  Netns,
  startInterceptor,
} from "../interceptor/cluster_testing.ts";
import { sleep } from "../shared/lifetime.ts";
import { parse as parseYaml } from "yaml";
import { type LoadResult, missingTools, wrk } from "./load_tools.ts";

import { flag, out } from "./bench_args.ts";

function stringFlag(name: string, def: string): string {
  return Deno.args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? def;
}

/** A process and its descendants (the interceptor runs its isolates as threads: usually none). */
function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e.name)]);
    } catch {
      // Gone.
    }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length && i < 1000; i++) tree.push(...(children.get(tree[i]!) ?? []));
  return tree;
}

/** VmRSS of these processes, summed, in MiB. */
function rssMiB(pids: number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
      kb += m ? Number(m[1]) : 0;
    } catch {
      // Gone.
    }
  }
  return kb / 1024;
}

/** CPU seconds (user + system) used so far by these processes (all their threads). */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Gone.
    }
  }
  return ticks / 100;
}

/** The interceptor's data-plane isolates now, from its /metrics. */
async function isolatesOf(ic: InterceptorProcess): Promise<number> {
  const text = await (await ic.admin("/metrics")).text();
  return Number(/^interceptor_dataplane_isolates (\d+)$/m.exec(text)?.[1] ?? NaN);
}

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function fmt(n: number, digits = 2): string {
  return n.toFixed(digits);
}

interface DenoInfoModule {
  specifier: string;
  dependencies?: Array<{ code?: { specifier?: string }; isDynamic?: boolean }>;
}

/**
 * The modules reachable from `roots` by static imports alone (dynamic and
 * type-only imports not followed) that are OpenTelemetry: npm @opentelemetry/*
 * or shared/tracing_sdk.ts. Empty: a process that never takes a dynamic
 * import of them never loads them.
 */
async function staticOtelModules(roots: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const root of roots) {
    const res = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", root],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!res.success) {
      throw new Error(`deno info ${root} failed: ${new TextDecoder().decode(res.stderr)}`);
    }
    const info = JSON.parse(new TextDecoder().decode(res.stdout)) as {
      roots: string[];
      modules: DenoInfoModule[];
      redirects?: Record<string, string>;
    };
    const bySpec = new Map(info.modules.map((m) => [m.specifier, m]));
    const seen = new Set<string>();
    const todo = [...info.roots];
    while (todo.length > 0) {
      let spec = todo.pop()!;
      spec = info.redirects?.[spec] ?? spec;
      if (seen.has(spec)) continue;
      seen.add(spec);
      if (/opentelemetry|\/shared\/tracing_sdk\.ts$/.test(spec)) found.push(spec);
      for (const d of bySpec.get(spec)?.dependencies ?? []) {
        if (!d.isDynamic && d.code?.specifier) todo.push(d.code.specifier);
      }
    }
  }
  return [...new Set(found)];
}

type ConfigName = "before" | "off" | "on100" | "on1";

type StartInterceptor = typeof startInterceptor;

/**
 * The interceptor of `commit` (tracing off, as it was then), for "before/after in
 * the same run": the commit's tree from `git archive` (which reads the repository and
 * changes nothing) in a temp dir, and that tree's own process launcher.
 */
async function baselineTree(
  commit: string,
): Promise<{ dir: string; label: string; start: StartInterceptor }> {
  const repo = new URL("../", import.meta.url).pathname;
  const git = async (args: string[]) => {
    const r = await new Deno.Command("git", { args, cwd: repo, stdout: "piped", stderr: "piped" })
      .output();
    if (!r.success) {
      throw new Error(`git ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
    }
    return new TextDecoder().decode(r.stdout).trim();
  };
  const label = await git(["log", "-1", "--format=%h %s", commit]);
  const dir = await Deno.makeTempDir({ prefix: "bench-baseline-" });
  try {
    const tar = `${dir}.tar`;
    await git(["archive", "--format=tar", `--output=${tar}`, commit]);
    const x = await new Deno.Command("tar", { args: ["-xf", tar, "-C", dir], stderr: "piped" })
      .output();
    await Deno.remove(tar).catch(() => {});
    if (!x.success) throw new Error(`tar: ${new TextDecoder().decode(x.stderr)}`);
    const mod = await import(`${dir}/interceptor/cluster_testing.ts`) as {
      startInterceptor: StartInterceptor;
    };
    return { dir, label: label.slice(0, 60), start: mod.startInterceptor };
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
}

interface Sample {
  idleRss: number;
  idleIsolates: number;
  load: LoadResult;
  cpuUsPerReq: number;
  isolates: number;
  jaegerCpuS: number;
}

async function main(): Promise<number> {
  const rounds = flag("rounds", 3);
  const durationS = flag("duration", 10);
  const warmS = flag("warm", 4);
  const settleS = flag("settle", 5);
  const connections = flag("connections", 50);
  const threads = flag("threads", 1);
  const pinned = flag("workers", undefined);
  const batchDelay = flag("batch-delay", undefined);
  const protocol = stringFlag("protocol", "http/protobuf");
  const baselineCommit = stringFlag("baseline", "");
  if (protocol !== "http/protobuf" && protocol !== "grpc") {
    throw new Error(`--protocol must be http/protobuf or grpc, got "${protocol}"`);
  }
  if (rounds > 20 || durationS > 120 || warmS > 60 || settleS > 60) {
    throw new Error("bounded: --rounds ≤ 20, --duration ≤ 120, --warm ≤ 60, --settle ≤ 60");
  }

  const missing = await missingTools(["wrk"]);
  if (missing.length > 0) {
    out(`missing load tools: ${missing.join(", ")}`);
    out("install them from Debian packages: apt-get update && apt-get install -y wrk");
    return 2;
  }

  const repo = new URL("../", import.meta.url).pathname;
  const otel = await staticOtelModules([
    `${repo}interceptor/main.ts`,
    `${repo}interceptor/worker.ts`,
  ]);
  out(
    `== static imports of interceptor/main.ts and interceptor/worker.ts reaching OpenTelemetry: ${
      otel.length === 0 ? "none (the SDK loads only by dynamic import, when tracing is on)" : ""
    }`,
  );
  for (const m of otel) out(`  ${m}`);
  if (otel.length > 0) return 1;

  const taskFlags = programSpecs().find((p) => p.name === "interceptor")!.permissions
    .filter((f) => f === "--no-code-cache" || f.startsWith("--v8-flags="));
  out(
    `== starting: Jaeger v2, control plane, origin; interceptor (${
      pinned ? `${pinned} isolates` : "isolates following the load"
    }, ${taskFlags.join(" ")}), a fresh one per configuration and round`,
  );
  await using jaeger = await startJaeger();
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
  // JSON, as in bench/main.ts: the interceptor then loads no YAML parser.
  const kubeconfigJson = await Deno.makeTempFile({ prefix: "bench-kubeconfig-", suffix: ".json" });
  let baseline: Awaited<ReturnType<typeof baselineTree>> | undefined;
  try {
    if (baselineCommit) baseline = await baselineTree(baselineCommit);
    await Deno.writeTextFile(
      kubeconfigJson,
      JSON.stringify(parseYaml(await Deno.readTextFile(cluster.kubeconfigPath))),
    );
    const endpoint = protocol === "grpc"
      ? `http://${jaeger.otlpGrpcEndpoint}`
      : `${jaeger.otlpHttpEndpoint}/v1/traces`;
    const on = (sampler: string, arg?: string): Record<string, string> => ({
      OTEL_EXPORTER_OTLP_TRACES_ENABLED: "true",
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: protocol,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: endpoint,
      OTEL_TRACES_SAMPLER: sampler,
      ...(arg ? { OTEL_TRACES_SAMPLER_ARG: arg } : {}),
      ...(batchDelay ? { OTEL_BSP_SCHEDULE_DELAY: String(batchDelay) } : {}),
    });
    const configs: Record<ConfigName, { what: string; env: Record<string, string> }> = {
      before: {
        what: `${baselineCommit}, tracing off`,
        env: { OTEL_EXPORTER_OTLP_TRACES_ENABLED: "false" },
      },
      off: { what: "tracing off", env: { OTEL_EXPORTER_OTLP_TRACES_ENABLED: "false" } },
      on100: { what: `OTLP ${protocol}, always_on`, env: on("always_on") },
      on1: { what: `OTLP ${protocol}, traceidratio 0.01`, env: on("traceidratio", "0.01") },
    };
    const all = Object.keys(configs) as ConfigName[];
    const chosen = stringFlag("configs", all.filter((n) => n !== "before" || baseline).join(","))
      .split(",");
    const names = all.filter((n) => chosen.includes(n));
    if (
      !names.includes("off") || chosen.some((n) => !all.includes(n as ConfigName)) ||
      (names.includes("before") && !baseline)
    ) {
      throw new Error(
        `--configs: a list of ${
          all.join(", ")
        }, with off (before needs --baseline), got "${chosen}"`,
      );
    }
    const samples: Record<ConfigName, Sample[]> = { before: [], off: [], on100: [], on1: [] };
    const url = "bench.local";

    const measure = async (name: ConfigName): Promise<Sample> => {
      const start = name === "before" ? baseline!.start : startInterceptor;
      await using ic = await start({
        kubeconfigPath: kubeconfigJson,
        env: {
          KEDA_HTTP_PROXY_WORKERS: String(pinned ?? 0),
          LOG_LEVEL: "warn",
          // Not inherited from whoever runs the bench.
          OTEL_TRACES_SAMPLER: "parentbased_always_on",
          OTEL_TRACES_SAMPLER_ARG: "",
          ...configs[name].env,
        },
        denoFlags: taskFlags,
      });
      await cluster.waitFor(async () => {
        const d = await ic.adminJson<Record<string, { ready: string[] }>>("/deployments");
        return d[`${ns}/bench:80`]?.ready.length === 1;
      }, { what: "the interceptor to know the origin's endpoint" });
      const check = await ic.request(url, "/");
      if (check.status !== 200) {
        throw new Error(`interceptor answered ${check.status}: ${await check.text()}`);
      }
      await check.body?.cancel();
      // Idle: the interceptor gives back what startup left after 2 s quiet (interceptor/memory.ts).
      await sleep(settleS * 1000);
      const idleRss = rssMiB(processTree(ic.child.pid));
      const idleIsolates = await isolatesOf(ic);
      const target = `http://127.0.0.1:${ic.proxyPort}/`;
      await wrk(target, { host: url, threads, connections, durationS: warmS });
      const pids = processTree(ic.child.pid);
      const jaegerPids = processTree(jaegerPid());
      const c0 = cpuSeconds(pids);
      const j0 = cpuSeconds(jaegerPids);
      const load = await wrk(target, { host: url, threads, connections, durationS });
      const c1 = cpuSeconds(pids);
      const j1 = cpuSeconds(jaegerPids);
      return {
        idleRss,
        idleIsolates,
        load,
        cpuUsPerReq: ((c1 - c0) / Math.max(1, load.requests)) * 1e6,
        isolates: await isolatesOf(ic),
        jaegerCpuS: j1 - j0,
      };
    };

    // Jaeger's process: the child of this process running the jaeger binary.
    let jaegerPidCache = 0;
    const jaegerPid = () => {
      if (jaegerPidCache) return jaegerPidCache;
      for (const pid of processTree(Deno.pid)) {
        try {
          if (/jaeger/.test(Deno.readLinkSync(`/proc/${pid}/exe`))) return (jaegerPidCache = pid);
        } catch {
          // Gone.
        }
      }
      return -1;
    };

    out(`== warm-up (off, unmeasured)`);
    await measure("off");

    for (let round = 1; round <= rounds; round++) {
      const order = names.map((_, k) => names[(k + round - 1) % names.length]!);
      out(
        `== round ${round}/${rounds}: ${
          order.join(", ")
        }; each: idle RSS after ${settleS} s, wrk -t${threads} -c${connections} ${durationS}s after ${warmS} s unmeasured`,
      );
      for (const name of order) {
        const s = await measure(name);
        samples[name].push(s);
        const r = s.load;
        out(
          `  ${name.padEnd(6)} idle RSS ${fmt(s.idleRss, 1)} MiB (${s.idleIsolates} isolate(s))  ${
            fmt(r.rps, 0).padStart(6)
          } req/s  p50 ${fmt(r.p50Ms)} ms  p99 ${fmt(r.p99Ms)} ms  cpu ${
            fmt(s.cpuUsPerReq, 1)
          } µs/req  isolates ${s.isolates}  jaeger cpu ${
            fmt(s.jaegerCpuS, 1)
          } s  errors ${r.errors}${r.errors ? ` (${r.errorKinds})` : ""}`,
        );
      }
    }

    const services = await jaeger.services();
    const spans = services.includes("keda-http-interceptor")
      ? (await jaeger.traces("keda-http-interceptor", { limit: 20 })).length
      : 0;

    const sum = (name: ConfigName) => {
      const xs = samples[name];
      return {
        rps: median(xs.map((s) => s.load.rps)),
        p50: median(xs.map((s) => s.load.p50Ms)),
        p99: median(xs.map((s) => s.load.p99Ms)),
        cpu: median(xs.map((s) => s.cpuUsPerReq)),
        rss: median(xs.map((s) => s.idleRss)),
        rssMin: Math.min(...xs.map((s) => s.idleRss)),
        rssMax: Math.max(...xs.map((s) => s.idleRss)),
        jaeger: median(xs.map((s) => s.jaegerCpuS)),
        errors: xs.reduce((n, s) => n + s.load.errors, 0),
      };
    };
    const S = { before: sum("before"), off: sum("off"), on100: sum("on100"), on1: sum("on1") };
    // Each round's configurations ran within about a minute of each other:
    // their ratios, round by round, show how much the machine's drift alone moves them.
    const byRound = (name: ConfigName) =>
      samples[name].map((s, k) => fmt(s.load.rps / samples.off[k]!.load.rps)).join(", ");

    out();
    out(
      `== medians over ${rounds} rounds (${navigator.hardwareConcurrency} CPUs; wrk, interceptor, origin and Jaeger share them)`,
    );
    out(
      `config  what                                  req/s   p50 ms  p99 ms  cpu µs/req  idle RSS MiB (min-max)  jaeger cpu s  errors`,
    );
    for (const name of names) {
      const s = S[name];
      out(
        `${name.padEnd(7)} ${configs[name].what.padEnd(36)} ${fmt(s.rps, 0).padStart(6)}  ${
          fmt(s.p50).padStart(6)
        }  ${fmt(s.p99).padStart(6)}  ${fmt(s.cpu, 1).padStart(10)}  ${
          `${fmt(s.rss, 1)} (${fmt(s.rssMin, 1)}-${fmt(s.rssMax, 1)})`.padEnd(22)
        }  ${fmt(s.jaeger, 1).padStart(12)}  ${s.errors}`,
      );
    }
    out(
      `throughput on100/off: ${fmt(S.on100.rps / S.off.rps)} (by round ${
        byRound("on100")
      }); on1/off: ${fmt(S.on1.rps / S.off.rps)} (by round ${byRound("on1")})`,
    );
    out(
      `CPU per request on100/off: ${fmt(S.on100.cpu / S.off.cpu)}; on1/off: ${
        fmt(S.on1.cpu / S.off.cpu)
      }`,
    );
    out(
      `p99 on100/off: ${fmt(S.on100.p99 / S.off.p99)}; on1/off: ${fmt(S.on1.p99 / S.off.p99)}`,
    );
    if (baseline) {
      out(
        `before (${baseline.label}) vs off: throughput off/before ${
          fmt(S.off.rps / S.before.rps)
        } (by round ${
          samples.off.map((s, k) => fmt(s.load.rps / samples.before[k]!.load.rps)).join(", ")
        }), CPU per request off/before ${fmt(S.off.cpu / S.before.cpu)}, idle RSS before ${
          fmt(S.before.rss, 1)
        } / off ${fmt(S.off.rss, 1)} MiB`,
      );
    }
    const rssOn = median([...samples.on100, ...samples.on1].map((s) => s.idleRss));
    out(
      `idle RSS on/off: ${fmt(rssOn / S.off.rss)} (on100 ${fmt(S.on100.rss, 1)}, on1 ${
        fmt(S.on1.rss, 1)
      }, off ${fmt(S.off.rss, 1)} MiB)`,
    );
    out(
      `Jaeger: services ${
        JSON.stringify(services)
      }, ${spans} span(s) in a sample query of 20 traces`,
    );
    out(
      `tracing: 100% sampled ${fmt(S.on100.rps / S.off.rps)} x off, 1% sampled ${
        fmt(S.on1.rps / S.off.rps)
      } x off, idle RSS off ${fmt(S.off.rss, 1)} MiB / on ${fmt(rssOn, 1)} MiB`,
    );
    return 0;
  } finally {
    await Deno.remove(kubeconfigJson).catch(() => {});
    if (baseline) await Deno.remove(baseline.dir, { recursive: true }).catch(() => {});
  }
}

Deno.exit(await main());
