/**
 * The HTTP/2 section of `deno task bench`: h2load (h2c, prior knowledge)
 * against a Go origin that serves HTTP/1.1 and h2c on one port, directly,
 * through nginx, and through the interceptor; for plain GETs and for gRPC
 * unary calls. bench/main.ts starts the cluster, network namespace and
 * interceptor and calls runH2Bench; this file adds the origin, the routes to
 * it, and an nginx of its own.
 *
 * Upstream protocols, which the figures depend on: nginx's proxy_pass speaks
 * only HTTP/1.1 upstream (keep-alive), its grpc_pass HTTP/2. The interceptor
 * forwards plain requests over HTTP/1.1 (Service port without appProtocol)
 * and gRPC over HTTP/2 (a second Service whose port has appProtocol
 * kubernetes.io/h2c, to the same origin port).
 */
import type { KubeObject } from "../tests/cluster/mod.ts";
import { appObjects, endpointSlice, freePort, type Netns } from "../interceptor/cluster_testing.ts";
import { sleep } from "../shared/lifetime.ts";
import { h2load, type LoadResult } from "./load_tools.ts";
import { nginxMain, startNginx } from "./nginx.ts";
import { buildGoTool } from "../tests/tools/go_tool.ts";

const ORIGIN_DIR = new URL("./h2_origin/", import.meta.url).pathname;
const ORIGIN_PORT = 8081;
const PLAIN_HOST = "h2.local";
const GRPC_HOST = "grpc.local";
const GRPC_PATH = "/echo.Echo/Unary";
const GRPC_HEADERS = ["content-type: application/grpc", "te: trailers"];

export interface H2BenchEnv {
  cluster: {
    applyYaml(objs: KubeObject[], opts: { namespace: string }): Promise<unknown>;
    waitFor(check: () => Promise<boolean>, opts: { what: string }): Promise<unknown>;
  };
  namespace: string;
  net: Netns;
  interceptor: {
    proxyPort: number;
    adminJson<T>(path: string): Promise<T>;
  };
  /** nginx's worker_processes. */
  workers: number;
  out(line?: string): void;
}

export interface H2BenchOpts {
  durationS: number;
  /** Unmeasured load before each measurement (h2load --warm-up-time). */
  warmS: number;
  rounds: number;
  connections: number;
  streams: number;
}

/** interceptor/nginx throughput ratios; undefined where a target failed. */
export interface H2BenchResult {
  plain: number | undefined;
  grpc: number | undefined;
}

export function h2RatioLine(r: H2BenchResult): string {
  const f = (x: number | undefined) => (x === undefined ? "n/a" : x.toFixed(2));
  return `interceptor/nginx http2 throughput: ${f(r.plain)}, grpc: ${f(r.grpc)}`;
}

/** The tools this section needs beyond bench/main.ts's. */
export const H2_TOOLS = ["h2load", "nghttp"];

/** The origin binary (bench/h2_origin), built into the cache when its sources changed. */
export function buildOrigin(): Promise<string> {
  return buildGoTool({
    name: "h2_origin",
    srcDir: ORIGIN_DIR,
    what: "bench/h2_origin",
    needs: "golang.org/x/net",
  });
}

/** The origin inside the namespace, as Netns.startApp runs a Deno app; resolves once it listens. */
async function startOrigin(net: Netns, bin: string) {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", net.name, bin],
    env: { PORT: String(ORIGIN_PORT), HOST: "0.0.0.0" },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = Date.now() + 10_000;
  const stop = async () => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
  };
  while (!/listening \d+/.test(text)) {
    const timer = sleep(Math.max(0, deadline - Date.now()));
    const r = await Promise.race([reader.read(), timer.then(() => null)]);
    if (r === null || r.done) {
      await stop();
      throw new Error(`bench/h2_origin did not start in ${net.name} (said: "${text}")`);
    }
    text += r.value;
  }
  (async () => {
    try {
      while (!(await reader.read()).done) { /* discard */ }
    } catch { /* closed */ }
  })();
  return { pid: child.pid, stop };
}

function nginxConf(dir: string, port: number, upstream: string, workers: number): string {
  // keepalive_requests: h2load does not reopen a connection nginx closes
  // after its default 1000 requests, so the load would fade away.
  return `${nginxMain(dir, workers)}
http {
  access_log off;
  upstream origin { server ${upstream}; keepalive 256; keepalive_requests 1000000; }
  upstream grpc_origin { server ${upstream}; keepalive 256; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${port} http2 reuseport;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
    location ${GRPC_PATH} {
      grpc_pass grpc://grpc_origin;
    }
  }
}
`;
}

interface Target {
  name: string;
  url: string;
  authority?: string;
}

/**
 * One request with nghttp, which shows every header frame: why a target is
 * unusable ("" if it answers as it should: 200, and for gRPC grpc-status 0).
 */
async function probe(t: Target, grpc: boolean, dataFile: string): Promise<string> {
  const r = await new Deno.Command("nghttp", {
    args: [
      "-v",
      "--timeout=5s",
      ...(t.authority ? ["-H", `:authority: ${t.authority}`] : []),
      ...(grpc ? [...GRPC_HEADERS.flatMap((h) => ["-H", h]), "-d", dataFile] : []),
      t.url,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  const got = [...text.matchAll(/recv \(stream_id=\d+\) ([:\w-]+): (.*)/g)]
    .map((m) => [m[1]!, m[2]!] as const);
  const status = got.find(([k]) => k === ":status")?.[1];
  if (status !== "200") {
    return `nghttp ${t.url}: ${status ? `status ${status}` : "no response"}${
      r.success ? "" : ` (${text.trim().split("\n").slice(-3).join(" | ")})`
    }`;
  }
  if (grpc) {
    const gs = got.find(([k]) => k === "grpc-status")?.[1];
    if (gs !== "0") {
      const msg = got.find(([k]) => k === "grpc-message")?.[1];
      return `gRPC call to ${t.url}: grpc-status ${gs ?? "missing"}${
        msg ? ` (${msg})` : ""
      }; received ${got.map(([k, v]) => `${k}: ${v}`).join(", ")}`;
    }
  }
  return "";
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");

export async function runH2Bench(env: H2BenchEnv, opts: H2BenchOpts): Promise<H2BenchResult> {
  const { out } = env;
  const bin = await buildOrigin();
  const origin = await startOrigin(env.net, bin);
  const dir = await Deno.makeTempDir({ prefix: "bench-nginx-h2-" });
  const dataFile = `${dir}/grpc_request.bin`;
  let nginx: Awaited<ReturnType<typeof startNginx>> | undefined;
  try {
    // One gRPC message: the 5-byte prefix (not compressed, length) and a
    // protobuf string field 1.
    const msg = new TextEncoder().encode("hello from the benchmark client");
    await Deno.writeFile(
      dataFile,
      new Uint8Array([0, 0, 0, 0, msg.length + 2, 0x0a, msg.length, ...msg]),
    );
    const ns = env.namespace;
    const plainObjs = appObjects({ namespace: ns, name: "h2plain", spec: { hosts: [PLAIN_HOST] } });
    const grpcObjs = appObjects({
      namespace: ns,
      name: "h2grpc",
      spec: { hosts: [GRPC_HOST] },
      appProtocol: "kubernetes.io/h2c",
    });
    for (const o of [plainObjs, grpcObjs]) {
      ((o.service.spec as { ports: Array<{ targetPort: number }> }).ports[0]!).targetPort =
        ORIGIN_PORT;
    }
    await env.cluster.applyYaml([
      plainObjs.service,
      plainObjs.httpso,
      endpointSlice({
        namespace: ns,
        service: "h2plain",
        port: ORIGIN_PORT,
        endpoints: [{ ip: env.net.ip, ready: true }],
      }),
      grpcObjs.service,
      grpcObjs.httpso,
      endpointSlice({
        namespace: ns,
        service: "h2grpc",
        port: ORIGIN_PORT,
        appProtocol: "kubernetes.io/h2c",
        endpoints: [{ ip: env.net.ip, ready: true }],
      }),
    ] as KubeObject[], { namespace: ns });
    await env.cluster.waitFor(async () => {
      const d = await env.interceptor.adminJson<Record<string, { ready: string[] }>>(
        "/deployments",
      );
      return d[`${ns}/h2plain:80`]?.ready.length === 1 && d[`${ns}/h2grpc:80`]?.ready.length === 1;
    }, { what: "the interceptor to know the h2 origin's endpoints" });
    const nginxPort = freePort();
    nginx = await startNginx(
      dir,
      nginxConf(dir, nginxPort, `${env.net.ip}:${ORIGIN_PORT}`, env.workers),
      nginxPort,
    );

    const originUrl = `http://${env.net.ip}:${ORIGIN_PORT}`;
    const icUrl = `http://127.0.0.1:${env.interceptor.proxyPort}`;
    const ngUrl = `http://127.0.0.1:${nginxPort}`;
    const kinds = {
      plain: [
        { name: "origin", url: `${originUrl}/` },
        { name: "nginx", url: `${ngUrl}/`, authority: PLAIN_HOST },
        { name: "interceptor", url: `${icUrl}/`, authority: PLAIN_HOST },
      ],
      grpc: [
        { name: "origin", url: `${originUrl}${GRPC_PATH}` },
        { name: "nginx", url: `${ngUrl}${GRPC_PATH}`, authority: GRPC_HOST },
        { name: "interceptor", url: `${icUrl}${GRPC_PATH}`, authority: GRPC_HOST },
      ],
    } satisfies Record<string, Target[]>;
    type Kind = keyof typeof kinds;
    const load = (t: Target, kind: Kind, durationS: number, warmS: number) =>
      h2load(t.url, {
        connections: opts.connections,
        streams: opts.streams,
        durationS,
        warmS,
        ...(t.authority ? { authority: t.authority } : {}),
        ...(kind === "grpc" ? { headers: GRPC_HEADERS, data: dataFile } : {}),
      });

    out(
      `== HTTP/2 (h2c prior knowledge): h2load -c${opts.connections} -m${opts.streams}, ${opts.durationS} s per measurement after ${opts.warmS} s unmeasured, ${opts.rounds} rounds`,
    );
    out(
      `   origin: bench/h2_origin (Go, HTTP/1.1 + h2c on one port); nginx ${env.workers} workers: ` +
        `plain via proxy_pass (HTTP/1.1 keep-alive upstream: nginx proxies no HTTP/2), gRPC via grpc_pass (HTTP/2 upstream)`,
    );
    out(
      "   interceptor: plain over HTTP/1.1 upstream, gRPC over HTTP/2 upstream (Service appProtocol kubernetes.io/h2c)",
    );
    // Why a target is left out, by kind and name.
    const failed = new Map<string, string>();
    // Not measured (any more): the probe or h2load itself failed.
    const unusable = new Set<string>();
    const key = (kind: Kind, name: string) => `${kind}/${name}`;
    for (const kind of Object.keys(kinds) as Kind[]) {
      for (const t of kinds[kind]) {
        const why = await probe(t, kind === "grpc", dataFile);
        if (why) {
          failed.set(key(kind, t.name), why);
          unusable.add(key(kind, t.name));
          out(`  ${kind} ${t.name}: unusable, not measured: ${why}`);
        }
      }
    }
    const results = new Map<string, LoadResult[]>();
    for (let round = 1; round <= opts.rounds; round++) {
      out(`== HTTP/2 round ${round}/${opts.rounds}`);
      for (const kind of Object.keys(kinds) as Kind[]) {
        // Alternate the order so drift does not favour one target.
        const order = round % 2 ? kinds[kind] : [...kinds[kind]].reverse();
        for (const t of order) {
          const k = key(kind, t.name);
          if (unusable.has(k)) continue;
          let r: LoadResult;
          try {
            r = await load(t, kind, opts.durationS, opts.warmS);
          } catch (e) {
            const why = e instanceof Error ? e.message.split("\n")[0]! : String(e);
            failed.set(k, why);
            unusable.add(k);
            out(`  ${kind.padEnd(5)} ${t.name.padEnd(12)} failed: ${why}`);
            continue;
          }
          results.set(k, [...(results.get(k) ?? []), r]);
          out(
            `  ${kind.padEnd(5)} ${t.name.padEnd(12)} ${fmt(r.rps, 0).padStart(8)} req/s  p50 ${
              fmt(r.p50Ms)
            } ms  p99 ${fmt(r.p99Ms)} ms  errors ${r.errors}${
              r.errors ? ` (${r.errorKinds})` : ""
            }`,
          );
          // Measured again next round (the figures still say something), but
          // a target that fails requests gets no ratio.
          if (r.requests === 0 || r.errors > 0) {
            failed.set(k, `${r.errors} of ${r.requests} requests failed (${r.errorKinds})`);
          }
        }
      }
    }
    out();
    out(
      `== HTTP/2 medians over ${opts.rounds} rounds (${navigator.hardwareConcurrency} CPUs shared by h2load, proxies and origin)`,
    );
    const ratio: Record<Kind, number | undefined> = { plain: undefined, grpc: undefined };
    for (const kind of Object.keys(kinds) as Kind[]) {
      const med = (name: string) => {
        const rs = results.get(key(kind, name)) ?? [];
        return rs.length
          ? { rps: median(rs.map((r) => r.rps)), p99: median(rs.map((r) => r.p99Ms)) }
          : undefined;
      };
      const base = med("origin");
      out(`${kind === "plain" ? "plain GET /" : `gRPC unary ${GRPC_PATH}`}`);
      out(`  target          req/s   p99 ms   vs origin`);
      for (const t of kinds[kind]) {
        const m = med(t.name);
        const why = failed.get(key(kind, t.name));
        out(
          `  ${t.name.padEnd(12)} ${fmt(m?.rps ?? NaN, 0).padStart(8)} ${
            fmt(m?.p99 ?? NaN).padStart(8)
          }   ${base && m ? fmt(m.rps / base.rps) : "n/a"}${why ? `   FAILED: ${why}` : ""}`,
        );
      }
      const n = med("nginx");
      const i = med("interceptor");
      if (n && i && !failed.has(key(kind, "nginx")) && !failed.has(key(kind, "interceptor"))) {
        ratio[kind] = i.rps / n.rps;
      }
    }
    return ratio;
  } finally {
    await nginx?.stop();
    await origin.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
