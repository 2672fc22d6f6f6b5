/**
 * OpenTelemetry traces from the interceptor into a real trace backend
 * (Jaeger v2 built from its Go module, tests/tools/jaeger.ts), against a real
 * API server with apps in network namespaces: the client's trace context is
 * continued and handed to the app as our span's; a cold start shows its hold
 * and connect spans; an unsampled parent records nothing; the request log
 * carries the trace id.
 */
import assert from "node:assert/strict";
import { startCluster } from "../tests/cluster/mod.ts";
import type { KubeObject } from "../tests/cluster/mod.ts";
import { type JaegerSpan, startJaeger } from "../tests/tools/jaeger.ts";
import { appObjects, endpointSlice, Netns, startInterceptor } from "./cluster_testing.ts";

const hex = (n: number) =>
  [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, "0"))
    .join("");

async function spansOf(
  jaeger: { trace(id: string): Promise<JaegerSpan[]> },
  traceId: string,
  until: (spans: JaegerSpan[]) => boolean,
): Promise<JaegerSpan[]> {
  const end = Date.now() + 20_000;
  let spans: JaegerSpan[] = [];
  while (Date.now() < end) {
    spans = await jaeger.trace(traceId);
    if (until(spans)) return spans;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`trace ${traceId} in Jaeger: ${JSON.stringify(spans.map((s) => s.name))}`);
}

Deno.test({
  name: "tracing against a cluster: spans in Jaeger, context to the app, hold span, sampling",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await using cluster = await startCluster({ node: false, controllers: false });
  await using jaeger = await startJaeger();
  const ns = await cluster.createNamespace("trace");
  await using net = await Netns.create();
  const app = await net.startApp({ name: "traced" });
  // Its own app: a pooled connection to the warm one would need no connect.
  const coldApp = await net.startApp({ name: "cold", port: 8090 });
  const apply = (objs: KubeObject[]) => cluster.applyYaml(objs, { namespace: ns });
  const route = (name: string) => {
    const o = appObjects({ namespace: ns, name, spec: { hosts: [`${name}.test`] } });
    return [o.service, o.httpso] as KubeObject[];
  };
  await apply([
    ...route("warm"),
    ...route("cold"),
    endpointSlice({ namespace: ns, service: "warm", endpoints: [{ ip: app.ip, ready: true }] }),
  ] as KubeObject[]);
  await using ic = await startInterceptor({
    kubeconfigPath: cluster.kubeconfigPath,
    env: {
      OTEL_EXPORTER_OTLP_TRACES_ENABLED: "true",
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/protobuf",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${jaeger.otlpHttpEndpoint}/v1/traces`,
      OTEL_BSP_SCHEDULE_DELAY: "100",
      KEDA_HTTP_LOG_REQUESTS: "true",
    },
  });
  await cluster.waitFor(async () => {
    const r = await ic.request("warm.test", "/hello");
    await r.body?.cancel();
    return r.status === 200;
  }, { what: "the warm route served" });

  await t.step("the client's trace continues; the app gets our span as its parent", async () => {
    const traceId = hex(16);
    const clientSpan = hex(8);
    const r = await ic.request("warm.test", "/json", {
      headers: {
        traceparent: `00-${traceId}-${clientSpan}-01`,
        tracestate: "vendor=1",
        baggage: "tenant=a",
      },
    });
    assert.equal(r.status, 200);
    const seen = (await r.json()).headers as Record<string, string>;
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(seen.traceparent ?? "");
    assert.ok(m, `the app got a traceparent: ${JSON.stringify(seen)}`);
    assert.equal(m[1], traceId, "same trace");
    assert.notEqual(m[2], clientSpan, "the parent is our span, not the client's");
    assert.equal(seen.tracestate, "vendor=1");
    assert.equal(seen.baggage, "tenant=a", "baggage passes as sent");
    const spans = await spansOf(jaeger, traceId, (s) => s.length >= 1);
    const server = spans.find((s) => s.name === "keda-http-interceptor")!;
    assert.ok(server, JSON.stringify(spans));
    assert.equal(server.service, "keda-http-interceptor");
    assert.equal(server.kind, 2, "a server span");
    assert.equal(server.parentSpanId, clientSpan);
    assert.equal(server.spanId, m[2], "the app's parent is the span Jaeger has");
    assert.equal(server.attributes["keda.route"], `${ns}/warm`);
    assert.equal(Number(server.attributes["http.response.status_code"]), 200);
    await cluster.waitFor(
      () => ic.logs().some((l) => l.includes(`"traceId":"${traceId}"`) && l.includes('"request"')),
      { what: "the request log line with the trace id" },
    );
  });

  await t.step("a cold start shows its hold and connect spans", async () => {
    const traceId = hex(16);
    const pending = ic.request("cold.test", "/hello", {
      headers: { traceparent: `00-${traceId}-${hex(8)}-01` },
    });
    await cluster.waitFor(async () => {
      const q = await ic.adminJson<Record<string, { Concurrency: number }>>("/queue");
      return (q[`${ns}/cold`]?.Concurrency ?? 0) > 0;
    }, { what: "the cold request held" });
    await apply([
      endpointSlice({
        namespace: ns,
        service: "cold",
        port: 8090,
        endpoints: [{ ip: coldApp.ip, ready: true }],
      }),
    ] as KubeObject[]);
    const r = await pending;
    assert.equal(r.status, 200);
    assert.equal(await r.text(), "hello from cold");
    const spans = await spansOf(jaeger, traceId, (s) => s.length >= 3);
    const server = spans.find((s) => s.name === "keda-http-interceptor")!;
    const hold = spans.find((s) => s.name === "hold");
    const connect = spans.find((s) => s.name === "connect");
    assert.ok(hold && connect, JSON.stringify(spans.map((s) => s.name)));
    assert.equal(hold.parentSpanId, server.spanId);
    assert.equal(connect.parentSpanId, server.spanId);
    assert.equal(hold.attributes["keda.hold.outcome"], "ready");
    assert.equal(server.attributes["keda.cold_start"], true);
    // Start times: the SDK anchors each span's clock on its own, so the end
    // of one and the start of the next can disagree by a fraction of a ms.
    assert.ok(
      BigInt(hold.startTimeUnixNano) < BigInt(connect.startTimeUnixNano),
      "hold, then connect",
    );
  });

  await t.step(
    "an unsampled parent: nothing recorded, the app still gets the context",
    async () => {
      const unsampled = hex(16);
      const sampled = hex(16);
      const r1 = await ic.request("warm.test", "/json", {
        headers: { traceparent: `00-${unsampled}-${hex(8)}-00` },
      });
      const seen = (await r1.json()).headers as Record<string, string>;
      assert.match(seen.traceparent ?? "", new RegExp(`^00-${unsampled}-[0-9a-f]{16}-00$`));
      // A sampled request after it: once its spans are in, the unsampled one's would be too.
      const r2 = await ic.request("warm.test", "/hello", {
        headers: { traceparent: `00-${sampled}-${hex(8)}-01` },
      });
      await r2.body?.cancel();
      await spansOf(jaeger, sampled, (s) => s.length >= 1);
      assert.deepEqual(await jaeger.trace(unsampled), []);
    },
  );
});
