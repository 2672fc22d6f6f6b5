/**
 * Static responses of InterceptorRoutes (placeholders and static routes):
 * resolving a configured response against the labelled ConfigMaps (control
 * side), and choosing the body for a request (data plane). Writing it is
 * http1_response.ts's job, which generates the framing.
 */
import type { ResponseSpec } from "../shared/routing_table.ts";
import type { LiveResponse } from "./proxy_contract.ts";

/** A labelled ConfigMap's entries, or undefined when there is none of that name. */
export type ConfigMapLookup = (
  namespace: string,
  name: string,
) => { data?: Record<string, string>; binaryData?: Record<string, string> } | undefined;

const INDEX_KEY = "index.html";
const LABEL_HINT = 'the label http.keda.sh/response-body: "true"';

/**
 * Go's built-in extension table (mime.TypeByExtension without a system
 * mime.types, as in a distroless image), plus the few types a static page
 * commonly needs on top of it.
 */
const TYPES: Record<string, string> = {
  ".avif": "image/avif",
  ".css": "text/css; charset=utf-8",
  ".gif": "image/gif",
  ".htm": "text/html; charset=utf-8",
  ".html": "text/html; charset=utf-8",
  ".jpeg": "image/jpeg",
  ".jpg": "image/jpeg",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".mjs": "text/javascript; charset=utf-8",
  ".pdf": "application/pdf",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".wasm": "application/wasm",
  ".webp": "image/webp",
  ".xml": "text/xml; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".ico": "image/vnd.microsoft.icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
};

/** Content-Type for a ConfigMap key from its extension; undefined when unknown. */
export function contentTypeOf(key: string): string | undefined {
  const slash = key.lastIndexOf("/");
  const dot = key.lastIndexOf(".");
  if (dot <= slash) return undefined;
  return TYPES[key.slice(dot).toLowerCase()];
}

const utf8 = new TextEncoder();

function decodeBase64(text: string): Uint8Array | undefined {
  try {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return undefined;
  }
}

/** A ConfigMap's data and binaryData as bytes, by key (a Map: no inherited names). */
function filesOf(cm: NonNullable<ReturnType<ConfigMapLookup>>): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  for (const [k, v] of Object.entries(cm.data ?? {})) files.set(k, utf8.encode(v));
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) {
    const bytes = decodeBase64(v);
    if (bytes) files.set(k, bytes);
  }
  return files;
}

/** Resolves a configured response in `namespace` for the data plane. */
export function resolveResponse(
  spec: ResponseSpec,
  defaultStatus: number,
  namespace: string,
  configMaps: ConfigMapLookup,
): LiveResponse {
  const out: LiveResponse = {
    status: spec.status ?? defaultStatus,
    headers: spec.headers,
    hasContentType: spec.headers.some(([k]) => k.toLowerCase() === "content-type"),
  };
  if (out.status < 200) {
    out.problem =
      `statusCode ${out.status} is informational and cannot end a response; use 200-599`;
    return out;
  }
  if (spec.body !== undefined) {
    out.body = utf8.encode(spec.body);
    return out;
  }
  const ref = spec.configMap;
  if (!ref) return out;
  const cm = configMaps(namespace, ref.name);
  if (!cm) {
    out.problem =
      `ConfigMap ${namespace}/${ref.name} not found: create it in namespace ${namespace} with ${LABEL_HINT}`;
    return out;
  }
  const files = filesOf(cm);
  if (ref.key !== undefined) {
    const body = files.get(ref.key);
    if (body === undefined) {
      out.problem = `key "${ref.key}" not found in ConfigMap ${namespace}/${ref.name}`;
      return out;
    }
    out.body = body;
    const ct = contentTypeOf(ref.key);
    if (ct !== undefined) out.contentType = ct;
    return out;
  }
  out.files = files;
  out.source = `ConfigMap ${namespace}/${ref.name}`;
  return out;
}

/**
 * The ConfigMap key a request path names (the routing path: decoded, no
 * query, no dot segments): without its leading "/", index.html for "/".
 */
export function keyFromPath(path: string): string {
  const key = path.replace(/^\/+/, "");
  return key === "" ? INDEX_KEY : key;
}

/** What to answer for one request. */
export interface ChosenResponse {
  status: number;
  headers: Array<[string, string]>;
  body: Uint8Array;
  contentType?: string;
  /** Set when the body cannot be served (the answer is then a 500 saying why). */
  problem?: string;
  /** The problem comes from the request (a path naming no key), not from the configuration. */
  clientCaused?: boolean;
}

const EMPTY = new Uint8Array(0);

/** The response for a request with this routing path (files are keyed by it). */
export function chooseResponse(r: LiveResponse, path: string): ChosenResponse {
  if (r.problem !== undefined) {
    return { status: 500, headers: [], body: EMPTY, problem: r.problem };
  }
  if (r.files === undefined) {
    const out: ChosenResponse = { status: r.status, headers: r.headers, body: r.body ?? EMPTY };
    if (!r.hasContentType && r.contentType !== undefined) out.contentType = r.contentType;
    return out;
  }
  const key = keyFromPath(path);
  const body = r.files.get(key);
  if (body === undefined) {
    return {
      status: 500,
      headers: [],
      body: EMPTY,
      problem: `no key "${key.slice(0, 200)}" in ${
        r.source ?? "the ConfigMap"
      } (the key is the request path without its leading "/")`,
      clientCaused: true,
    };
  }
  const out: ChosenResponse = { status: r.status, headers: r.headers, body };
  const ct = r.hasContentType ? undefined : contentTypeOf(key);
  if (ct !== undefined) out.contentType = ct;
  return out;
}
