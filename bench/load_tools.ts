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
  /** What the errors were, e.g. "read 3, status 502: 1"; empty without errors. */
  errorKinds: string;
}

/** "read 3, status 502: 1" from kind → count, skipping zeros. */
function kindsOf(counts: Map<string, number>): string {
  return [...counts].filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ");
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
  const kinds = new Map<string, number>();
  ["connect", "read", "write", "timeout"].forEach((k, i) =>
    kinds.set(k, Number(sock?.[i + 1] ?? 0))
  );
  kinds.set("non-2xx/3xx", non2xx ? Number(non2xx[1]) : 0);
  return {
    rps: Number(rps[1]),
    p50Ms: wrkDurationMs(p50[1]!),
    p99Ms: wrkDurationMs(p99[1]!),
    requests: Number(total[1]),
    errors: (non2xx ? Number(non2xx[1]) : 0) + sockErrors,
    errorKinds: kindsOf(kinds),
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
  const kinds = new Map<string, number>();
  for (const c of codes) if (c[1] !== "200") kinds.set(`status ${c[1]}:`, Number(c[2]));
  kinds.set("failed:", errCount);
  return {
    rps: Number(rps[1]),
    p50Ms: Number(p50[1]) * 1000,
    p99Ms: Number(p99[1]) * 1000,
    requests: all,
    errors: all - ok + errCount,
    errorKinds: kindsOf(kinds),
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
  return run("hey", heyArgs(url, { ...opts, perWorker })).then(parseHey);
}

/** hey's arguments: `workers` connections at `perWorker` requests/s each for `durationS`. */
function heyArgs(
  url: string,
  opts: { host?: string; workers: number; perWorker: number; durationS: number; csv?: boolean },
): string[] {
  return [
    "-z",
    `${opts.durationS}s`,
    "-c",
    String(opts.workers),
    "-q",
    String(opts.perWorker),
    ...(opts.csv ? ["-o", "csv"] : []),
    ...(opts.host ? ["-host", opts.host] : []),
    url,
  ];
}

/** Latencies (ms) and status codes of every request in hey's CSV output (-o csv). */
export function parseHeyCsv(text: string): { ms: number[]; statuses: number[] } {
  const lines = text.trim().split("\n");
  if (!lines[0]?.startsWith("response-time,")) {
    throw new Error(`hey CSV output not understood:\n${text.slice(0, 300)}`);
  }
  const ms: number[] = [];
  const statuses: number[] = [];
  for (const line of lines.slice(1)) {
    const f = line.split(",");
    const secs = Number(f[0]);
    const status = Number(f[6]);
    if (f.length < 8 || !Number.isFinite(secs) || !Number.isInteger(status)) {
      throw new Error(`hey CSV line not understood: "${line}"`);
    }
    ms.push(secs * 1000);
    statuses.push(status);
  }
  return { ms, statuses };
}

/** The value at percentile p (0-100) of ascending-sorted values. */
export function percentileOf(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * A fixed total rate from `clients` separate hey processes of one connection
 * each, started 1000/rate ms apart, so requests arrive evenly spread over
 * time. (One hey with -c n starts its n workers on the same tick: they arrive
 * as bursts of n, a pattern of the tool, not of a fixed rate.) Every request's
 * latency is merged for the percentiles. hey's CSV lists answered requests
 * only, so a failed connection shows as fewer requests than rate × duration.
 */
export async function heySpread(
  url: string,
  opts: { host?: string; rate: number; clients: number; durationS: number },
): Promise<LoadResult> {
  const perClient = opts.rate / opts.clients;
  const gapMs = 1000 / opts.rate;
  const runs: Promise<string>[] = [];
  for (let i = 0; i < opts.clients; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, gapMs));
    runs.push(run(
      "hey",
      heyArgs(url, { ...opts, workers: 1, perWorker: perClient, csv: true }),
    ));
  }
  const ms: number[] = [];
  let errors = 0;
  const kinds = new Map<string, number>();
  for (const text of await Promise.all(runs)) {
    const r = parseHeyCsv(text);
    ms.push(...r.ms);
    for (const st of r.statuses) {
      if (st === 200) continue;
      errors++;
      kinds.set(`status ${st}:`, (kinds.get(`status ${st}:`) ?? 0) + 1);
    }
  }
  const expected = Math.floor(opts.rate * opts.durationS);
  // Missing answers (refused or failed connections) count as errors.
  const missing = Math.max(0, Math.floor(expected * 0.98) - ms.length);
  errors += missing;
  kinds.set("missing:", missing);
  ms.sort((a, b) => a - b);
  return {
    rps: ms.length / opts.durationS,
    p50Ms: percentileOf(ms, 50),
    p99Ms: percentileOf(ms, 99),
    requests: ms.length,
    errors,
    errorKinds: kindsOf(kinds),
  };
}

/** h2load's summary: what it reports besides its min/max/mean latency table. */
export interface H2loadReport {
  rps: number;
  /** Requests completed (any status). */
  done: number;
  /** Completed with status 2xx or 3xx. */
  succeeded: number;
  /** Not succeeded: non-2xx/3xx statuses plus `errored` (h2load counts both). */
  failed: number;
  /** Failed below HTTP: connection errors, RST_STREAM. */
  errored: number;
  timeout: number;
  statuses: { "2xx": number; "3xx": number; "4xx": number; "5xx": number };
}

/** h2load's report, from "finished in ..., N req/s" and the counts below it. */
export function parseH2load(text: string): H2loadReport {
  const fin = /^finished in [\d.]+\w+, ([\d.]+) req\/s/m.exec(text);
  const req =
    /^requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m
      .exec(text);
  const st = /^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m.exec(text);
  if (!fin || !req || !st) throw new Error(`h2load output not understood:\n${text}`);
  const n = (m: RegExpExecArray, i: number) => Number(m[i]);
  return {
    rps: Number(fin[1]),
    done: n(req, 1),
    succeeded: n(req, 2),
    failed: n(req, 3),
    errored: n(req, 4),
    timeout: n(req, 5),
    statuses: { "2xx": n(st, 1), "3xx": n(st, 2), "4xx": n(st, 3), "5xx": n(st, 4) },
  };
}

/**
 * h2load's --log-file: one line per completed request, "<start µs since the
 * epoch>\t<status>\t<µs taken>"; status -1 for a request that failed below HTTP.
 */
export function parseH2loadLog(text: string): { ms: number[]; statuses: number[] } {
  const ms: number[] = [];
  const statuses: number[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const f = line.split("\t");
    const status = Number(f[1]);
    const us = Number(f[2]);
    if (f.length !== 3 || !Number.isInteger(status) || !Number.isFinite(us)) {
      throw new Error(`h2load log line not understood: "${line}"`);
    }
    ms.push(us / 1000);
    statuses.push(status);
  }
  return { ms, statuses };
}

/** What failed in an h2load report, e.g. "status 5xx: 3, errored 2"; empty if nothing. */
export function h2loadErrorKinds(r: H2loadReport): string {
  const kinds = new Map<string, number>();
  for (const k of ["4xx", "5xx"] as const) kinds.set(`status ${k}:`, r.statuses[k]);
  kinds.set("errored", r.errored);
  kinds.set("timeout", r.timeout);
  return kindsOf(kinds);
}

/**
 * h2load over h2c with prior knowledge (its default for http:// URLs):
 * `connections` connections of up to `streams` concurrent streams each, for
 * `durationS` after `warmS` unmeasured. `data` makes it a POST of that file's bytes. p50/p99 come from
 * every request's time in its --log-file (its summary has only min/max/mean).
 */
export async function h2load(
  url: string,
  opts: {
    connections: number;
    streams: number;
    durationS: number;
    warmS?: number;
    threads?: number;
    authority?: string;
    headers?: string[];
    data?: string;
  },
): Promise<LoadResult & { report: H2loadReport }> {
  const log = await Deno.makeTempFile({ prefix: "bench-h2load-", suffix: ".log" });
  try {
    const args = [
      "-c",
      String(opts.connections),
      "-m",
      String(opts.streams),
      "-t",
      String(opts.threads ?? 1),
      "-D",
      String(opts.durationS),
      `--log-file=${log}`,
      ...(opts.authority ? ["-H", `:authority: ${opts.authority}`] : []),
      ...(opts.headers ?? []).flatMap((h) => ["-H", h]),
      ...(opts.data ? ["-d", opts.data] : []),
      url,
    ];
    // Warm-up as a run of its own, like wrk's: a proxy that rebalances while it grows (the
    // interceptor sends GOAWAY) loses h2load's connections, and h2load does not reconnect.
    if (opts.warmS) {
      const warm = args.map((a) => (a.startsWith("--log-file=") ? "--log-file=/dev/null" : a));
      warm[warm.indexOf("-D") + 1] = String(opts.warmS);
      await run("h2load", warm);
    }
    const report = parseH2load(await run("h2load", args));
    const { ms } = parseH2loadLog(await Deno.readTextFile(log));
    ms.sort((a, b) => a - b);
    return {
      rps: report.rps,
      p50Ms: percentileOf(ms, 50),
      p99Ms: percentileOf(ms, 99),
      requests: report.done,
      errors: report.failed,
      errorKinds: h2loadErrorKinds(report),
      report,
    };
  } finally {
    await Deno.remove(log).catch(() => {});
  }
}
