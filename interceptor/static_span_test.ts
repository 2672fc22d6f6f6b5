/**
 * Static and placeholder answers get their server span too (in a real
 * Jaeger v2, over OTLP/gRPC): a static route's answer and the cold-start
 * placeholder, each a child of the client's trace context, saying which
 * answer it was and its status; a failing static response marks its span
 * failed.
 */
import assert from "node:assert/strict";
import { startTracing } from "../shared/tracing.ts";
import { createLogger } from "../shared/log.ts";
import { type JaegerSpan, startJaeger } from "../tests/tools/jaeger.ts";
import { RawClient, startHarness, type TestRouteObject } from "./proxy_testing.ts";

const hex = (n: number) =>
  [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, "0"))
    .join("");

function route(name: string, host: string, spec: Record<string, unknown>): TestRouteObject {
  return { name, kind: "InterceptorRoute", spec: { rules: [{ hosts: [host] }], ...spec } };
}

Deno.test({
  name: "static and placeholder answers: a server span each, child of the client's context",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using jaeger = await startJaeger();
  Deno.env.set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", `http://${jaeger.otlpGrpcEndpoint}`);
  const tracing = await startTracing(
    {
      enabled: true,
      protocol: "grpc",
      sampler: "parentbased_always_on",
      ratio: 1,
      serviceName: "keda-http-interceptor",
      batchDelayMs: 100,
    },
    createLogger({ level: "error", sink: () => {} }),
    "keda-http-interceptor",
  );
  assert.ok(tracing);
  await using h = startHarness({ readinessTimeoutMs: 60_000 });
  h.proxy.tracing = tracing;
  try {
    h.setRoutes([
      route("health", "static.test", {
        staticRoutes: [{
          rules: [{ paths: [{ value: "/" }] }],
          responseMode: "Always",
          response: { statusCode: 204 },
        }],
      }),
      route("asleep", "asleep.test", {
        coldStart: { placeholder: { response: { body: "waking up" } } },
      }),
    ]);
    const cases = [
      { host: "static.test", answer: "static", status: 204 },
      { host: "asleep.test", answer: "placeholder", status: 503 },
    ];
    for (const c of cases) {
      const traceId = hex(16);
      const parent = hex(8);
      using client = await RawClient.connect(h.port);
      await client.send(
        `GET / HTTP/1.1\r\nHost: ${c.host}\r\ntraceparent: 00-${traceId}-${parent}-01\r\n\r\n`,
      );
      const r = await client.response();
      assert.equal(r.status, c.status, c.host);
      let spans: JaegerSpan[] = [];
      const end = Date.now() + 20_000;
      while (Date.now() < end && spans.length === 0) {
        spans = await jaeger.trace(traceId);
        if (spans.length === 0) await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(spans.length, 1, `${c.host}: one span: ${JSON.stringify(spans)}`);
      const s = spans[0]!;
      assert.equal(s.name, "keda-http-interceptor");
      assert.equal(s.parentSpanId, parent, "a child of the client's span");
      assert.equal(s.service, "keda-http-interceptor");
      assert.equal(s.attributes["keda.answer"], c.answer);
      assert.equal(s.attributes["http.response.status_code"], c.status);
      assert.equal(s.attributes["keda.cold_start"], false);
    }
  } finally {
    await tracing.shutdown();
    Deno.env.delete("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  }
});
