/**
 * nginx as a reference reverse proxy for differential tests: one process on
 * a loopback port, streaming both ways (no request or response buffering),
 * keep-alive to one upstream. Everything it writes lives in a temp dir that
 * is removed on dispose.
 */

export interface Nginx extends AsyncDisposable {
  port: number;
  /** The temp dir holding nginx.conf, the logs and the pid file. */
  dir: string;
  /** nginx's error log so far (for failure messages). */
  errorLog(): Promise<string>;
  close(): Promise<void>;
}

const STOP_GRACE_MS = 5_000;
const START_TIMEOUT_MS = 15_000;

/** The nginx binary: on PATH, else Debian's /usr/sbin (not on a non-root PATH). */
async function nginxBinary(): Promise<string> {
  for (const bin of ["nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx"]) {
    try {
      const out = await new Deno.Command(bin, { args: ["-v"], stdout: "null", stderr: "null" })
        .output();
      if (out.success) return bin;
    } catch {
      // Not there; try the next place.
    }
  }
  throw new Error("nginx is not installed (apt-get install nginx); the nginx diff tests need it");
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = (l.addr as Deno.NetAddr).port;
  l.close();
  return p;
}

function configOf(dir: string, port: number, upstream: string): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 256; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream app { server ${upstream}; keepalive 16; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_buffering off;
    }
  }
}
`;
}

/**
 * Starts nginx in front of `upstream` ("127.0.0.1:port"). Resolves once its
 * port accepts connections (probed with a bare connect, so the upstream sees
 * nothing). Throws when the binary is missing: the diff tests must fail, not
 * skip, without it.
 */
export async function startNginx(upstream: string): Promise<Nginx> {
  const bin = await nginxBinary();
  const dir = await Deno.makeTempDir({ prefix: "nginx-diff-" });
  let child: Deno.ChildProcess | undefined;
  const stop = async () => {
    if (child) {
      const c = child;
      child = undefined;
      try {
        c.kill("SIGTERM");
      } catch {
        // Exited already.
      }
      const timer = setTimeout(() => {
        try {
          c.kill("SIGKILL");
        } catch {
          // Exited already.
        }
      }, STOP_GRACE_MS);
      try {
        await c.status;
      } finally {
        clearTimeout(timer);
      }
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    const port = freePort();
    await Deno.writeTextFile(`${dir}/nginx.conf`, configOf(dir, port, upstream));
    child = new Deno.Command(bin, {
      args: ["-c", `${dir}/nginx.conf`, "-p", dir, "-e", `${dir}/error.log`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    let exited = false;
    child.status.then(() => (exited = true));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (true) {
      if (exited) throw new Error(`nginx exited at start: ${await readLog(dir)}`);
      try {
        const probe = await Deno.connect({ hostname: "127.0.0.1", port });
        probe.close();
        break;
      } catch {
        if (Date.now() > deadline) {
          throw new Error(
            `nginx did not listen within ${START_TIMEOUT_MS} ms: ${await readLog(dir)}`,
          );
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const n: Nginx = {
      port,
      dir,
      errorLog: () => readLog(dir),
      close: stop,
      [Symbol.asyncDispose]: stop,
    };
    return n;
  } catch (e) {
    await stop();
    throw e;
  }
}

async function readLog(dir: string): Promise<string> {
  try {
    return await Deno.readTextFile(`${dir}/error.log`);
  } catch {
    return "(no error.log)";
  }
}
