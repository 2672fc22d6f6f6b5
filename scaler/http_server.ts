/**
 * The scaler's HTTP server (KEDA_HTTP_SCALER_HTTP_PORT):
 *   GET /queue         aggregated counts, {"ns/name": {Concurrency, RequestCount, RPS}}
 *   GET /queue_ping    polls every interceptor now, then answers like /queue
 *   GET /interceptors  the interceptor pods and their health
 *   GET /livez         200 while the process runs
 *   GET /readyz        200 once ready, 503 with the reason otherwise
 *   GET /metrics       Prometheus text format
 *   POST /wake         wakes an app for a duration (scaler/wake.ts), JSON body or query:
 *                      {"namespace", "name", "kind": InterceptorRoute|HTTPScaledObject, "for": "10m"}
 *   DELETE /wake       ?namespace=&name=&kind= ends a wake
 *   GET /wake          the wakes in force
 *   GET /dashboard     the live dashboard; /dashboard/events streams its
 *                      snapshots (server-sent events), /dashboard/snapshot
 *                      answers one (scaler/dashboard.ts)
 * With KEDA_HTTP_SCALER_WAKE_TOKEN set, POST and DELETE /wake need
 * `Authorization: Bearer <token>`. /queue and /queue_ping add
 * "WakeUntil" (RFC 3339) to the entry of every woken route, and list a
 * woken route without traffic too.
 */
import type { Logger } from "../shared/log.ts";
import {
  type Dashboard,
  DASHBOARD_EVENTS_PATH,
  DASHBOARD_PATH,
  DASHBOARD_SNAPSHOT_PATH,
} from "./dashboard.ts";
import type { InterceptorFleet } from "./interceptor_fleet.ts";
import type { QueueAggregator, RouteTotals } from "./queue_aggregator.ts";
import type { Readiness } from "./readiness.ts";
import type { ScalerMetrics } from "./scaler_metrics.ts";
import type { ScalingAnswers } from "./scaling_answers.ts";
import {
  parseWakeDuration,
  parseWakeKind,
  WAKE_KINDS,
  type WakeBook,
  wakeJson,
  type WakeKind,
} from "./wake.ts";
import { formatDuration } from "../shared/duration.ts";

export const WAKE_PATH = "/wake";

export interface ScalerHttpOptions {
  aggregator: QueueAggregator;
  fleet: InterceptorFleet;
  readiness: Readiness;
  metrics: ScalerMetrics;
  log: Logger;
  /** The answers whose wake book /wake writes (or the gRPC server's, below). */
  answers?: ScalingAnswers;
  /** The gRPC server, whose answers are used when `answers` is not given. */
  grpc?: { readonly answers: ScalingAnswers };
  /** KEDA_HTTP_SCALER_WAKE_TOKEN: when non-empty, POST and DELETE /wake need it as a bearer token. */
  wakeToken?: string;
  /** The live dashboard; without it /dashboard answers 404. */
  dashboard?: Dashboard;
  /** Ends the dashboard's event streams (the server's shutdown). */
  signal?: AbortSignal;
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function text(body: string, status = 200): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

export function scalerHttpHandler(
  options: ScalerHttpOptions,
): (req: Request) => Promise<Response> {
  const answers = options.answers ?? options.grpc?.answers;
  const queue = () => withWakes(options.aggregator.snapshot(), answers?.wakes);
  return async (req) => {
    const url = new URL(req.url);
    if (url.pathname === WAKE_PATH) {
      if (!answers) return wakeError("the wake API is not wired into this server", 503);
      return await wakeEndpoint(req, url, { ...options, answers });
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return text(`${req.method} is not supported here; use GET\n`, 405);
    }
    switch (url.pathname) {
      case "/queue":
        return json(queue());
      case "/queue_ping":
        // Bounded by the fetch timeout; not tied to req.signal, which Deno aborts after success.
        await options.fleet.pingAll();
        return json(queue());
      case "/interceptors":
        return json(options.aggregator.podStatuses());
      case "/livez":
      case "/healthz":
        return text("ok\n");
      case "/readyz":
        return options.readiness.ready
          ? text("ok\n")
          : text(`not ready: ${options.readiness.reason()}\n`, 503);
      case "/metrics":
        return new Response(options.metrics.registry.render(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        });
      case DASHBOARD_PATH:
      case `${DASHBOARD_PATH}/`:
        if (options.dashboard) return options.dashboard.page();
        break;
      case DASHBOARD_EVENTS_PATH:
        if (options.dashboard) return options.dashboard.events(options.signal);
        break;
      case DASHBOARD_SNAPSHOT_PATH:
        if (options.dashboard) return json(options.dashboard.snapshot());
        break;
    }
    return text(
      `no such endpoint ${url.pathname}; try /queue, /queue_ping, /interceptors, /livez, /readyz, /metrics, /wake${
        options.dashboard ? ", /dashboard" : ""
      }\n`,
      404,
    );
  };
}

/** /queue's entries, with "WakeUntil" on every woken route (listed even without traffic). */
function withWakes(
  snapshot: Record<string, RouteTotals>,
  wakes: WakeBook | undefined,
): Record<string, RouteTotals & { WakeUntil?: string }> {
  const woken = wakes?.list() ?? [];
  if (woken.length === 0) return snapshot;
  const out: Record<string, RouteTotals & { WakeUntil?: string }> = { ...snapshot };
  for (const w of woken) {
    const until = wakes!.untilOf(w.key);
    if (until === undefined) continue;
    out[w.key] = {
      ...(out[w.key] ?? { Concurrency: 0, RequestCount: 0, RPS: 0 }),
      WakeUntil: new Date(until).toISOString(),
    };
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0));
}

function wakeError(message: string, status: number, headers: Record<string, string> = {}) {
  return new Response(JSON.stringify({ error: message }), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** Compares without an early exit, so the answer time says nothing about the token. */
function sameToken(given: string, expected: string): boolean {
  const a = new TextEncoder().encode(given);
  const b = new TextEncoder().encode(expected);
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i % Math.max(a.length, 1)] ?? 0) ^ b[i]!;
  return diff === 0;
}

const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const MAX_WAKE_BODY = 64 * 1024;
const WAKE_EXAMPLE =
  `e.g. {"namespace": "apps", "name": "shop", "kind": "InterceptorRoute", "for": "10m"}`;

interface WakeParams {
  kind: WakeKind;
  namespace: string;
  name: string;
  forMs: number;
}

/**
 * The fields of a POST or DELETE /wake, from the query and the body (JSON, or
 * a form); every problem found, said at once.
 */
async function wakeParams(
  req: Request,
  url: URL,
  fields: readonly string[],
): Promise<WakeParams | Response> {
  const given = new Map<string, string>();
  const problems: string[] = [];
  const put = (field: string, value: unknown, where: string) => {
    if (!fields.includes(field)) {
      problems.push(
        `unknown field "${field}" in the ${where}${
          field === "for" ? ` (DELETE ends the wake now and takes no "for")` : ""
        }: the fields are ${fields.join(", ")}`,
      );
      return;
    }
    if (typeof value !== "string") {
      problems.push(
        `"${field}" must be a string${field === "for" ? `, a duration such as "10m"` : ""}, not ${
          JSON.stringify(value)
        }`,
      );
      return;
    }
    const before = given.get(field);
    if (before !== undefined && before !== value) {
      problems.push(`"${field}" is given twice with different values: "${before}" and "${value}"`);
      return;
    }
    given.set(field, value);
  };
  for (const [k, v] of url.searchParams) put(k, v, "query");
  const length = Number(req.headers.get("content-length") ?? "0");
  if (length > MAX_WAKE_BODY) {
    return wakeError(`the body is larger than ${MAX_WAKE_BODY} bytes; send ${WAKE_EXAMPLE}`, 413);
  }
  const body = req.body ? await req.text() : "";
  if (body.length > MAX_WAKE_BODY) {
    return wakeError(`the body is larger than ${MAX_WAKE_BODY} bytes; send ${WAKE_EXAMPLE}`, 413);
  }
  if (body.trim() !== "") {
    const type = (req.headers.get("content-type") ?? "").toLowerCase();
    // curl -d sends a form content type with a JSON body: a body that opens with { is JSON.
    if (type.startsWith("application/x-www-form-urlencoded") && !body.trimStart().startsWith("{")) {
      for (const [k, v] of new URLSearchParams(body)) put(k, v, "form");
    } else {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch (e) {
        return wakeError(
          `the body is not JSON (${(e as Error).message}): send a JSON object, ${WAKE_EXAMPLE}`,
          400,
        );
      }
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        return wakeError(`the body must be a JSON object, ${WAKE_EXAMPLE}`, 400);
      }
      for (const [k, v] of Object.entries(parsed)) put(k, v, "body");
    }
  }
  const missing = fields.filter((f) => (given.get(f) ?? "").trim() === "");
  if (missing.length > 0) {
    problems.push(
      `missing ${missing.map((f) => `"${f}"`).join(", ")}: send ${
        fields.map((f) => `"${f}"`).join(", ")
      } in a JSON body or as query parameters, ${WAKE_EXAMPLE}`,
    );
  }
  const namespace = (given.get("namespace") ?? "").trim();
  const name = (given.get("name") ?? "").trim();
  const kindText = given.get("kind") ?? "";
  const kind = parseWakeKind(kindText);
  if (namespace !== "" && (namespace.length > 63 || !NAMESPACE.test(namespace))) {
    problems.push(
      `"namespace": "${namespace}" is not a namespace name (lower-case letters, digits and "-", at most 63)`,
    );
  }
  if (name !== "" && (name.length > 253 || !NAME.test(name))) {
    problems.push(
      `"name": "${name}" is not an object name (lower-case letters, digits, "-" and ".", at most 253)`,
    );
  }
  if (kindText.trim() !== "" && !kind) {
    problems.push(
      `"kind": "${kindText}" is not a kind that can be woken: use ${WAKE_KINDS.join(" or ")}`,
    );
  }
  let forMs = 0;
  if (fields.includes("for") && (given.get("for") ?? "").trim() !== "") {
    try {
      forMs = parseWakeDuration(given.get("for")!);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  if (problems.length > 0) return wakeError(problems.join("; "), 400);
  return { kind: kind!, namespace, name, forMs };
}

async function wakeEndpoint(
  req: Request,
  url: URL,
  options: ScalerHttpOptions & { answers: ScalingAnswers },
): Promise<Response> {
  const wakes = options.answers.wakes;
  const method = req.method;
  if (method === "GET" || method === "HEAD") {
    const now = wakes.now();
    return json({ wakes: wakes.list().map((w) => wakeJson(w, now)) });
  }
  if (method !== "POST" && method !== "DELETE") {
    return wakeError(`${method} is not supported on ${WAKE_PATH}; use GET, POST or DELETE`, 405, {
      allow: "GET, HEAD, POST, DELETE",
    });
  }
  const token = options.wakeToken ?? "";
  if (token !== "") {
    const header = req.headers.get("authorization") ?? "";
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!m || !sameToken(m[1]!, token)) {
      await req.body?.cancel();
      return wakeError(
        header === ""
          ? `${method} ${WAKE_PATH} needs the wake token: send the header "Authorization: Bearer <token>" with the value of the scaler's KEDA_HTTP_SCALER_WAKE_TOKEN`
          : `the Authorization header is not "Bearer <token>" with the scaler's KEDA_HTTP_SCALER_WAKE_TOKEN: check the token`,
        401,
        {
          "www-authenticate": header === ""
            ? `Bearer realm="keda-http-scaler"`
            : `Bearer realm="keda-http-scaler", error="invalid_token"`,
        },
      );
    }
  }
  const params = await wakeParams(
    req,
    url,
    method === "POST" ? ["namespace", "name", "kind", "for"] : ["namespace", "name", "kind"],
  );
  if (params instanceof Response) return params;
  const { kind, namespace, name, forMs } = params;
  const what = `${kind} ${namespace}/${name}`;
  if (method === "DELETE") {
    const ended = wakes.end(kind, namespace, name);
    if (!ended) {
      return wakeError(`no wake in force for ${what}; GET ${WAKE_PATH} lists them`, 404);
    }
    options.log.info("wake ended", {
      kind,
      route: ended.key,
      until: new Date(ended.until).toISOString(),
    });
    return json({ ...wakeJson(ended, wakes.now()), ended: true });
  }
  // Before the objects are listed the indexes know nothing: the wake is taken on trust.
  let warning: string | undefined;
  if (options.readiness.started) {
    const check = options.answers.checkWakeTarget(kind, namespace, name);
    if (!check.found) return wakeError(check.message, 404);
    warning = check.invalid;
  }
  const { wake, created } = wakes.wake(kind, namespace, name, forMs);
  options.log.info(created ? "woken" : "wake renewed", {
    kind,
    route: wake.key,
    for: formatDuration(forMs),
    until: new Date(wake.until).toISOString(),
  });
  return json(
    { ...wakeJson(wake, wakes.now()), created, ...(warning ? { warning } : {}) },
    created ? 201 : 200,
  );
}

/** A lifetime member serving the handler on `port` until the signal aborts. */
export function serveScalerHttp(
  options: ScalerHttpOptions & { port: number; hostname?: string },
): (signal: AbortSignal) => Promise<void> {
  return async (signal) => {
    const handler = scalerHttpHandler({ ...options, signal });
    const server = Deno.serve({
      port: options.port,
      hostname: options.hostname ?? "0.0.0.0",
      signal,
      onListen: ({ port }) => options.log.info("HTTP server listening", { port }),
      onError: (e) => {
        options.log.error("HTTP handler failed", { error: e });
        return text("internal error\n", 500);
      },
    }, handler);
    await server.finished;
  };
}
