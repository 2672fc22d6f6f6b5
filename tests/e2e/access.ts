/**
 * How the suite reaches Services and pods. On our local cluster the host
 * reaches ClusterIPs (kube-proxy's OUTPUT rules) and pod IPs (the bridge)
 * directly. On an existing cluster (kind) it uses `kubectl port-forward`, or,
 * for the interceptor proxy, KEDAHTTP_E2E_PROXY_ADDRESS (host:port of a
 * NodePort or load balancer) when given: a port-forward is bound to one pod
 * and dies with it, which the resilience case would count against us.
 */
import type { KubeClient } from "../../shared/kube.ts";
import type { HttpTarget } from "./http_client.ts";

export interface AccessOptions {
  client: KubeClient;
  /** True on our local cluster: direct routes to ClusterIPs and pod IPs. */
  direct: boolean;
  kubectl: string;
  kubeconfigPath: string;
}

interface Forward {
  child: Deno.ChildProcess;
  target: HttpTarget;
}

export class ClusterAccess implements AsyncDisposable {
  readonly #o: AccessOptions;
  readonly #forwards = new Map<string, Promise<Forward>>();

  constructor(options: AccessOptions) {
    this.#o = options;
  }

  get direct(): boolean {
    return this.#o.direct;
  }

  /** A Service port (its ClusterIP, or a port-forward to it). */
  async service(namespace: string, name: string, port: number): Promise<HttpTarget> {
    if (this.#o.direct) {
      const svc = await this.#o.client.get<{ spec?: { clusterIP?: string } }>(
        `/api/v1/namespaces/${namespace}/services/${name}`,
      );
      const ip = svc.spec?.clusterIP;
      if (!ip || ip === "None") throw new Error(`Service ${namespace}/${name} has no ClusterIP`);
      return { hostname: ip, port };
    }
    return (await this.#forward(namespace, `svc/${name}`, port)).target;
  }

  /** The interceptor proxy as clients reach it. */
  async proxy(namespace: string, service: string, port: number): Promise<HttpTarget> {
    const override = Deno.env.get("KEDAHTTP_E2E_PROXY_ADDRESS");
    if (!this.#o.direct && override) {
      const i = override.lastIndexOf(":");
      if (i <= 0) {
        throw new Error(`KEDAHTTP_E2E_PROXY_ADDRESS="${override}" is not host:port`);
      }
      return { hostname: override.slice(0, i), port: Number(override.slice(i + 1)) };
    }
    return await this.service(namespace, service, port);
  }

  /** A pod's port (its IP, or a port-forward to it). */
  async pod(namespace: string, name: string, port: number, ip?: string): Promise<HttpTarget> {
    if (this.#o.direct) {
      let podIP = ip;
      if (!podIP) {
        const pod = await this.#o.client.get<{ status?: { podIP?: string } }>(
          `/api/v1/namespaces/${namespace}/pods/${name}`,
        );
        podIP = pod.status?.podIP;
      }
      if (!podIP) throw new Error(`pod ${namespace}/${name} has no IP yet`);
      return { hostname: podIP, port };
    }
    return (await this.#forward(namespace, `pod/${name}`, port)).target;
  }

  #forward(namespace: string, resource: string, port: number): Promise<Forward> {
    const key = `${namespace}/${resource}:${port}`;
    let f = this.#forwards.get(key);
    if (!f) {
      f = this.#startForward(namespace, resource, port);
      this.#forwards.set(key, f);
      f.catch(() => this.#forwards.delete(key));
    }
    return f;
  }

  async #startForward(namespace: string, resource: string, port: number): Promise<Forward> {
    const child = new Deno.Command(this.#o.kubectl, {
      args: [
        "--kubeconfig",
        this.#o.kubeconfigPath,
        "port-forward",
        "-n",
        namespace,
        "--address",
        "127.0.0.1",
        resource,
        `:${port}`,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // "Forwarding from 127.0.0.1:41234 -> 8080"
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(text);
      if (m) {
        // Keep draining stdout so kubectl never blocks on a full pipe.
        (async () => {
          while (!(await reader.read()).done) { /* drain */ }
        })().catch(() => {});
        child.stderr.cancel().catch(() => {});
        return { child, target: { hostname: "127.0.0.1", port: Number(m[1]) } };
      }
    }
    try {
      child.kill();
    } catch {
      // Exited.
    }
    const err = await new Response(child.stderr).text().catch(() => "");
    throw new Error(
      `kubectl port-forward -n ${namespace} ${resource} :${port} did not start: ${err || text}`,
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const f of this.#forwards.values()) {
      try {
        const { child } = await f;
        child.kill();
        await child.status;
      } catch {
        // Never started, or gone.
      }
    }
    this.#forwards.clear();
  }
}
