/**
 * A small fetch-based Kubernetes client for the cluster tooling itself (node
 * agent, CRD install, test helpers). It uses Deno.createHttpClient with the
 * kubeconfig's CA and client certificate, so it needs no Node compatibility
 * layer and starts fast in the cluster daemon; tests may equally use
 * @kubernetes/client-node through `cluster.kubeConfig`.
 */

import { parse as parseYaml, parseAllDocuments } from "yaml";

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
    generateName?: string;
    ownerReferences?: unknown[];
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export interface KubeList<T = KubeObject> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export interface WatchEvent<T = KubeObject> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

export class KubeError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "KubeError";
  }
}

export interface KubeCredentials {
  server: string;
  caPem?: string;
  certPem?: string;
  keyPem?: string;
  token?: string;
  namespace?: string;
}

function decodeB64(text: string): string {
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/** Reads the current context of a kubeconfig file (embedded data or file paths). */
export async function credentialsFromKubeconfig(path: string): Promise<KubeCredentials> {
  // deno-lint-ignore no-explicit-any
  const cfg = parseYaml(await Deno.readTextFile(path)) as any;
  const dir = path.replace(/\/[^/]*$/, "");
  const resolve = (p: string) => (p.startsWith("/") ? p : `${dir}/${p}`);
  const ctxName = cfg?.["current-context"];
  // deno-lint-ignore no-explicit-any
  const ctx = (cfg?.contexts ?? []).find((c: any) => c.name === ctxName)?.context;
  if (!ctx) throw new Error(`kubeconfig ${path} has no current-context "${ctxName}"`);
  // deno-lint-ignore no-explicit-any
  const cluster = (cfg.clusters ?? []).find((c: any) => c.name === ctx.cluster)?.cluster;
  // deno-lint-ignore no-explicit-any
  const user = (cfg.users ?? []).find((u: any) => u.name === ctx.user)?.user ?? {};
  if (!cluster?.server) {
    throw new Error(`kubeconfig ${path}: cluster "${ctx.cluster}" has no server`);
  }
  const pick = async (data?: string, file?: string) =>
    data ? decodeB64(data) : file ? await Deno.readTextFile(resolve(file)) : undefined;
  return {
    server: String(cluster.server).replace(/\/$/, ""),
    caPem: await pick(cluster["certificate-authority-data"], cluster["certificate-authority"]),
    certPem: await pick(user["client-certificate-data"], user["client-certificate"]),
    keyPem: await pick(user["client-key-data"], user["client-key"]),
    token: user.token ??
      (user.tokenFile ? await Deno.readTextFile(resolve(user.tokenFile)) : undefined),
    namespace: ctx.namespace,
  };
}

export interface RequestOptions {
  body?: unknown;
  contentType?: string;
  query?: Record<string, string | number | boolean | undefined>;
  signal?: AbortSignal;
}

interface ApiResource {
  name: string;
  kind: string;
  namespaced: boolean;
}

export class KubeClient {
  readonly #http: Deno.HttpClient;
  readonly #headers: Record<string, string>;
  readonly #discovery = new Map<string, Promise<ApiResource[]>>();

  constructor(readonly credentials: KubeCredentials) {
    this.#http = Deno.createHttpClient({
      caCerts: credentials.caPem ? [credentials.caPem] : undefined,
      ...(credentials.certPem && credentials.keyPem
        ? { cert: credentials.certPem, key: credentials.keyPem }
        : {}),
    });
    this.#headers = credentials.token
      ? { authorization: `Bearer ${credentials.token.trim()}` }
      : {};
  }

  static async fromKubeconfig(path: string): Promise<KubeClient> {
    return new KubeClient(await credentialsFromKubeconfig(path));
  }

  get server(): string {
    return this.credentials.server;
  }

  close(): void {
    this.#http.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #url(path: string, query?: RequestOptions["query"]): string {
    const url = new URL(this.credentials.server + path);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    return url.toString();
  }

  async #fetch(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { ...this.#headers, accept: "application/json" };
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["content-type"] = options.contentType ?? "application/json";
      body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
    }
    return await fetch(this.#url(path, options.query), {
      method,
      headers,
      body,
      client: this.#http,
      signal: options.signal,
    });
  }

  /** Sends a request; throws KubeError (with the apiserver's message) on non-2xx. */
  async request<T = KubeObject>(
    method: string,
    path: string,
    options: RequestOptions = {},
  ): Promise<T> {
    const res = await this.#fetch(method, path, options);
    const text = await res.text();
    if (!res.ok) {
      let reason = res.statusText;
      let message = text;
      try {
        const status = JSON.parse(text);
        reason = status.reason ?? reason;
        message = status.message ?? text;
      } catch {
        // Not a Status object; keep the raw text.
      }
      throw new KubeError(res.status, reason, `${method} ${path}: ${res.status} ${message}`);
    }
    if (!text) return undefined as T;
    // Health endpoints (/readyz, /livez) answer plain text.
    const json = (res.headers.get("content-type") ?? "").includes("json");
    return (json ? JSON.parse(text) : text) as T;
  }

  get<T = KubeObject>(path: string, options?: RequestOptions): Promise<T> {
    return this.request<T>("GET", path, options);
  }

  /** GET that returns undefined on 404. */
  async getOrUndefined<T = KubeObject>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path);
    } catch (e) {
      if (e instanceof KubeError && e.status === 404) return undefined;
      throw e;
    }
  }

  list<T = KubeObject>(path: string, query?: RequestOptions["query"]): Promise<KubeList<T>> {
    return this.request<KubeList<T>>("GET", path, { query });
  }

  create<T = KubeObject>(path: string, body: unknown): Promise<T> {
    return this.request<T>("POST", path, { body });
  }

  patch<T = KubeObject>(
    path: string,
    body: unknown,
    type: "merge" | "strategic" | "json" | "apply" = "merge",
    query?: RequestOptions["query"],
  ): Promise<T> {
    const contentType = {
      merge: "application/merge-patch+json",
      strategic: "application/strategic-merge-patch+json",
      json: "application/json-patch+json",
      apply: "application/apply-patch+yaml",
    }[type];
    return this.request<T>("PATCH", path, { body, contentType, query });
  }

  /** DELETE; a 404 counts as success. */
  async delete(path: string, body?: unknown, query?: RequestOptions["query"]): Promise<void> {
    try {
      await this.request("DELETE", path, { body, query });
    } catch (e) {
      if (e instanceof KubeError && e.status === 404) return;
      throw e;
    }
  }

  /**
   * Streams watch events of a collection path until the server ends the watch
   * or the signal aborts. Throws KubeError on a non-2xx answer; an ERROR event
   * with code 410 means the caller must list again.
   */
  async *watch<T = KubeObject>(
    path: string,
    options: {
      resourceVersion?: string;
      signal?: AbortSignal;
      query?: RequestOptions["query"];
      timeoutSeconds?: number;
    } = {},
  ): AsyncGenerator<WatchEvent<T>> {
    const res = await this.#fetch("GET", path, {
      signal: options.signal,
      query: {
        ...options.query,
        watch: true,
        allowWatchBookmarks: true,
        resourceVersion: options.resourceVersion,
        timeoutSeconds: options.timeoutSeconds ?? 300,
      },
    });
    if (!res.ok || !res.body) {
      const text = await res.text();
      throw new KubeError(res.status, res.statusText, `watch ${path}: ${res.status} ${text}`);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let nl: number;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (line) yield JSON.parse(line) as WatchEvent<T>;
        }
      }
    } catch (e) {
      if (options.signal?.aborted) return;
      throw e;
    } finally {
      await reader.cancel().catch(() => {});
    }
  }

  /** Resources of one group/version, from discovery (cached; refresh on a miss). */
  async #resources(apiVersion: string, refresh: boolean): Promise<ApiResource[]> {
    if (refresh) this.#discovery.delete(apiVersion);
    let p = this.#discovery.get(apiVersion);
    if (!p) {
      const path = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
      p = this.get<{ resources: ApiResource[] }>(path).then((r) =>
        r.resources.filter((x) => !x.name.includes("/"))
      );
      p.catch(() => this.#discovery.delete(apiVersion));
      this.#discovery.set(apiVersion, p);
    }
    return await p;
  }

  /**
   * The REST path of an object (or its collection when name is omitted),
   * found through discovery so CRDs work too.
   */
  async pathFor(
    apiVersion: string,
    kind: string,
    namespace?: string,
    name?: string,
  ): Promise<string> {
    let res: ApiResource | undefined;
    for (const refresh of [false, true]) {
      try {
        res = (await this.#resources(apiVersion, refresh)).find((r) => r.kind === kind);
      } catch (e) {
        if (!(e instanceof KubeError && e.status === 404) || refresh) throw e;
      }
      if (res) break;
    }
    if (!res) {
      throw new Error(
        `the apiserver does not serve kind ${kind} in ${apiVersion} (is its CRD installed?)`,
      );
    }
    const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    const ns = res.namespaced ? `/namespaces/${namespace ?? "default"}` : "";
    return `${base}${ns}/${res.name}${name ? `/${encodeURIComponent(name)}` : ""}`;
  }

  /**
   * Server-side applies objects (like `kubectl apply --server-side
   * --force-conflicts`), in order; returns the applied objects.
   */
  async apply(
    input: string | KubeObject | KubeObject[],
    options: { namespace?: string; fieldManager?: string } = {},
  ): Promise<KubeObject[]> {
    const objects = typeof input === "string"
      ? parseManifests(input)
      : Array.isArray(input)
      ? input
      : [input];
    const out: KubeObject[] = [];
    for (const obj of objects) {
      const apiVersion = obj.apiVersion;
      const kind = obj.kind;
      const name = obj.metadata?.name;
      if (!apiVersion || !kind || !name) {
        throw new Error(
          `apply: every object needs apiVersion, kind and metadata.name; got ${
            JSON.stringify(obj).slice(0, 200)
          }`,
        );
      }
      const namespace = obj.metadata?.namespace ?? options.namespace ?? this.credentials.namespace;
      const path = await this.pathFor(apiVersion, kind, namespace, name);
      out.push(
        await this.patch(path, JSON.stringify(obj), "apply", {
          fieldManager: options.fieldManager ?? "keda-http-deno-tests",
          force: true,
        }),
      );
    }
    return out;
  }
}

/** Parses multi-document YAML (or JSON) into objects, expanding v1 Lists. */
export function parseManifests(text: string): KubeObject[] {
  const out: KubeObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) {
      throw new Error(`invalid YAML manifest: ${doc.errors[0]?.message}`);
    }
    const value = doc.toJS() as KubeObject | null;
    if (!value) continue;
    if (value.kind === "List" && Array.isArray(value.items)) {
      out.push(...(value.items as KubeObject[]));
    } else out.push(value);
  }
  return out;
}
