/**
 * The load generators the benchmark drives (wrk for throughput, hey for a
 * fixed rate) and parsers for their reports.
 */

export interface LoadResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

export async function missingTools(tools: string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const t of tools) {
    const out = await new Deno.Command("sh", { args: ["-c", `command -v ${t}`], stdout: "null" })
      .output();
    if (!out.success) missing.push(t);
  }
  return missing;
}

/** "250.00us", "1.20ms", "2.00s" → ms. */
export function wrkDurationMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m) throw new Error(`wrk duration "${text}" not understood`);
  const v = Number(m[1]);
  return m[2] === "us" ? v / 1000 : m[2] === "ms" ? v : m[2] === "s" ? v * 1000 : v * 60_000;
}

export function parseWrk(text: string): LoadResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const p50 = /^\s+50%\s+(\S+)/m.exec(text);
  const p99 = /^\s+99%\s+(\S+)/m.exec(text);
  const total = /(\d+) requests in/.exec(text);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  if (!rps || !p50 || !p99 || !total) throw new Error(`wrk output not understood:\n${text}`);
  const sockErrors = sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0;
  return {
    rps: Number(rps[1]),
    p50Ms: wrkDurationMs(p50[1]!),
    p99Ms: wrkDurationMs(p99[1]!),
    requests: Number(total[1]),
    errors: (non2xx ? Number(non2xx[1]) : 0) + sockErrors,
  };
}

export function parseHey(text: string): LoadResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const p50 = /50%+ in ([\d.]+) secs/.exec(text);
  const p99 = /99%+ in ([\d.]+) secs/.exec(text);
  const codes = [...text.matchAll(/\[(\d{3})\]\s+(\d+) responses/g)];
  const ok = codes.filter((c) => c[1] === "200").reduce((n, c) => n + Number(c[2]), 0);
  const all = codes.reduce((n, c) => n + Number(c[2]), 0);
  const errs = /Error distribution:\n((?:\s+\[\d+\].*\n?)+)/.exec(text);
  const errCount = errs
    ? [...errs[1]!.matchAll(/\[(\d+)\]/g)].reduce((n, m) => n + Number(m[1]), 0)
    : 0;
  if (!rps || !p50 || !p99) throw new Error(`hey output not understood:\n${text}`);
  return {
    rps: Number(rps[1]),
    p50Ms: Number(p50[1]) * 1000,
    p99Ms: Number(p99[1]) * 1000,
    requests: all,
    errors: all - ok + errCount,
  };
}

export function wrk(
  url: string,
  opts: { host?: string; threads: number; connections: number; durationS: number },
): Promise<LoadResult> {
  const args = [
    `-t${opts.threads}`,
    `-c${opts.connections}`,
    `-d${opts.durationS}s`,
    "--latency",
    ...(opts.host ? ["-H", `Host: ${opts.host}`] : []),
    url,
  ];
  return run("wrk", args).then(parseWrk);
}

/** A fixed total rate: `workers` clients of rate/workers requests per second each. */
export function hey(
  url: string,
  opts: { host?: string; rate: number; workers: number; durationS: number },
): Promise<LoadResult> {
  const perWorker = Math.max(1, Math.round(opts.rate / opts.workers));
  const args = [
    "-z",
    `${opts.durationS}s`,
    "-c",
    String(opts.workers),
    "-q",
    String(perWorker),
    ...(opts.host ? ["-host", opts.host] : []),
    url,
  ];
  return run("hey", args).then(parseHey);
}
