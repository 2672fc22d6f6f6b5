/**
 * Kubernetes API access without @kubernetes/client-node (loading it costs
 * tens of MB of memory, README Measured): credentials from a kubeconfig file or the pod's
 * service account, requests over Deno's native fetch with a per-cluster TLS
 * client, and the Informer (list+watch cache that relists on 410 Gone and
 * backs off with jitter). kube.ts re-exports all of this and adds the
 * client-node KubeConfig entry points.
 */
import type { Logger } from "./log.ts";
import { backoffMs, sleep } from "./lifetime.ts";

export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "KubeApiError";
  }
}

export function isNotFound(e: unknown): boolean {
  return e instanceof KubeApiError && e.status === 404;
}
export function isConflict(e: unknown): boolean {
  return e instanceof KubeApiError && e.status === 409;
}
export function isAlreadyExists(e: unknown): boolean {
  return e instanceof KubeApiError && e.status === 409 && e.reason === "AlreadyExists";
}
export function isGone(e: unknown): boolean {
  return e instanceof KubeApiError && e.status === 410;
}

/** Objects per page when listing (the API server's `limit`). */
export const LIST_PAGE_SIZE = 500;

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined>;
  /** Defaults to application/json; use merge-patch / apply-patch for PATCH. */
  contentType?: string;
  signal?: AbortSignal;
}

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: Array<Record<string, unknown>>;
  deletionTimestamp?: string | null;
  creationTimestamp?: string;
  [k: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  [k: string]: unknown;
}

export interface KubeList<T> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export interface KubeCredentials {
  server: string;
  caCerts?: string[];
  cert?: string;
  key?: string;
  token?: string;
  tokenFile?: string;
  namespace: string;
}

const decoder = new TextDecoder();

/** A file's text (credentials files). */
export function readText(path: string): string {
  return decoder.decode(Deno.readFileSync(path));
}

/** Base64 (kubeconfig *-data fields) -> text. */
export function fromBase64(data: string): string {
  return decoder.decode(Uint8Array.from(atob(data), (c) => c.charCodeAt(0)));
}

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

interface NamedEntry<T> {
  name: string;
  [k: string]: unknown;
  cluster?: T;
  user?: T;
  context?: T;
}

/** The current context of a kubeconfig file, as credentials. */
export async function credentialsFromKubeconfigFile(path: string): Promise<KubeCredentials> {
  const text = readText(path);
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text);
  } catch {
    // Most kubeconfigs are YAML; the parser is loaded only when one is read.
    const { parse } = await import("yaml");
    doc = parse(text) as Record<string, unknown>;
  }
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
  const resolve = (p: string) => (p.startsWith("/") ? p : `${dir}/${p}`);
  const current = doc["current-context"] as string | undefined;
  const pick = <T>(
    list: unknown,
    name: string | undefined,
    field: "cluster" | "user" | "context",
  ) =>
    ((list as NamedEntry<T>[] | undefined) ?? []).find((e) => e.name === name)?.[field] as
      | T
      | undefined;
  const ctx = pick<{ cluster?: string; user?: string; namespace?: string }>(
    doc.contexts,
    current,
    "context",
  );
  if (!ctx) {
    throw new Error(
      `kubeconfig ${path} has no context named by current-context ("${current}"): fix the file or set KUBECONFIG to another one`,
    );
  }
  const cluster = pick<Record<string, string>>(doc.clusters, ctx.cluster, "cluster");
  if (!cluster?.server) {
    throw new Error(`kubeconfig ${path}: cluster "${ctx.cluster}" has no server`);
  }
  const user = pick<Record<string, unknown>>(doc.users, ctx.user, "user") ?? {};
  if (user.exec) {
    throw new Error(
      `kubeconfig user "${ctx.user}" uses an exec credential plugin, which this program does not run: use a kubeconfig with a token or client certificate`,
    );
  }
  const creds: KubeCredentials = {
    server: cluster.server.replace(/\/+$/, ""),
    namespace: ctx.namespace ?? "default",
  };
  if (cluster["certificate-authority-data"]) {
    creds.caCerts = [fromBase64(cluster["certificate-authority-data"])];
  } else if (cluster["certificate-authority"]) {
    creds.caCerts = [readText(resolve(cluster["certificate-authority"]))];
  }
  const str = (k: string) => (typeof user[k] === "string" ? user[k] as string : undefined);
  const certData = str("client-certificate-data");
  const certFile = str("client-certificate");
  const keyData = str("client-key-data");
  const keyFile = str("client-key");
  if (certData) creds.cert = fromBase64(certData);
  else if (certFile) creds.cert = readText(resolve(certFile));
  if (keyData) creds.key = fromBase64(keyData);
  else if (keyFile) creds.key = readText(resolve(keyFile));
  if (str("token")) creds.token = str("token");
  if (str("tokenFile")) creds.tokenFile = resolve(str("tokenFile")!);
  return creds;
}

/** The pod's service account, when running in a cluster; undefined otherwise. */
export function inClusterCredentials(): KubeCredentials | undefined {
  const host = Deno.env.get("KUBERNETES_SERVICE_HOST");
  const port = Deno.env.get("KUBERNETES_SERVICE_PORT") ?? "443";
  if (!host || !exists(`${SA_DIR}/token`)) return undefined;
  const h = host.includes(":") ? `[${host}]` : host;
  const creds: KubeCredentials = {
    server: `https://${h}:${port}`,
    tokenFile: `${SA_DIR}/token`,
    namespace: exists(`${SA_DIR}/namespace`) ? readText(`${SA_DIR}/namespace`).trim() : "default",
  };
  if (exists(`${SA_DIR}/ca.crt`)) creds.caCerts = [readText(`${SA_DIR}/ca.crt`)];
  return creds;
}

/**
 * Credentials without client-node: `path`, else KUBECONFIG (its first file),
 * else the pod's service account, else ~/.kube/config.
 */
export async function loadCredentials(path?: string): Promise<KubeCredentials> {
  const file = path ?? Deno.env.get("KUBECONFIG")?.split(":").find((p) => p !== "");
  if (file) return await credentialsFromKubeconfigFile(file);
  const inCluster = inClusterCredentials();
  if (inCluster) return inCluster;
  const home = Deno.env.get("HOME");
  if (home && exists(`${home}/.kube/config`)) {
    return await credentialsFromKubeconfigFile(`${home}/.kube/config`);
  }
  throw new Error(
    "no Kubernetes credentials: set KUBECONFIG, run inside a pod with a service account, or create ~/.kube/config",
  );
}

/**
 * The API client over Deno's fetch, from plain credentials. KubeClient (in
 * kube.ts) is the same client built from a client-node KubeConfig.
 */
export class KubeApiClient {
  readonly server: string;
  /** Namespace of the current context (in a pod: the pod's namespace). */
  readonly namespace: string;
  readonly #http: Deno.HttpClient;
  readonly #creds: KubeCredentials;
  #token?: string;
  #tokenReadAt = 0;

  constructor(creds: KubeCredentials) {
    this.#creds = creds;
    this.server = creds.server;
    this.namespace = creds.namespace;
    const opts: Deno.CreateHttpClientOptions = {};
    if (creds.caCerts) opts.caCerts = creds.caCerts;
    const { cert, key } = creds;
    this.#http = cert && key
      ? Deno.createHttpClient({ ...opts, cert, key })
      : Deno.createHttpClient(opts);
  }

  close(): void {
    this.#http.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #bearer(): string | undefined {
    if (this.#creds.token) return this.#creds.token;
    if (!this.#creds.tokenFile) return undefined;
    // Bound service-account tokens rotate; re-read the file every minute.
    const now = Date.now();
    if (!this.#token || now - this.#tokenReadAt > 60_000) {
      this.#token = readText(this.#creds.tokenFile).trim();
      this.#tokenReadAt = now;
    }
    return this.#token;
  }

  url(path: string, query?: RequestOptions["query"]): string {
    const u = new URL(this.server + path);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined) u.searchParams.set(k, String(v));
    }
    return u.toString();
  }

  /** A raw response (for streams); throws KubeApiError on a non-2xx status. */
  async fetch(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: "application/json" };
    const token = this.#bearer();
    if (token) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["content-type"] = options.contentType ?? "application/json";
      body = JSON.stringify(options.body);
    }
    let res: Response;
    try {
      res = await fetch(this.url(path, options.query), {
        method,
        headers,
        body,
        client: this.#http,
        signal: options.signal,
      });
    } catch (e) {
      if (options.signal?.aborted) throw e;
      throw new Error(
        `${method} ${path}: cannot reach the API server at ${this.server}: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
    if (res.ok) return res;
    const text = await res.text();
    let status: { reason?: string; message?: string; details?: unknown } = {};
    try {
      status = JSON.parse(text);
    } catch { /* not a Status object */ }
    throw new KubeApiError(
      res.status,
      status.reason ?? res.statusText,
      `${method} ${path}: ${res.status} ${status.message ?? text.slice(0, 300)}`,
      status.details,
    );
  }

  async request<T = unknown>(
    method: string,
    path: string,
    options: RequestOptions = {},
  ): Promise<T> {
    const res = await this.fetch(method, path, options);
    const text = await res.text();
    return (text === "" ? undefined : JSON.parse(text)) as T;
  }

  get<T = KubeObject>(path: string, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("GET", path, options);
  }
  /** Lists all pages. */
  async list<T = KubeObject>(path: string, options: RequestOptions = {}): Promise<KubeList<T>> {
    const items: T[] = [];
    const rv = await this.listPages<T>(path, options, (page) => {
      for (const item of page) items.push(item);
    });
    return { metadata: { resourceVersion: rv }, items };
  }

  /**
   * Lists page by page (LIST_PAGE_SIZE objects each unless the query sets a
   * limit), handing each page to `onPage` as it arrives, so callers can work
   * while the next one is fetched. Resolves with the list's resourceVersion.
   */
  async listPages<T = KubeObject>(
    path: string,
    options: RequestOptions,
    onPage: (items: T[]) => void,
  ): Promise<string | undefined> {
    let cont: string | undefined;
    let rv: string | undefined;
    do {
      const page = await this.request<KubeList<T>>("GET", path, {
        ...options,
        query: {
          ...options.query,
          limit: options.query?.limit ?? LIST_PAGE_SIZE,
          ...(cont ? { continue: cont } : {}),
        },
      });
      onPage(page.items ?? []);
      cont = page.metadata?.continue || undefined;
      rv = page.metadata?.resourceVersion;
    } while (cont);
    return rv;
  }
  create<T = KubeObject>(path: string, body: unknown, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("POST", path, { ...options, body });
  }
  replace<T = KubeObject>(path: string, body: unknown, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("PUT", path, { ...options, body });
  }
  /** JSON merge patch unless contentType says otherwise. */
  patch<T = KubeObject>(path: string, body: unknown, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("PATCH", path, {
      ...options,
      body,
      contentType: options.contentType ?? "application/merge-patch+json",
    });
  }
  delete<T = KubeObject>(path: string, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("DELETE", path, options);
  }
}

/** "namespace/name" (or "name" for cluster-scoped objects). */
export function keyOf(obj: KubeObject): string {
  const m = obj.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name}` : `${m.name}`;
}

export type InformerEvent<T> =
  | { type: "ADDED" | "MODIFIED"; key: string; object: T; old?: T }
  | { type: "DELETED"; key: string; object: T }
  | { type: "SYNC"; key: ""; object?: undefined };

export interface InformerOptions {
  /** Collection path, e.g. /apis/http.keda.sh/v1alpha1/httpscaledobjects. */
  path: string;
  labelSelector?: string;
  fieldSelector?: string;
  /**
   * The resource may not exist (a CRD not installed yet) or not be allowed
   * (RBAC not updated): a 404 or 403 on the list counts as an empty, synced
   * list, logs this hint (or the RBAC one) once, and the list is retried
   * every 30 s until it works.
   */
  missingHint?: string;
  log: Logger;
  /** Server-side watch timeout; the watch is re-opened from the last resourceVersion. */
  watchTimeoutSeconds?: number;
  /** Objects per list page (default LIST_PAGE_SIZE). */
  pageSize?: number;
}

/**
 * A list+watch cache. `run(signal)` is a lifetime member: it lists, then
 * watches from the list's resourceVersion; a watch that ends is re-opened;
 * 410 Gone (or an ERROR event) relists, and the store is diffed so
 * subscribers see the changes they missed; other errors back off with jitter.
 */
export class Informer<T extends KubeObject = KubeObject> {
  readonly store = new Map<string, T>();
  readonly synced: Promise<void>;
  #resolveSynced!: () => void;
  #hasSynced = false;
  #listeners = new Set<(e: InformerEvent<T>) => void>();
  #relist = new AbortController();
  #relistWaiters: Array<() => void> = [];
  readonly #client: KubeApiClient;
  readonly #opts: InformerOptions;

  constructor(client: KubeApiClient, options: InformerOptions) {
    this.#client = client;
    this.#opts = options;
    this.synced = new Promise((r) => (this.#resolveSynced = r));
  }

  get hasSynced(): boolean {
    return this.#hasSynced;
  }

  subscribe(listener: (e: InformerEvent<T>) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Forces a fresh list; resolves once it has been applied. */
  relist(): Promise<void> {
    const done = new Promise<void>((r) => this.#relistWaiters.push(r));
    this.#relist.abort();
    return done;
  }

  #emit(e: InformerEvent<T>) {
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        this.#opts.log.error("informer listener failed", { path: this.#opts.path, error: err });
      }
    }
  }

  #query(): Record<string, string | undefined> {
    return { labelSelector: this.#opts.labelSelector, fieldSelector: this.#opts.fieldSelector };
  }

  #listQuery(): Record<string, string | number | undefined> {
    return { ...this.#query(), limit: this.#opts.pageSize };
  }

  #warnedMissing = false;

  /**
   * The resource does not exist, or this program may not list it (an
   * upgrade that kept old RBAC): an empty list, synced, so the rest works.
   */
  #missing(forbidden: boolean): void {
    if (!this.#warnedMissing) {
      this.#warnedMissing = true;
      this.#opts.log.warn(
        forbidden
          ? "not allowed to list this resource; treating it as empty until RBAC allows it"
          : "resource not found; treating it as empty until it appears",
        {
          path: this.#opts.path,
          hint: forbidden
            ? "grant get/list/watch on it to this program's ServiceAccount (k8s/rbac/)"
            : this.#opts.missingHint,
        },
      );
    }
    for (const [key, old] of [...this.store]) {
      this.store.delete(key);
      this.#emit({ type: "DELETED", key, object: old });
    }
    if (!this.#hasSynced) {
      this.#hasSynced = true;
      this.#resolveSynced();
    }
    this.#emit({ type: "SYNC", key: "" });
    for (const w of this.#relistWaiters.splice(0)) w();
  }

  async #list(signal: AbortSignal): Promise<string> {
    const seen = new Set<string>();
    const apply = (items: T[]) => {
      for (const item of items) {
        const key = keyOf(item);
        seen.add(key);
        const old = this.store.get(key);
        this.store.set(key, item);
        if (!old) this.#emit({ type: "ADDED", key, object: item });
        else if (old.metadata?.resourceVersion !== item.metadata?.resourceVersion) {
          this.#emit({ type: "MODIFIED", key, object: item, old });
        }
      }
    };
    const options = { query: this.#listQuery(), signal };
    let rv: string | undefined;
    if (!this.#hasSynced) {
      // Before the first sync the store is incomplete anyway (consumers wait
      // for `synced`): hand out each page as it arrives, so subscribers can
      // work while the next one is fetched.
      rv = await this.#client.listPages<T>(this.#opts.path, options, apply);
    } else {
      // A relist is applied at once: subscribers never see half of it.
      const list = await this.#client.list<T>(this.#opts.path, options);
      apply(list.items);
      rv = list.metadata.resourceVersion;
    }
    for (const [key, old] of [...this.store]) {
      if (!seen.has(key)) {
        this.store.delete(key);
        this.#emit({ type: "DELETED", key, object: old });
      }
    }
    if (!this.#hasSynced) {
      this.#hasSynced = true;
      this.#resolveSynced();
    }
    this.#emit({ type: "SYNC", key: "" });
    for (const w of this.#relistWaiters.splice(0)) w();
    return rv ?? "";
  }

  /** Watches from rv until the stream ends; returns the last rv, or null when a relist is needed. */
  async #watch(rv: string, signal: AbortSignal): Promise<string | null> {
    const res = await this.#client.fetch("GET", this.#opts.path, {
      query: {
        ...this.#query(),
        watch: 1,
        resourceVersion: rv,
        allowWatchBookmarks: true,
        timeoutSeconds: this.#opts.watchTimeoutSeconds ?? 300,
      },
      signal,
    });
    if (!res.body) return rv;
    // Deno 2.9 stops propagating a fetch's abort to its response body once
    // the request has been garbage collected, so a busy watch would outlive
    // shutdown or relist() until the server ends it (timeoutSeconds); cancel
    // the reader ourselves.
    const reader = res.body.getReader();
    const onAbort = () => void reader.cancel(signal.reason).catch(() => {});
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();
    try {
      return await this.#readWatch(reader, rv);
    } finally {
      signal.removeEventListener("abort", onAbort);
      reader.cancel().catch(() => {});
    }
  }

  async #readWatch(
    reader: ReadableStreamDefaultReader<Uint8Array>,
    rv: string,
  ): Promise<string | null> {
    const text = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value: chunk, done } = await reader.read();
      if (done) break;
      buffer += text.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.trim() === "") continue;
        const ev = JSON.parse(line) as {
          type: string;
          object: T & { code?: number; message?: string };
        };
        if (ev.type === "ERROR") {
          if (ev.object.code === 410) return null;
          throw new KubeApiError(
            ev.object.code ?? 500,
            "WatchError",
            `watch ${this.#opts.path}: ${ev.object.message}`,
          );
        }
        const newRv = ev.object.metadata?.resourceVersion;
        if (newRv) rv = newRv;
        if (ev.type === "BOOKMARK") continue;
        const key = keyOf(ev.object);
        if (ev.type === "DELETED") {
          this.store.delete(key);
          this.#emit({ type: "DELETED", key, object: ev.object });
        } else if (ev.type === "ADDED" || ev.type === "MODIFIED") {
          const old = this.store.get(key);
          this.store.set(key, ev.object);
          this.#emit(
            old
              ? { type: "MODIFIED", key, object: ev.object, old }
              : { type: "ADDED", key, object: ev.object },
          );
        }
      }
    }
    return rv;
  }

  async run(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    let rv: string | null = null;
    while (!signal.aborted) {
      this.#relist = new AbortController();
      const iteration = AbortSignal.any([signal, this.#relist.signal]);
      try {
        if (rv === null) rv = await this.#list(iteration);
        attempt = 0;
        rv = await this.#watch(rv, iteration);
        if (rv === null) {
          this.#opts.log.info("watch expired (410 Gone); relisting", { path: this.#opts.path });
        }
      } catch (e) {
        if (signal.aborted) break;
        if (this.#relist.signal.aborted) {
          rv = null;
          continue;
        }
        if (isGone(e)) {
          rv = null;
          continue;
        }
        if (
          this.#opts.missingHint !== undefined &&
          e instanceof KubeApiError && (e.status === 404 || e.status === 403)
        ) {
          this.#missing(e.status === 403);
          rv = null;
          await sleep(30_000, AbortSignal.any([signal, this.#relist.signal]));
          continue;
        }
        const wait = backoffMs(attempt++, 250, 15_000);
        this.#opts.log.warn("list/watch failed; retrying", {
          path: this.#opts.path,
          error: e,
          retryInMs: wait,
        });
        rv = null;
        await sleep(wait, AbortSignal.any([signal, this.#relist.signal]));
      }
      if (this.#relist.signal.aborted) rv = null;
    }
  }
}
