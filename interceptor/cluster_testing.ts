/**
 * Helpers for the interceptor's cluster tests: apps in network namespaces
 * the test creates (EndpointSlices reject loopback addresses), the
 * interceptor as a real process, and the Kubernetes objects a route needs.
 */
import { sleep } from "../shared/lifetime.ts";
import { createTestNetns, type TestNetns } from "../tests/fixtures/netns.ts";

const REPO = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
export interface AppProcess {
  name: string;
  pid: number;
  ip: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * A network namespace with a veth to the host (tests/fixtures/netns.ts), one
 * address inside. Apps started in it are reachable from the host at `ip`;
 * nothing else is.
 */
export class Netns implements AsyncDisposable {
  readonly #procs = new Set<Deno.ChildProcess>();

  private constructor(readonly netns: TestNetns) {}

  get name(): string {
    return this.netns.name;
  }
  get hostIp(): string {
    return this.netns.hostAddress;
  }
  get ip(): string {
    return this.netns.addresses[0]!;
  }

  static async create(): Promise<Netns> {
    return new Netns(await createTestNetns(1));
  }

  /**
   * Runs interceptor/testdata/upstream_app.ts (or `script`, which must print
   * "listening <port>") inside; resolves once it listens.
   */
  async startApp(
    opts: {
      name: string;
      port?: number;
      h2c?: boolean;
      script?: string;
      denoFlags?: string[];
      /** More environment for the app (e.g. TLS_CERT and TLS_KEY). */
      env?: Record<string, string>;
    },
  ): Promise<AppProcess> {
    const port = opts.port ?? 8080;
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.name,
        Deno.execPath(),
        "run",
        "-A",
        "--quiet",
        "--unstable-no-legacy-abort",
        ...(opts.denoFlags ?? []),
        `--config=${REPO}/deno.json`,
        opts.script ?? `${REPO}/interceptor/testdata/upstream_app.ts`,
      ],
      env: {
        PORT: String(port),
        NAME: opts.name,
        ...(opts.h2c ? { H2C: "1" } : {}),
        ...opts.env,
      },
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#procs.add(child);
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const deadline = Date.now() + 30_000;
    while (!/listening \d+/.test(text)) {
      const timer = sleep(Math.max(0, deadline - Date.now()));
      const r = await Promise.race([reader.read(), timer.then(() => null)]);
      if (r === null) throw new Error(`app ${opts.name} did not start within 30 s`);
      if (r.done) throw new Error(`app ${opts.name} exited before listening: ${text}`);
      text += r.value;
    }
    // Keep draining stdout so the app never blocks on it.
    (async () => {
      try {
        while (!(await reader.read()).done) { /* discard */ }
      } catch { /* closed */ }
    })();
    const stop = async () => {
      if (!this.#procs.has(child)) return;
      this.#procs.delete(child);
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    };
    return { name: opts.name, ip: this.ip, port, pid: child.pid, stop };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const p of this.#procs) {
      try {
        p.kill("SIGKILL");
      } catch { /* gone */ }
      await p.status;
    }
    this.#procs.clear();
    await this.netns.close();
  }
}

export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export interface InterceptorProcess extends AsyncDisposable {
  proxyPort: number;
  adminPort: number;
  proxyUrl: string;
  adminUrl: string;
  child: Deno.ChildProcess;
  /** Log lines (JSON) written so far. */
  logs(): string[];
  admin(path: string, init?: RequestInit): Promise<Response>;
  adminJson<T = unknown>(path: string): Promise<T>;
  /** Sends a request with a Host header to the proxy port. */
  request(host: string, path: string, init?: RequestInit): Promise<Response>;
  signal(sig: Deno.Signal): void;
  /** Waits for the process to exit on its own. */
  exited(): Promise<Deno.CommandStatus>;
  stop(): Promise<Deno.CommandStatus>;
}

/** Starts interceptor/main.ts as a process and waits for /readyz. */
export async function startInterceptor(opts: {
  kubeconfigPath: string;
  env?: Record<string, string>;
  /** Extra flags for `deno run` (e.g. --v8-flags=...). */
  denoFlags?: string[];
}): Promise<InterceptorProcess> {
  const proxyPort = freePort();
  let adminPort = freePort();
  while (adminPort === proxyPort) adminPort = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      "--quiet",
      ...(opts.denoFlags ?? []),
      `--config=${REPO}/deno.json`,
      `${REPO}/interceptor/main.ts`,
    ],
    env: {
      KUBECONFIG: opts.kubeconfigPath,
      KEDA_HTTP_PROXY_PORT: String(proxyPort),
      KEDA_HTTP_ADMIN_PORT: String(adminPort),
      KEDA_HTTP_BIND_ADDRESS: "127.0.0.1",
      KEDA_HTTP_SHUTDOWN_DELAY: "0s",
      KEDA_HTTP_PROXY_WORKERS: "2",
      // Interceptors of concurrent tests share this host: not the default 2223.
      OTEL_PROM_EXPORTER_PORT: String(freePort()),
      ...opts.env,
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const pump = (async () => {
    let rest = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        lines.push(rest.slice(0, nl));
        rest = rest.slice(nl + 1);
      }
    }
    if (rest) lines.push(rest);
  })();
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const proxyUrl = `http://127.0.0.1:${proxyPort}`;
  const client = Deno.createHttpClient({ allowHost: true });
  let exited: Deno.CommandStatus | undefined;
  let clientClosed = false;
  const status = child.status.then((s) => (exited = s));
  const deadline = Date.now() + 60_000;
  while (true) {
    if (exited) {
      await pump;
      throw new Error(`interceptor exited (${exited.code}) before ready:\n${lines.join("\n")}`);
    }
    try {
      const r = await fetch(`${adminUrl}/readyz`);
      await r.body?.cancel();
      if (r.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await status;
      throw new Error(`interceptor not ready within 60 s:\n${lines.join("\n")}`);
    }
    await sleep(100);
  }
  const p: InterceptorProcess = {
    proxyPort,
    adminPort,
    proxyUrl,
    adminUrl,
    child,
    logs: () => lines,
    admin: (path, init) => fetch(`${adminUrl}${path}`, init),
    async adminJson<T>(path: string) {
      const r = await fetch(`${adminUrl}${path}`);
      if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
      return await r.json() as T;
    },
    request: (host, path, init = {}) =>
      fetch(`${proxyUrl}${path}`, {
        ...init,
        client,
        headers: { ...Object.fromEntries(new Headers(init.headers ?? {})), host },
      }),
    signal: (sig) => {
      try {
        child.kill(sig);
      } catch { /* gone */ }
    },
    async exited() {
      const s = await status;
      await pump;
      return s;
    },
    async stop() {
      if (!exited) {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
        const timer = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch { /* gone */ }
        }, 20_000);
        await status;
        clearTimeout(timer);
      }
      await pump;
      if (!clientClosed) {
        clientClosed = true;
        client.close();
      }
      return exited!;
    },
    async [Symbol.asyncDispose]() {
      await p.stop();
    },
  };
  return p;
}

/** The objects of one routed app: Service (no selector), EndpointSlice, HTTPScaledObject. */
export function appObjects(opts: {
  namespace: string;
  name: string;
  spec?: Record<string, unknown>;
  servicePort?: number;
  appProtocol?: string;
}): { service: Record<string, unknown>; httpso: Record<string, unknown> } {
  return {
    service: {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: opts.name, namespace: opts.namespace },
      spec: {
        ports: [{
          name: "http",
          port: opts.servicePort ?? 80,
          targetPort: 8080,
          ...(opts.appProtocol ? { appProtocol: opts.appProtocol } : {}),
        }],
      },
    },
    httpso: {
      apiVersion: "http.keda.sh/v1alpha1",
      kind: "HTTPScaledObject",
      metadata: { name: opts.name, namespace: opts.namespace },
      spec: {
        scaleTargetRef: {
          name: opts.name,
          kind: "Deployment",
          apiVersion: "apps/v1",
          service: opts.name,
          port: opts.servicePort ?? 80,
        },
        ...opts.spec,
      },
    },
  };
}

/** An EndpointSlice for a selector-less Service: these addresses, ready or not. */
export function endpointSlice(opts: {
  namespace: string;
  service: string;
  endpoints: Array<{ ip: string; ready: boolean }>;
  port?: number;
  appProtocol?: string;
}): Record<string, unknown> {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: `${opts.service}-manual`,
      namespace: opts.namespace,
      labels: { "kubernetes.io/service-name": opts.service },
    },
    addressType: "IPv4",
    ports: [{
      name: "http",
      port: opts.port ?? 8080,
      protocol: "TCP",
      ...(opts.appProtocol ? { appProtocol: opts.appProtocol } : {}),
    }],
    endpoints: opts.endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready, serving: e.ready, terminating: false },
    })),
  };
}
