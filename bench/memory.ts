/**
 * deno task bench:memory — what the parts of a program cost in resident
 * memory, measured the way the interceptor runs (its deno.json task's V8
 * flags). Each figure is the median RSS of fresh processes (bench/memory_probe.ts)
 * that load one part, minus the median of processes that load nothing, all in
 * one run, so the figures are ratios to a reference taken beside them:
 *
 *   isolate     one more data-plane worker isolate (DataPlane with 1, 2, 3 workers: the slope);
 *   node:tls    node:tls loaded in the main isolate, and in a worker isolate against an
 *               empty worker (the TLS listener, HTTPS upstreams);
 *   client-node @kubernetes/client-node imported (why the programs use shared/kube_api.ts);
 *   zod         the classic "zod" API imported, against "zod/mini" (shared/zod.ts);
 *   compiled    the HTTPScaledObject parser's compiled fast path switched on, against
 *               the same module without it (shared/httpso.ts).
 *
 * Flags: --runs=3 (processes per part). The last line reads:
 * memory: isolate <N> MiB, node:tls <N> MiB (in a worker <N> MiB), client-node <N> MiB, zod over zod/mini <N> MiB
 */
import { flag, out } from "./bench_args.ts";

const runs = flag("runs", 3);
const probe = new URL("./memory_probe.ts", import.meta.url).pathname;
// The interceptor task's memory flags (deno.json "interceptor"), so figures match a deployment.
const V8 = "--v8-flags=--max-semi-space-size=1,--expose-gc";

async function rssOf(mode: string): Promise<number> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-net", "--no-code-cache", V8, probe, mode],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(stdout).trim();
  if (code !== 0 || !/^\d+$/.test(text)) {
    throw new Error(
      `memory probe "${mode}" failed (exit ${code}): ${new TextDecoder().decode(stderr).trim()}`,
    );
  }
  return Number(text) / 2 ** 20;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const modes = [
  "bare",
  "isolates:1",
  "isolates:2",
  "isolates:3",
  "worker",
  "worker-tls",
  "tls",
  "client-node",
  "zod-mini",
  "zod",
  "httpso",
  "compiled",
];
const samples = new Map<string, number[]>(modes.map((m) => [m, []]));
// Rounds alternate the modes, so drift on a shared machine hits all alike.
for (let r = 0; r < runs; r++) {
  for (const m of modes) samples.get(m)!.push(await rssOf(m));
}
const med = (m: string) => median(samples.get(m)!);
const f = (x: number) => x.toFixed(1);
for (const m of modes) {
  out(`${m.padEnd(12)} RSS ${f(med(m))} MiB (runs: ${samples.get(m)!.map(f).join(", ")})`);
}
const isolate = (med("isolates:3") - med("isolates:1")) / 2;
const tls = med("tls") - med("bare");
const workerTls = med("worker-tls") - med("worker");
const clientNode = med("client-node") - med("bare");
const zod = med("zod") - med("zod-mini");
const compiled = med("compiled") - med("httpso");
out(`compiled fast path: ${f(compiled)} MiB over the generic parser`);
out(
  `memory: isolate ${f(isolate)} MiB, node:tls ${f(tls)} MiB (in a worker ${
    f(workerTls)
  } MiB), client-node ${f(clientNode)} MiB, ` +
    `zod over zod/mini ${f(zod)} MiB`,
);
