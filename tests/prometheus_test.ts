/**
 * Prometheus as the Go add-on serves it: each program (real `deno run`
 * subprocesses, against a small fake Kubernetes API, no cluster) is scraped
 * on its OTEL_PROM_EXPORTER_PORT, the text is parsed by the Prometheus
 * project's own parser (expfmt, tests/tools/promparse), and the families'
 * names, types, label names and buckets are compared with the Go list
 * (tests/prometheus_go_metrics.ts). The admin ports' /metrics must be the
 * same exposition. Also: disabled means no listener; a port clash is a clear
 * start error.
 */
import assert from "node:assert/strict";
import { httpsoObject } from "../scaler/testing/harness.ts";
import { GO_FAMILIES, OURS } from "./prometheus_go_metrics.ts";
import { type ParsedFamily, parseExposition } from "./tools/promparse.ts";

const REPO = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const NS = "keda";
const ADMIN_SERVICE = "interceptor-admin";

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

function freePorts(n: number): number[] {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(freePort());
  return [...ports];
}

/**
 * A Kubernetes API that answers every list with `items` for its path (empty
 * by default) and holds every watch open without events: enough for the
 * informers of all three programs to sync.
 */
function fakeKubeApi(items: (path: string) => unknown[]) {
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    (req) => {
      const url = new URL(req.url);
      if (req.method !== "GET") {
        return Response.json({ kind: "Status", status: "Success" }, { status: 201 });
      }
      const watch = url.searchParams.get("watch");
      if (watch === "1" || watch === "true") {
        const body = new ReadableStream<Uint8Array>({
          start(c) {
            req.signal.addEventListener("abort", () => {
              try {
                c.close();
              } catch { /* already closed */ }
            });
          },
        });
        return new Response(body, { headers: { "content-type": "application/json" } });
      }
      if (url.pathname === "/version") return Response.json({ major: "1", minor: "34" });
      return Response.json({
        apiVersion: "v1",
        kind: "List",
        metadata: { resourceVersion: "1" },
        items: items(url.pathname),
      });
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    async close() {
      controller.abort();
      await server.finished;
    },
  };
}

async function kubeconfig(dir: string, server: string): Promise<string> {
  const path = `${dir}/kubeconfig.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "fake", cluster: { server } }],
      users: [{ name: "test", user: { token: "test" } }],
      contexts: [{ name: "fake", context: { cluster: "fake", user: "test", namespace: NS } }],
      "current-context": "fake",
    }),
  );
  return path;
}

interface Program {
  stderr(): string;
  status: Promise<Deno.CommandStatus>;
  stop(): Promise<void>;
}

function spawnProgram(main: string, env: Record<string, string>): Program {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-net", "--quiet", `--config=${REPO}/deno.json`, main],
    env: { LOG_LEVEL: "info", ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const pump = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) text += chunk;
  })();
  const status = child.status;
  return {
    stderr: () => text,
    status,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* exited */ }
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
      }, 10_000);
      await status;
      clearTimeout(t);
      await pump;
    },
  };
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  p: Program,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (${last}); stderr:\n${p.stderr().slice(-3000)}`);
}

async function get(url: string): Promise<Response> {
  return await fetch(url, { signal: AbortSignal.timeout(5000) });
}

async function scrape(url: string): Promise<string> {
  const res = await get(url);
  assert.equal(res.status, 200, url);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return await res.text();
}

/** The sample lines without their values, and the HELP/TYPE lines: what two scrapes share. */
function shape(text: string): string[] {
  return text.trim().split("\n").map((l) => l.startsWith("#") ? l : l.replace(/ [^ ]+$/, ""));
}

/**
 * The parsed families against the Go list: every Go family present with its
 * type, label names and buckets; every other family one of ours.
 */
function assertGoCompatible(
  program: keyof typeof GO_FAMILIES,
  families: ParsedFamily[],
): void {
  const byName = new Map(families.map((f) => [f.name, f]));
  for (const want of GO_FAMILIES[program]) {
    const got = byName.get(want.name);
    assert.ok(got, `${program}: Go's ${want.name} is missing`);
    assert.equal(got.type, want.type, `${program}: type of ${want.name}`);
    assert.deepEqual(got.labels, [...want.labels].sort(), `${program}: labels of ${want.name}`);
    if (want.buckets) assert.deepEqual(got.buckets, want.buckets, `${program}: buckets`);
  }
  const ours = new Map(OURS[program]);
  const go = new Set(GO_FAMILIES[program].map((f) => f.name));
  for (const f of families) {
    if (go.has(f.name)) continue;
    assert.equal(ours.get(f.name), f.type, `${program}: ${f.name} (${f.type}) is not documented`);
  }
  for (const f of families) {
    for (const l of f.labels) assert.ok(!l.startsWith("otel_scope_"), `${f.name} has ${l}`);
  }
}

/** Requests sent through the interceptor with a Host header, each on its own connection. */
async function send(port: number, host: string, method = "GET"): Promise<number> {
  const client = Deno.createHttpClient({ allowHost: true });
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, {
      method,
      headers: { host },
      client,
      signal: AbortSignal.timeout(10_000),
    });
    await res.body?.cancel();
    return res.status;
  } finally {
    client.close();
  }
}

Deno.test({
  name:
    "prometheus: interceptor, scaler and operator serve Go's names, labels and buckets on their own port",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "prom-test-" });
  const [proxyPort, adminPort, iProm, grpcPort, httpPort, sProm, opAdmin, oProm] = freePorts(8) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const api = fakeKubeApi((path) => {
    if (path === "/apis/http.keda.sh/v1alpha1/httpscaledobjects") {
      return [httpsoObject("apps", "shop", { hosts: ["shop.test"] })];
    }
    if (path === `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices`) {
      return [{
        apiVersion: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
        metadata: {
          namespace: NS,
          name: `${ADMIN_SERVICE}-abc`,
          resourceVersion: "1",
          labels: { "kubernetes.io/service-name": ADMIN_SERVICE },
        },
        addressType: "IPv4",
        endpoints: [{
          addresses: ["127.0.0.1"],
          conditions: { ready: true },
          targetRef: { kind: "Pod", namespace: NS, name: "interceptor-0", uid: "uid-0" },
        }],
        ports: [{ name: "admin", port: adminPort, protocol: "TCP" }],
      }];
    }
    return [];
  });
  const KUBECONFIG = await kubeconfig(dir, api.url);
  const programs: Program[] = [];
  try {
    // --- interceptor, two data-plane isolates
    const interceptor = spawnProgram(`${REPO}/interceptor/main.ts`, {
      KUBECONFIG,
      KEDA_HTTP_PROXY_PORT: String(proxyPort),
      KEDA_HTTP_ADMIN_PORT: String(adminPort),
      KEDA_HTTP_BIND_ADDRESS: "127.0.0.1",
      KEDA_HTTP_SHUTDOWN_DELAY: "0s",
      KEDA_HTTP_PROXY_WORKERS: "2",
      KEDA_HTTP_READINESS_TIMEOUT: "200ms",
      OTEL_PROM_EXPORTER_PORT: String(iProm),
    });
    programs.push(interceptor);
    await until("interceptor /readyz", async () => {
      const r = await get(`http://127.0.0.1:${adminPort}/readyz`);
      await r.body?.cancel();
      return r.status === 200 ? true : undefined;
    }, interceptor);
    // Held (no ready pod) until the readiness timeout; then no route; then an unknown method.
    const held = await Promise.all([1, 2, 3].map(() => send(proxyPort, "shop.test")));
    const unrouted = await Promise.all([1, 2, 3].map(() => send(proxyPort, "nowhere.test")));
    const brew = await send(proxyPort, "nowhere.test", "BREW");
    assert.deepEqual(unrouted, [404, 404, 404]);
    assert.equal(brew, 404);
    const iText = await scrape(`http://127.0.0.1:${iProm}/metrics`);
    const iFamilies = await parseExposition(iText);
    assertGoCompatible("interceptor", iFamilies);
    // Every isolate's counts are in the one scrape.
    const counted = [...iText.matchAll(/^interceptor_request_count_total\{[^}]*\} (\d+)$/gm)]
      .reduce((n, m) => n + Number(m[1]), 0);
    assert.equal(counted, 7, iText);
    assert.match(iText, /^interceptor_dataplane_isolates 2$/m);
    assert.match(
      iText,
      new RegExp(
        `^interceptor_request_count_total\\{code="${
          held[0]
        }",method="GET",route_name="shop",route_namespace="apps"\\} 3$`,
        "m",
      ),
    );
    assert.match(
      iText,
      /^interceptor_request_count_total\{code="404",method="_OTHER",route_name="",route_namespace=""\} 1$/m,
    );
    assert.match(
      iText,
      /^interceptor_request_duration_seconds_bucket\{code="404",method="GET",route_name="",route_namespace="",le="\+Inf"\} 3$/m,
    );
    assert.match(
      iText,
      /^interceptor_request_concurrency\{route_name="shop",route_namespace="apps"\} 0$/m,
    );
    // The admin /metrics is an alias: the same families, series and labels.
    const iAdmin = await scrape(`http://127.0.0.1:${adminPort}/metrics`);
    assert.deepEqual(shape(iAdmin), shape(iText));
    // Only /metrics on the Prometheus port.
    const other = await get(`http://127.0.0.1:${iProm}/queue`);
    await other.body?.cancel();
    assert.equal(other.status, 404);

    // --- scaler, polling that interceptor (found through the fake EndpointSlice)
    const scaler = spawnProgram(`${REPO}/scaler/main.ts`, {
      KUBECONFIG,
      KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: NS,
      KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: ADMIN_SERVICE,
      KEDA_HTTP_SCALER_TARGET_ADMIN_PORT: String(adminPort),
      KEDA_HTTP_SCALER_PORT: String(grpcPort),
      KEDA_HTTP_SCALER_HTTP_PORT: String(httpPort),
      KEDA_HTTP_QUEUE_TICK_DURATION: "100ms",
      OTEL_PROM_EXPORTER_PORT: String(sProm),
    });
    programs.push(scaler);
    const sText = await until("the scaler to poll the interceptor", async () => {
      const t = await scrape(`http://127.0.0.1:${sProm}/metrics`);
      return /^scaler_pinger_endpoints 1$/m.test(t) &&
          /^scaler_pinger_fetch_duration_seconds_count [1-9]/m.test(t)
        ? t
        : undefined;
    }, scaler);
    assertGoCompatible("scaler", await parseExposition(sText));
    assert.match(sText, /^scaler_pinger_unreachable_pods 0$/m);
    assert.match(sText, /^scaler_pinger_fetch_errors_total 0$/m);
    assert.match(
      sText,
      /^target_info\{service_name="keda-http-external-scaler",service_version="HEAD"\} 1$/m,
    );
    const sAlias = await scrape(`http://127.0.0.1:${httpPort}/metrics`);
    assert.deepEqual(
      shape(sAlias).filter((l) => l.startsWith("#")),
      shape(sText).filter((l) => l.startsWith("#")),
    );

    // --- operator
    const operator = spawnProgram(`${REPO}/operator/main.ts`, {
      KUBECONFIG,
      KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: "keda-http-scaler",
      KEDA_HTTP_OPERATOR_NAMESPACE: NS,
      KEDA_HTTP_OPERATOR_ADMIN_PORT: String(opAdmin),
      KEDA_HTTP_OPERATOR_LEADER_ELECTION: "false",
      OTEL_PROM_EXPORTER_PORT: String(oProm),
    });
    programs.push(operator);
    const oText = await until("the operator's gauges", async () => {
      const t = await scrape(`http://127.0.0.1:${oProm}/metrics`);
      return /^keda_http_operator_informers_synced 1$/m.test(t) ? t : undefined;
    }, operator);
    assertGoCompatible("operator", await parseExposition(oText));
    // Families only: the operator keeps writing (status, events) between the
    // two scrapes, so a series may appear in the second one.
    const oAdmin = await scrape(`http://127.0.0.1:${opAdmin}/metrics`);
    assert.deepEqual(
      shape(oAdmin).filter((l) => l.startsWith("#")),
      shape(oText).filter((l) => l.startsWith("#")),
    );
  } finally {
    for (const p of programs.reverse()) await p.stop();
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "prometheus: expfmt rejects a broken exposition (the parser is real)",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await assert.rejects(
    () => parseExposition("# TYPE a counter\na{b=1} 2\n"),
    /expfmt rejected the exposition: .*label value/,
  );
});

Deno.test({
  name:
    "prometheus: OTEL_PROM_EXPORTER_ENABLED=false opens no listener; a clashing or taken port stops the start with a clear error",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "prom-off-test-" });
  const api = fakeKubeApi(() => []);
  const KUBECONFIG = await kubeconfig(dir, api.url);
  const base = {
    KUBECONFIG,
    KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: "keda-http-scaler",
    KEDA_HTTP_OPERATOR_NAMESPACE: NS,
    KEDA_HTTP_OPERATOR_LEADER_ELECTION: "false",
  };
  try {
    const [admin, prom] = freePorts(2) as [number, number];
    const off = spawnProgram(`${REPO}/operator/main.ts`, {
      ...base,
      KEDA_HTTP_OPERATOR_ADMIN_PORT: String(admin),
      OTEL_PROM_EXPORTER_ENABLED: "false",
      OTEL_PROM_EXPORTER_PORT: String(prom),
    });
    try {
      await until("operator /readyz", async () => {
        const r = await get(`http://127.0.0.1:${admin}/readyz`);
        await r.body?.cancel();
        return r.status === 200 ? true : undefined;
      }, off);
      await assert.rejects(
        () => Deno.connect({ hostname: "127.0.0.1", port: prom }),
        Deno.errors.ConnectionRefused,
      );
      // The admin alias still answers.
      assert.match(await scrape(`http://127.0.0.1:${admin}/metrics`), /keda_http_operator_/);
    } finally {
      await off.stop();
    }

    // Same port as the admin server: a config error, exit 2, naming both variables.
    const clash = spawnProgram(`${REPO}/operator/main.ts`, {
      ...base,
      KEDA_HTTP_OPERATOR_ADMIN_PORT: String(admin),
      OTEL_PROM_EXPORTER_PORT: String(admin),
    });
    const code = (await clash.status).code;
    await clash.stop();
    assert.equal(code, 2, clash.stderr());
    assert.match(
      clash.stderr(),
      new RegExp(
        `OTEL_PROM_EXPORTER_PORT=\\\\?"${admin}\\\\?": must differ from KEDA_HTTP_OPERATOR_ADMIN_PORT`,
      ),
    );

    // A port another process holds: the start fails and says which variable to change.
    const holder = Deno.listen({ hostname: "0.0.0.0", port: prom });
    try {
      const taken = spawnProgram(`${REPO}/operator/main.ts`, {
        ...base,
        KEDA_HTTP_OPERATOR_ADMIN_PORT: String(admin),
        OTEL_PROM_EXPORTER_PORT: String(prom),
      });
      const status = await Promise.race([
        taken.status,
        new Promise<null>((r) => setTimeout(() => r(null), 30_000)),
      ]);
      await taken.stop();
      assert.ok(status && !status.success, `the operator should have failed: ${taken.stderr()}`);
      assert.match(
        taken.stderr(),
        /cannot listen on the Prometheus port \d+ \(OTEL_PROM_EXPORTER_PORT\)/,
      );
    } finally {
      holder.close();
    }
  } finally {
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
});
