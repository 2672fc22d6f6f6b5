import assert from "node:assert/strict";
import { ignoredEnvNotes, parseScalerFlags } from "./startup.ts";

Deno.test("scaler flags: the Go chart's zap flags set the logger; others are refused", () => {
  const f = parseScalerFlags([
    "--zap-log-level=debug",
    "--zap-encoder=console",
    "--zap-time-encoding=rfc3339",
    "--zap-stacktrace-level=error",
  ]);
  assert.deepEqual(f.log, { level: "debug", format: "console", timeEncoding: "rfc3339" });
  assert.equal(f.notes.length, 1);
  assert.deepEqual(parseScalerFlags([]).log, {});
  assert.throws(() => parseScalerFlags(["--port=1"]), /unknown flag --port; accepted flags:/);
  assert.throws(() => parseScalerFlags(["--zap-log-level=loud"]), /--zap-log-level: "loud"/);
});

Deno.test("scaler env: what the Go chart sets and we do not use is logged once each", () => {
  const notes = ignoredEnvNotes({
    KEDA_HTTP_SCALER_TARGET_ADMIN_DEPLOYMENT: "keda-add-ons-http-interceptor",
    PROFILING_BIND_ADDRESS: "127.0.0.1:6060",
    // Honoured (shared/tracing.ts, shared/otlp_metrics.ts): not in the ignored list.
    OTEL_EXPORTER_OTLP_METRICS_ENABLED: "false",
    OTEL_EXPORTER_OTLP_TRACES_ENABLED: "true",
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "console",
    KEDA_HTTP_SCALER_PORT: "9090",
  });
  assert.deepEqual(notes.map((n) => n.level), ["info", "warn"]);
  assert.match(
    notes[0]!.msg,
    /KEDA_HTTP_SCALER_TARGET_ADMIN_DEPLOYMENT=".*" ignored: .*EndpointSlices/,
  );
  assert.match(notes[1]!.msg, /PROFILING_BIND_ADDRESS="127.0.0.1:6060" ignored/);
  assert.ok(!notes.some((n) => n.msg.includes("OTEL_")), "trace and metrics settings are honoured");
  assert.deepEqual(ignoredEnvNotes({}), []);
});
