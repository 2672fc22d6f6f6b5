/**
 * The scaler's spans in a real trace backend (Jaeger v2 built from its Go
 * module): a server span per gRPC call, child of the caller's trace context
 * (a real grpc-js client sends it as metadata), and a client span per /queue
 * poll of an interceptor (a stand-in admin server over real HTTP), exported
 * over OTLP/gRPC.
 */
import assert from "node:assert/strict";
import { parseConfig, scalerEnvSchema } from "../shared/config.ts";
import { createLogger } from "../shared/log.ts";
import { startTracing } from "../shared/tracing.ts";
import { type JaegerSpan, startJaeger } from "../tests/tools/jaeger.ts";
import { httpsoObject, startTestScaler } from "./testing/harness.ts";
import { QueueServer } from "./testing/queue_server.ts";

const hex = (n: number) =>
  [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, "0"))
    .join("");

Deno.test({
  name: "scaler tracing: gRPC server spans and /queue poll spans reach Jaeger over OTLP/gRPC",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using jaeger = await startJaeger();
  // The OTLP exporter reads the SDK's standard variables, as in a pod.
  Deno.env.set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", `http://${jaeger.otlpGrpcEndpoint}`);
  try {
    const config = parseConfig("scaler", scalerEnvSchema(), {
      KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: "keda",
      KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: "interceptor-admin",
      OTEL_EXPORTER_OTLP_TRACES_ENABLED: "true",
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc",
      OTEL_BSP_SCHEDULE_DELAY: "100",
    });
    assert.equal(config.tracing.serviceName, "keda-http-external-scaler");
    const log = createLogger({ level: "error", sink: () => {} });
    const tracing = await startTracing(config.tracing, log, "keda-http-external-scaler");
    assert.ok(tracing);
    const interceptor = new QueueServer();
    await using scaler = await startTestScaler({
      httpsos: [httpsoObject("apps", "shop", { hosts: ["shop.test"] })],
      interceptors: [interceptor],
      tracing,
    });
    const traceId = hex(16);
    const parent = hex(8);
    const ref = { name: "shop", namespace: "apps", scalerMetadata: { httpScaledObject: "shop" } };
    assert.equal(
      await scaler.client.isActive(ref, {
        metadata: { traceparent: `00-${traceId}-${parent}-01` },
      }),
      false,
    );
    let spans: JaegerSpan[] = [];
    const end = Date.now() + 20_000;
    while (Date.now() < end && spans.length === 0) {
      spans = await jaeger.trace(traceId);
      if (spans.length === 0) await new Promise((r) => setTimeout(r, 200));
    }
    const call = spans.find((s) => s.name === "externalscaler.ExternalScaler/IsActive");
    assert.ok(call, JSON.stringify(spans));
    assert.equal(call.parentSpanId, parent);
    assert.equal(call.kind, 2);
    assert.equal(call.service, "keda-http-external-scaler");
    let polls: JaegerSpan[] = [];
    while (Date.now() < end && polls.length === 0) {
      polls = (await jaeger.traces("keda-http-external-scaler")).filter((s) =>
        s.name === "GET /queue"
      );
      if (polls.length === 0) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(polls.length > 0, "poll spans in Jaeger");
    assert.equal(polls[0]!.kind, 3, "a client span");
    await tracing.shutdown();
    await interceptor.close();
  } finally {
    Deno.env.delete("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  }
});
