import assert from "node:assert/strict";
import { FlagError } from "../shared/go_flags.ts";
import { parseBindAddress, parseOperatorFlags } from "./flags.ts";
import { freePort, spawnOperator } from "./testing.ts";

/** What the Go add-on's Helm chart passes with its default values. */
const CHART_ARGS = [
  "--metrics-bind-address=:8443",
  "--metrics-secure=true",
  "--metrics-auth=true",
  "--leader-elect",
  "--zap-log-level=info",
  "--zap-time-encoding=rfc3339",
  "--zap-encoder=console",
];

Deno.test("operator flags: the Go chart's defaults", () => {
  const f = parseOperatorFlags(CHART_ARGS);
  assert.deepEqual(f.env, {
    OTEL_PROM_EXPORTER_ENABLED: "true",
    OTEL_PROM_EXPORTER_PORT: "8443",
    KEDA_HTTP_OPERATOR_LEADER_ELECTION: "true",
  });
  assert.equal(f.origin.OTEL_PROM_EXPORTER_PORT, "--metrics-bind-address");
  assert.deepEqual(f.probe, { hostname: "", port: 8081 });
  assert.deepEqual(f.log, { level: "info", format: "console", timeEncoding: "rfc3339" });
  assert.equal(f.notes.length, 2);
  assert.match(f.notes[0]!, /--metrics-secure ignored: metrics are served over plain HTTP/);
  assert.match(f.notes[1]!, /--metrics-auth ignored/);
  assert.equal(f.help, false);
});

Deno.test("operator flags: no flags change nothing", () => {
  const f = parseOperatorFlags([]);
  assert.deepEqual(f.env, {});
  assert.deepEqual(f.probe, { hostname: "", port: 8081 });
  assert.deepEqual(f.log, {});
  assert.deepEqual(f.notes, []);
});

Deno.test("operator flags: leader election off, metrics and probes off or elsewhere", () => {
  const f = parseOperatorFlags([
    "--leader-elect=false",
    "--metrics-bind-address=0",
    "--health-probe-bind-address=127.0.0.1:9444",
  ]);
  assert.deepEqual(f.env, {
    KEDA_HTTP_OPERATOR_LEADER_ELECTION: "false",
    OTEL_PROM_EXPORTER_ENABLED: "false",
  });
  assert.deepEqual(f.probe, { hostname: "127.0.0.1", port: 9444 });
  assert.equal(parseOperatorFlags(["--health-probe-bind-address=0"]).probe, null);
  const m = parseOperatorFlags(["-metrics-bind-address", "[::1]:9000"]);
  assert.equal(m.metricsHostname, "::1");
  assert.equal(m.env.OTEL_PROM_EXPORTER_PORT, "9000");
  assert.equal(parseOperatorFlags(["--profiling-bind-address=127.0.0.1:8082"]).notes.length, 1);
});

Deno.test("operator flags: an unknown flag is named with the accepted ones listed", () => {
  assert.throws(
    () => parseOperatorFlags(["--leader-elect", "--enable-http2"]),
    (e: Error) =>
      e instanceof FlagError && /unknown flag --enable-http2/.test(e.message) &&
      /--health-probe-bind-address=<value>/.test(e.message) &&
      /--zap-log-level=<value>/.test(e.message),
  );
});

Deno.test("operator flags: a bad value names the flag and the value", () => {
  assert.throws(
    () => parseOperatorFlags(["--metrics-bind-address=8443"]),
    /flag --metrics-bind-address: "8443" is not an address; use \[host\]:port/,
  );
  assert.throws(
    () => parseOperatorFlags(["--health-probe-bind-address=:70000"]),
    /flag --health-probe-bind-address: ":70000"/,
  );
  assert.throws(() => parseOperatorFlags(["--leader-elect=yes"]), /--leader-elect: "yes"/);
  assert.throws(() => parseOperatorFlags(["--zap-encoder=xml"]), /--zap-encoder: "xml"/);
  assert.throws(() => parseBindAddress("x", ""), /flag --x: "" is not an address/);
});

/**
 * A stand-in for the API server, enough for the operator to start: the
 * discovery documents it checks, empty lists, watches held open, and a Lease
 * that can be created and renewed.
 */
function fakeApiServer() {
  const ac = new AbortController();
  const watches: ReadableStreamDefaultController[] = [];
  let rv = 1;
  const json = (body: unknown, status = 200) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    async (req) => {
      const url = new URL(req.url);
      if (req.method === "GET" && url.searchParams.get("watch") === "true") {
        // Nothing ever changes: hold the watch open until the test ends.
        return new Response(new ReadableStream({ start: (c) => void watches.push(c) }));
      }
      if (req.method === "GET" && /^\/apis\/[^/]+\/[^/]+$/.test(url.pathname)) {
        return json({
          kind: "APIResourceList",
          resources: [{ name: "httpscaledobjects" }, { name: "scaledobjects" }],
        });
      }
      if (req.method === "GET" && url.pathname.includes("/leases/")) {
        return json({ kind: "Status", code: 404, reason: "NotFound" }, 404);
      }
      if (req.method === "GET") {
        return json({ kind: "List", metadata: { resourceVersion: String(rv) }, items: [] });
      }
      // Writes (the Lease): accepted as sent, with a new resourceVersion.
      const body = req.body ? await req.json() : {};
      body.metadata = { ...body.metadata, resourceVersion: String(++rv) };
      return json(body, req.method === "POST" ? 201 : 200);
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    async close() {
      for (const w of watches) {
        try {
          w.close();
        } catch { /* already closed */ }
      }
      ac.abort();
      await server.finished;
    },
  };
}

Deno.test({
  name: "operator process: the Go chart's flags; /healthz and /readyz on the probe port",
  sanitizeResources: false,
  async fn() {
    const api = fakeApiServer();
    const dir = await Deno.makeTempDir();
    const kubeconfig = `${dir}/kubeconfig`;
    await Deno.writeTextFile(
      kubeconfig,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "fake", cluster: { server: api.url } }],
        users: [{ name: "fake", user: { token: "t" } }],
        contexts: [{ name: "fake", context: { cluster: "fake", user: "fake" } }],
        "current-context": "fake",
      }),
    );
    const probePort = freePort();
    const metricsPort = freePort();
    try {
      await using op = spawnOperator({
        kubeconfigPath: kubeconfig,
        namespace: "keda",
        args: [
          `--metrics-bind-address=:${metricsPort}`,
          "--metrics-secure=true",
          "--metrics-auth=true",
          "--leader-elect",
          "--zap-log-level=info",
          "--zap-time-encoding=rfc3339",
          "--zap-encoder=console",
          `--health-probe-bind-address=127.0.0.1:${probePort}`,
        ],
      });
      const get = async (port: number, path: string) => {
        try {
          const res = await fetch(`http://127.0.0.1:${port}${path}`);
          return { status: res.status, body: await res.text() };
        } catch {
          return undefined;
        }
      };
      const deadline = Date.now() + 20_000;
      let ready: { status: number; body: string } | undefined;
      while (Date.now() < deadline && !op.exited) {
        ready = await get(probePort, "/readyz");
        if (ready?.status === 200) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(ready?.status, 200, `probe /readyz: ${ready?.body}\n${op.output()}`);
      assert.match(ready!.body, /caches synced/);
      assert.equal((await get(probePort, "/healthz"))?.status, 200);
      assert.equal((await get(probePort, "/routing_table"))?.status, 404);
      // The admin port keeps its own endpoints, and /healthz too.
      assert.equal((await get(op.adminPort, "/livez"))?.status, 200);
      assert.equal((await get(op.adminPort, "/healthz"))?.status, 200);
      const metrics = await get(metricsPort, "/metrics");
      assert.equal(metrics?.status, 200);
      assert.match(metrics!.body, /keda_http_operator_/);
      op.kill("SIGTERM");
      assert.equal((await op.status).code, 0);
      const out = op.output();
      // zap's console encoder: ts, LEVEL, msg, fields.
      assert.match(out, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)\tINFO\tstarting\t\{/m);
      assert.match(out, /WARN\t--metrics-secure ignored/);
    } finally {
      await api.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("operator process: an unknown flag stops it with exit code 2, naming the flag", async () => {
  await using op = spawnOperator({
    kubeconfigPath: "/nonexistent",
    namespace: "keda",
    args: ["--leader-elect", "--enable-http2=true"],
  });
  assert.equal((await op.status).code, 2);
  assert.match(op.output(), /unknown flag --enable-http2; accepted flags:/);
  assert.match(op.output(), /--health-probe-bind-address/);
});
