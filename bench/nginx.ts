/**
 * nginx as the benchmark's reference proxy: run with a given configuration
 * in its own directory (pid, logs, temp files), ready once it accepts
 * connections on `port`, stopped gracefully (SIGQUIT) then forcibly.
 */
import { sleep } from "../shared/lifetime.ts";

export interface NginxProcess {
  pid: number;
  stop(): Promise<void>;
}

/** `conf` must say `daemon off;` and keep pid and logs under `dir`. */
export async function startNginx(dir: string, conf: string, port: number): Promise<NginxProcess> {
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  const child = new Deno.Command("nginx", {
    args: ["-c", `${dir}/nginx.conf`, "-p", dir, "-e", `${dir}/error.log`],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const deadline = Date.now() + 10_000;
  while (true) {
    try {
      // A TCP connection, not a request: an http2-only listener (nginx before
      // 1.25) answers no HTTP/1.1.
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      if (Date.now() > deadline) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        await child.status;
        await child.stderr.cancel();
        throw new Error(`nginx did not start: see ${dir}/error.log`);
      }
      await sleep(100);
    }
  }
  return {
    pid: child.pid,
    async stop() {
      try {
        child.kill("SIGQUIT");
      } catch { /* gone */ }
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await child.status;
      clearTimeout(t);
      await child.stderr.cancel();
    },
  };
}

/** The part of a bench nginx.conf outside `http {}`: foreground, files under `dir`. */
export function nginxMain(dir: string, workers: number): string {
  return `worker_processes ${workers};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }`;
}
