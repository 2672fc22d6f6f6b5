/**
 * A starting pod's own readiness check, run by the interceptor: the plan
 * read from the pod spec (which container serves the port, its startup and
 * readiness probes, their delays) and one attempt of it over a socket. The
 * kubelet's rules are followed where they decide the answer: an HTTP status
 * from 200 to 399 passes (redirects are not followed), a TCP probe passes on
 * connect, a gRPC probe passes on SERVING; an exec probe cannot be replicated.
 */
import { Buffer } from "node:buffer";
import type { V1Container, V1Pod, V1Probe } from "@kubernetes/client-node";

export interface ProbeCheck {
  kind: "http" | "tcp" | "grpc";
  port: number;
  /** http: the path (with query) and headers; Host defaults to the pod IP as the kubelet's. */
  path: string;
  headers: Array<[string, string]>;
  /** grpc: the service name sent to grpc.health.v1.Health/Check. */
  service: string;
  /** One attempt's bound (the probe's timeoutSeconds, at most 1 s: we retry sooner instead). */
  timeoutMs: number;
  /** Consecutive passes needed (successThreshold). */
  successes: number;
}

export interface ProbePlan {
  /** Run first until it passes (the kubelet runs readiness only after the startup probe). */
  startup: ProbeCheck | null;
  readiness: ProbeCheck;
  /** Earliest time (ms since the epoch) a check may run: container start + initialDelaySeconds. */
  notBefore: number;
}

/** Why a pod's readiness cannot be checked early; it then waits for the kubelet. */
export type NoPlan = { reason: string };

function containerFor(pod: V1Pod, port: number): V1Container | undefined {
  const cs = pod.spec?.containers ?? [];
  const byPort = cs.find((c) => (c.ports ?? []).some((p) => p.containerPort === port));
  if (byPort) return byPort;
  // A container that lists no ports may still listen on it (ports are informational).
  return cs.length === 1 ? cs[0] : undefined;
}

function portOf(c: V1Container, port: number | string | undefined): number | string {
  if (port === undefined) return "no port";
  if (typeof port === "number") return port;
  if (/^\d+$/.test(port)) return Number(port);
  const named = (c.ports ?? []).find((p) => p.name === port);
  return named ? named.containerPort : `no container port named "${port}"`;
}

function checkOf(c: V1Container, p: V1Probe, what: string): ProbeCheck | NoPlan {
  const timeoutMs = Math.min(1000, Math.max(1, p.timeoutSeconds ?? 1) * 1000);
  const successes = Math.max(1, p.successThreshold ?? 1);
  const base = {
    path: "/",
    headers: [] as Array<[string, string]>,
    service: "",
    timeoutMs,
    successes,
  };
  const port = (raw: number | string | undefined): number | NoPlan => {
    const n = portOf(c, raw);
    return typeof n === "number" ? n : { reason: `the ${what} probe has ${n}` };
  };
  if (p.httpGet) {
    if ((p.httpGet.scheme ?? "HTTP").toUpperCase() !== "HTTP") {
      return { reason: `the ${what} probe uses ${p.httpGet.scheme} (only HTTP is checked early)` };
    }
    const n = port(p.httpGet.port as number | string | undefined);
    if (typeof n !== "number") return n;
    const path = probePath(p.httpGet.path ?? "/");
    if (path === null) return { reason: `the ${what} probe's path is not valid text` };
    if (path.length > MAX_PATH) {
      return { reason: `the ${what} probe's path is longer than ${MAX_PATH} bytes` };
    }
    // As the kubelet: the framing and connection fields are its own; one Host.
    let hostSeen = false;
    const headers: Array<[string, string]> = [];
    for (const h of p.httpGet.httpHeaders ?? []) {
      const lower = h.name.toLowerCase();
      if (lower === "content-length" || lower === "transfer-encoding" || lower === "connection") {
        continue;
      }
      if (lower === "host") {
        if (hostSeen) continue;
        hostSeen = true;
      }
      headers.push([h.name, h.value]);
    }
    if (headers.some(([k, v]) => !HEADER_NAME.test(k) || !HEADER_VALUE.test(v))) {
      return { reason: `the ${what} probe has a header that is not valid HTTP` };
    }
    if (headers.reduce((n, [k, v]) => n + k.length + v.length + 4, 0) > MAX_HEADER_BYTES) {
      return { reason: `the ${what} probe's headers are longer than ${MAX_HEADER_BYTES} bytes` };
    }
    if (p.httpGet.host) return { reason: `the ${what} probe sends to another host` };
    return { ...base, kind: "http", port: n, path, headers };
  }
  if (p.tcpSocket) {
    if (p.tcpSocket.host) return { reason: `the ${what} probe connects to another host` };
    const n = port(p.tcpSocket.port as number | string | undefined);
    if (typeof n !== "number") return n;
    return { ...base, kind: "tcp", port: n };
  }
  if (p.grpc) {
    return { ...base, kind: "grpc", port: p.grpc.port, service: p.grpc.service ?? "" };
  }
  if (p.exec) return { reason: `the ${what} probe is exec, which only the kubelet can run` };
  return { reason: `the ${what} probe has no handler` };
}

/** The checks for the container serving `port`, or why there are none. */
export function probePlanOf(pod: V1Pod, port: number): ProbePlan | NoPlan {
  const c = containerFor(pod, port);
  if (!c) return { reason: `no container of the pod serves port ${port}` };
  if (!c.readinessProbe) {
    // Ready as soon as the container runs: the kubelet says so at once, nothing to gain.
    return { reason: "the container has no readiness probe" };
  }
  const readiness = checkOf(c, c.readinessProbe, "readiness");
  if ("reason" in readiness) return readiness;
  let startup: ProbeCheck | null = null;
  if (c.startupProbe) {
    const s = checkOf(c, c.startupProbe, "startup");
    if ("reason" in s) return s;
    startup = s;
  }
  const status = pod.status?.containerStatuses?.find((s) => s.name === c.name);
  const started = status?.state?.running?.startedAt;
  const delayS = Math.max(
    c.readinessProbe.initialDelaySeconds ?? 0,
    c.startupProbe?.initialDelaySeconds ?? 0,
  );
  let notBefore = 0;
  if (delayS > 0) {
    // Unknown start with a delay: not before the container is seen running.
    if (!started) return { reason: "waiting for the container to start (initialDelaySeconds)" };
    notBefore = new Date(started).getTime() + delayS * 1000;
  }
  return { startup, readiness, notBefore };
}

const KUBE_PROBE_UA = "kube-probe/1.34";
/** Bounds on what a pod spec makes us send, per attempt (the kubelet's are its URL's). */
const MAX_PATH = 8 * 1024;
const MAX_HEADER_BYTES = 16 * 1024;
/** What a URL path and query may carry as is (RFC 3986 pchar, "/", "?"); "%" only before two hex digits. */
const PATH_KEEP = /[A-Za-z0-9\-._~!$&'()*+,;=:@\/?]/;

/**
 * The request target of a probe path, as the kubelet's URL would write it:
 * a leading "/", the fragment dropped, and every other byte percent-encoded
 * (UTF-8). Null when the path is not valid text (a lone surrogate).
 */
export function probePath(raw: string): string | null {
  let path = raw.startsWith("/") ? raw : `/${raw}`;
  const hash = path.indexOf("#");
  if (hash >= 0) path = path.slice(0, hash);
  let out = "";
  for (let i = 0; i < path.length; i++) {
    const ch = path[i]!;
    if (PATH_KEEP.test(ch)) out += ch;
    else if (ch === "%" && /^[0-9A-Fa-f]{2}$/.test(path.slice(i + 1, i + 3))) out += ch;
    else {
      const code = path.codePointAt(i)!;
      const one = String.fromCodePoint(code);
      try {
        out += one === "%" ? "%25" : encodeURIComponent(one);
      } catch {
        return null;
      }
      i += one.length - 1;
    }
  }
  return out;
}
/** RFC 9110 token; a field value without control characters (tab allowed). */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

async function httpCheck(ip: string, c: ProbeCheck, signal: AbortSignal): Promise<boolean> {
  const conn = await Deno.connect({ hostname: ip, port: c.port, signal });
  try {
    const host = ip.includes(":") ? `[${ip}]:${c.port}` : `${ip}:${c.port}`;
    let hasHost = false;
    let head = `GET ${c.path} HTTP/1.1\r\n`;
    for (const [k, v] of c.headers) {
      if (k.toLowerCase() === "host") hasHost = true;
      head += `${k}: ${v}\r\n`;
    }
    if (!hasHost) head += `Host: ${host}\r\n`;
    if (!c.headers.some(([k]) => k.toLowerCase() === "user-agent")) {
      head += `User-Agent: ${KUBE_PROBE_UA}\r\n`;
    }
    head += "Accept: */*\r\nConnection: close\r\n\r\n";
    const abort = () => conn.close();
    signal.addEventListener("abort", abort, { once: true });
    try {
      const bytes = new TextEncoder().encode(head);
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
      // Only the status line decides: read until it is complete (bounded).
      const buf = new Uint8Array(1024);
      let n = 0;
      while (n < buf.length) {
        const r = await conn.read(buf.subarray(n));
        if (r === null) break;
        n += r;
        if (buf.subarray(0, n).includes(10)) break;
      }
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(new TextDecoder().decode(buf.subarray(0, n)));
      if (!m) return false;
      const status = Number(m[1]);
      return status >= 200 && status < 400;
    } finally {
      signal.removeEventListener("abort", abort);
    }
  } finally {
    try {
      conn.close();
    } catch { /* closed by the abort */ }
  }
}

async function tcpCheck(ip: string, c: ProbeCheck, signal: AbortSignal): Promise<boolean> {
  const conn = await Deno.connect({ hostname: ip, port: c.port, signal });
  conn.close();
  return true;
}

/** grpc.health.v1.HealthCheckRequest {string service = 1;}, encoded by hand: one field. */
function healthRequest(service: string): Uint8Array {
  const s = new TextEncoder().encode(service);
  if (s.length === 0) return new Uint8Array(0);
  const len: number[] = [];
  let n = s.length;
  while (n > 127) {
    len.push((n & 127) | 128);
    n >>>= 7;
  }
  len.push(n);
  return Uint8Array.from([10, ...len, ...s]);
}

/** HealthCheckResponse {ServingStatus status = 1;}: SERVING is 1. */
function isServing(msg: Uint8Array): boolean {
  return msg.length >= 2 && msg[0] === 8 && msg[1] === 1;
}

async function grpcCheck(ip: string, c: ProbeCheck, signal: AbortSignal): Promise<boolean> {
  // Loaded on first use: most interceptors never probe a gRPC pod.
  const grpc = await import("@grpc/grpc-js");
  const target = ip.includes(":") ? `[${ip}]:${c.port}` : `${ip}:${c.port}`;
  const client = new grpc.Client(target, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  });
  try {
    return await new Promise<boolean>((resolve) => {
      const call = client.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (req: Uint8Array) => Buffer.from(req),
        (b: Buffer) => new Uint8Array(b),
        healthRequest(c.service),
        { deadline: Date.now() + c.timeoutMs },
        (err: unknown, res?: Uint8Array) => resolve(!err && res !== undefined && isServing(res)),
      );
      signal.addEventListener("abort", () => call.cancel(), { once: true });
    });
  } finally {
    client.close();
  }
}

/** One attempt of `check` against the pod at `ip`: true when it passed. Never throws. */
export async function attempt(
  ip: string,
  check: ProbeCheck,
  opts: { signal: AbortSignal },
): Promise<boolean> {
  const signal = AbortSignal.any([opts.signal, AbortSignal.timeout(check.timeoutMs)]);
  try {
    if (check.kind === "http") return await httpCheck(ip, check, signal);
    if (check.kind === "tcp") return await tcpCheck(ip, check, signal);
    return await grpcCheck(ip, check, signal);
  } catch {
    return false;
  }
}
