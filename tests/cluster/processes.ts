/**
 * Child processes of the cluster (etcd, apiserver, ...). Each one writes its
 * output to a log file through a `sh -c 'exec … >>log 2>&1'` wrapper (so it
 * never depends on our pipes) and gets a pid file under <state>/pids/, so a
 * later run can kill what a crashed run left behind. A process is only ever
 * killed after checking that its command line still mentions the cluster's
 * state dir, so a recycled pid is never hit.
 */

import { sleep } from "../../shared/lifetime.ts";

export interface ManagedProcess {
  name: string;
  pid: number;
  logPath: string;
  status: Promise<Deno.CommandStatus>;
  /** SIGTERM, wait up to graceMs, then SIGKILL; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  name: string;
  command: string;
  args: string[];
  logPath: string;
  pidDir: string;
  env?: Record<string, string>;
  cwd?: string;
  /** Own session and process group (detached from the terminal). */
  newSession?: boolean;
}

export function startProcess(options: StartOptions): ManagedProcess {
  const wrapper = `exec "$@" >>'${options.logPath.replaceAll("'", "'\\''")}' 2>&1`;
  const argv = ["sh", "-c", wrapper, "sh", options.command, ...options.args];
  const [cmd, ...rest] = options.newSession ? ["setsid", ...argv] : argv;
  const child = new Deno.Command(cmd!, {
    args: rest,
    env: options.env,
    cwd: options.cwd,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const pidFile = `${options.pidDir}/${options.name}.pid`;
  Deno.writeTextFileSync(pidFile, `${child.pid}\n`);
  const status = child.status.finally(() => Deno.remove(pidFile).catch(() => {}));
  return {
    name: options.name,
    pid: child.pid,
    logPath: options.logPath,
    status,
    stop: (graceMs = 5_000) => stopChild(child.pid, status, graceMs),
  };
}

async function stopChild(
  pid: number,
  status: Promise<Deno.CommandStatus>,
  graceMs: number,
): Promise<void> {
  let done = false;
  status.then(() => (done = true), () => (done = true));
  try {
    Deno.kill(pid, "SIGTERM");
  } catch {
    // Already gone.
  }
  const deadline = Date.now() + graceMs;
  while (!done && Date.now() < deadline) await sleep(50);
  if (!done) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  await status.catch(() => {});
}

/** The NUL-separated command line of a pid joined by spaces, or undefined. */
export function cmdline(pid: number): string | undefined {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
  } catch {
    return undefined;
  }
}

/** True while /proc has an entry for pid (a zombie counts as alive). */
export function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** True when pid runs and its command line mentions `marker`. */
export function aliveWith(pid: number, marker: string): boolean {
  const line = cmdline(pid);
  return line !== undefined && line.includes(marker);
}

/**
 * Kills every process recorded in <pidDir>/*.pid whose command line still
 * mentions `marker`; used to clean up after a crashed cluster.
 */
export async function killRecorded(pidDir: string, marker: string): Promise<number[]> {
  const killed: number[] = [];
  let entries: Deno.DirEntry[] = [];
  try {
    entries = [...Deno.readDirSync(pidDir)];
  } catch {
    return killed;
  }
  for (const e of entries) {
    if (!e.name.endsWith(".pid")) continue;
    const pid = Number(Deno.readTextFileSync(`${pidDir}/${e.name}`).trim());
    if (Number.isInteger(pid) && pid > 1 && aliveWith(pid, marker)) {
      try {
        Deno.kill(pid, "SIGKILL");
        killed.push(pid);
      } catch {
        // Raced with its exit.
      }
    }
  }
  // Let the kernel reap them before callers remove files they hold open.
  for (let i = 0; i < 40 && killed.some((p) => aliveWith(p, marker)); i++) await sleep(50);
  return killed;
}

/** A free TCP port on the given address (bound and released; a tiny race remains). */
export function freePort(hostname = "127.0.0.1"): number {
  const l = Deno.listen({ hostname, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Runs a command to completion; throws with its stderr when it fails. */
export async function run(
  command: string,
  args: string[],
  options: { what?: string; allowFail?: boolean; stdin?: string; env?: Record<string, string> } =
    {},
): Promise<{ success: boolean; stdout: string; stderr: string }> {
  const child = new Deno.Command(command, {
    args,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  const result = {
    success: out.success,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
  if (!out.success && !options.allowFail) {
    throw new Error(
      `${
        options.what ?? `${command} ${args.join(" ")}`
      } failed (exit ${out.code}): ${result.stderr.trim()}`,
    );
  }
  return result;
}
