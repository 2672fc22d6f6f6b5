import assert from "node:assert/strict";
import {
  ConfigError,
  interceptorEnvSchema,
  operatorEnvSchema,
  parseConfig,
  scalerEnvSchema,
  withDeprecatedEnv,
} from "./config.ts";

Deno.test("interceptor defaults match the Go add-on", () => {
  const c = parseConfig("interceptor", interceptorEnvSchema(), {});
  assert.equal(c.proxyPort, 8080);
  assert.equal(c.adminPort, 9090);
  assert.equal(c.responseHeaderTimeoutMs, 300_000);
  assert.equal(c.connectTimeoutMs, 500);
  assert.equal(c.drainTimeoutMs, 30_000);
  assert.equal(c.shutdownDelayMs, 5000);
  assert.equal(c.coldStartHeader, true);
  assert.equal(c.tls.enabled, false);
  assert.equal(c.tls.port, 8443);
  assert.equal(c.readinessTimeoutMs, 0, "Go HEAD: no own readiness bound");
  assert.equal(c.requestTimeoutMs, 0);
  assert.equal(c.logRequests, false);
  assert.equal(c.directPodRouting, true, "ours: least in flight to ready pods (README says why)");
  assert.equal(
    parseConfig("interceptor", interceptorEnvSchema(), { KEDA_HTTP_DIRECT_POD_ROUTING: "false" })
      .directPodRouting,
    false,
  );
});

Deno.test("deprecated names still override their new ones, with a warning naming the new name", () => {
  const { env, warnings } = withDeprecatedEnv("interceptor", {
    KEDA_CONDITION_WAIT_TIMEOUT: "7s",
    KEDA_HTTP_READINESS_TIMEOUT: "3s",
    KEDA_RESPONSE_HEADER_TIMEOUT: "9s",
  });
  const c = parseConfig("interceptor", interceptorEnvSchema(), env);
  assert.equal(c.readinessTimeoutMs, 7_000);
  assert.equal(c.responseHeaderTimeoutMs, 9_000);
  assert.equal(warnings.length, 2);
  assert.match(
    warnings[0]!,
    /KEDA_CONDITION_WAIT_TIMEOUT is deprecated: rename it to KEDA_HTTP_READINESS_TIMEOUT \(its value "7s" overrides KEDA_HTTP_READINESS_TIMEOUT="3s"\)/,
  );
  assert.match(
    warnings[1]!,
    /KEDA_RESPONSE_HEADER_TIMEOUT is deprecated: rename it to KEDA_HTTP_RESPONSE_HEADER_TIMEOUT$/,
  );
  const op = withDeprecatedEnv("operator", {
    KEDAHTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: "old-scaler",
    KEDAHTTP_OPERATOR_EXTERNAL_SCALER_PORT: "9999",
    KEDA_HTTP_OPERATOR_NAMESPACE: "keda",
  });
  const oc = parseConfig("operator", operatorEnvSchema(), op.env);
  assert.equal(oc.externalScaler.service, "old-scaler");
  assert.equal(oc.externalScaler.port, 9999);
  assert.equal(op.warnings.length, 2);
  assert.deepEqual(withDeprecatedEnv("scaler", { A: "1" }).warnings, []);
});

Deno.test("booleans take Go spellings only; 'false' is false", () => {
  const off = parseConfig("interceptor", interceptorEnvSchema(), {
    KEDA_HTTP_ENABLE_COLD_START_HEADER: "false",
  });
  assert.equal(off.coldStartHeader, false);
  const zero = parseConfig("interceptor", interceptorEnvSchema(), {
    KEDA_HTTP_ENABLE_COLD_START_HEADER: "0",
  });
  assert.equal(zero.coldStartHeader, false);
  assert.throws(
    () =>
      parseConfig("interceptor", interceptorEnvSchema(), {
        KEDA_HTTP_ENABLE_COLD_START_HEADER: "nope",
      }),
    /KEDA_HTTP_ENABLE_COLD_START_HEADER="nope": "nope" is not a boolean: use true or false/,
  );
});

Deno.test("every bad variable is reported at once, by name", () => {
  try {
    parseConfig("interceptor", interceptorEnvSchema(), {
      KEDA_HTTP_PROXY_PORT: "eighty",
      KEDA_HTTP_CONNECT_TIMEOUT: "5 seconds",
      KEDA_HTTP_DRAIN_TIMEOUT: "-1s",
      KEDA_HTTP_MAX_HELD_REQUESTS: "-3",
    });
    assert.fail("expected ConfigError");
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.problems.length, 4);
    assert.match(e.message, /interceptor: invalid configuration \(4 problems\)/);
    assert.match(e.message, /KEDA_HTTP_PROXY_PORT="eighty": "eighty" is not a port/);
    assert.match(e.message, /KEDA_HTTP_CONNECT_TIMEOUT="5 seconds": "5 seconds" is not a duration/);
    assert.match(e.message, /KEDA_HTTP_DRAIN_TIMEOUT="-1s": "-1s" must not be negative/);
    assert.match(e.message, /KEDA_HTTP_MAX_HELD_REQUESTS="-3": "-3" is not a whole number/);
  }
});

Deno.test("required variables and cross-field rules", () => {
  try {
    parseConfig("scaler", scalerEnvSchema(), {});
    assert.fail("expected ConfigError");
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: is required but not set/);
    assert.match(e.message, /KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: is required but not set/);
  }
  const s = parseConfig("scaler", scalerEnvSchema(), {
    KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: "keda",
    KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: "interceptor-admin",
    KEDA_HTTP_QUEUE_TICK_DURATION: "250ms",
  });
  assert.equal(s.queueTickMs, 250);
  assert.equal(s.targetAdmin.port, 9090);
  assert.throws(
    () =>
      parseConfig("interceptor", interceptorEnvSchema(), { KEDA_HTTP_PROXY_TLS_ENABLED: "true" }),
    /KEDA_HTTP_PROXY_TLS_ENABLED="true": TLS is enabled but no certificate is configured/,
  );
  assert.throws(
    () => parseConfig("interceptor", interceptorEnvSchema(), { KEDA_HTTP_ADMIN_PORT: "8080" }),
    /KEDA_HTTP_ADMIN_PORT="8080": must differ from KEDA_HTTP_PROXY_PORT/,
  );
  const o = parseConfig("operator", operatorEnvSchema(), {
    KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: "scaler",
    KEDA_HTTP_OPERATOR_NAMESPACE: "keda",
    KEDA_HTTP_OPERATOR_WATCH_NAMESPACE: "apps",
  });
  assert.equal(o.externalScaler.port, 9090);
  assert.equal(o.watchNamespace, "apps");
  assert.equal(o.leaderElection.leaseDurationMs, 15_000);
});

Deno.test("OTEL_PROM_EXPORTER_*: Go's defaults (enabled, port 2223) in all three programs", () => {
  const scalerRequired = {
    KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: "keda",
    KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: "interceptor-admin",
  };
  const operatorRequired = {
    KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: "scaler",
    KEDA_HTTP_OPERATOR_NAMESPACE: "keda",
  };
  const all = (env: Record<string, string>) => [
    parseConfig("interceptor", interceptorEnvSchema(), env).prometheus,
    parseConfig("scaler", scalerEnvSchema(), { ...scalerRequired, ...env }).prometheus,
    parseConfig("operator", operatorEnvSchema(), { ...operatorRequired, ...env }).prometheus,
  ];
  for (const p of all({})) assert.deepEqual(p, { enabled: true, port: 2223 });
  for (const p of all({ OTEL_PROM_EXPORTER_ENABLED: "false", OTEL_PROM_EXPORTER_PORT: "9100" })) {
    assert.deepEqual(p, { enabled: false, port: 9100 });
  }
  assert.throws(
    () => parseConfig("interceptor", interceptorEnvSchema(), { OTEL_PROM_EXPORTER_ENABLED: "yes" }),
    (e: ConfigError) => e.problems.some((p) => p.startsWith('OTEL_PROM_EXPORTER_ENABLED="yes"')),
  );
  assert.throws(
    () => parseConfig("interceptor", interceptorEnvSchema(), { OTEL_PROM_EXPORTER_PORT: "70000" }),
    (e: ConfigError) => e.problems.some((p) => p.startsWith('OTEL_PROM_EXPORTER_PORT="70000"')),
  );
});

Deno.test("OTEL_PROM_EXPORTER_PORT: a clash with another port of the program is a clear error", () => {
  const clash = (program: string, fn: () => unknown, other: string, port: number) =>
    assert.throws(fn, (e: ConfigError) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.ok(
        e.problems.some((p) =>
          p.startsWith(`OTEL_PROM_EXPORTER_PORT="${port}": must differ from ${other} (${port})`)
        ),
        `${program}: ${e.problems.join("; ")}`,
      );
      return true;
    });
  clash(
    "interceptor",
    () => parseConfig("interceptor", interceptorEnvSchema(), { OTEL_PROM_EXPORTER_PORT: "9090" }),
    "KEDA_HTTP_ADMIN_PORT",
    9090,
  );
  clash(
    "interceptor",
    () => parseConfig("interceptor", interceptorEnvSchema(), { OTEL_PROM_EXPORTER_PORT: "8080" }),
    "KEDA_HTTP_PROXY_PORT",
    8080,
  );
  // The TLS port counts only when TLS is on.
  assert.equal(
    parseConfig("interceptor", interceptorEnvSchema(), { OTEL_PROM_EXPORTER_PORT: "8443" })
      .prometheus.port,
    8443,
  );
  const scaler = (env: Record<string, string>) =>
    parseConfig("scaler", scalerEnvSchema(), {
      KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: "keda",
      KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: "interceptor-admin",
      ...env,
    });
  clash("scaler", () => scaler({ OTEL_PROM_EXPORTER_PORT: "9090" }), "KEDA_HTTP_SCALER_PORT", 9090);
  clash(
    "scaler",
    () => scaler({ OTEL_PROM_EXPORTER_PORT: "9091" }),
    "KEDA_HTTP_SCALER_HTTP_PORT",
    9091,
  );
  clash(
    "operator",
    () =>
      parseConfig("operator", operatorEnvSchema(), {
        KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: "scaler",
        KEDA_HTTP_OPERATOR_NAMESPACE: "keda",
        OTEL_PROM_EXPORTER_PORT: "8081",
      }),
    "KEDA_HTTP_OPERATOR_ADMIN_PORT",
    8081,
  );
  // Disabled, the port is not listened on, so it may equal another.
  assert.equal(
    scaler({ OTEL_PROM_EXPORTER_ENABLED: "false", OTEL_PROM_EXPORTER_PORT: "9090" }).prometheus
      .enabled,
    false,
  );
});

Deno.test("scaler: KEDA_HTTP_SCALER_WAKE_TOKEN is optional and never echoed in errors", () => {
  const base = {
    KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: "keda",
    KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: "interceptor-admin",
  };
  assert.equal(parseConfig("scaler", scalerEnvSchema(), base).wakeToken, "");
  assert.equal(
    parseConfig("scaler", scalerEnvSchema(), { ...base, KEDA_HTTP_SCALER_WAKE_TOKEN: "  " })
      .wakeToken,
    "",
    "blank = unset",
  );
  assert.equal(
    parseConfig("scaler", scalerEnvSchema(), {
      ...base,
      KEDA_HTTP_SCALER_WAKE_TOKEN: " abc.DEF-123_~+/= ",
    }).wakeToken,
    "abc.DEF-123_~+/=",
  );
  try {
    parseConfig("scaler", scalerEnvSchema(), {
      ...base,
      KEDA_HTTP_SCALER_WAKE_TOKEN: "top secret",
    });
    assert.fail("expected ConfigError");
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.match(
      e.message,
      /KEDA_HTTP_SCALER_WAKE_TOKEN \(value not shown\): must be printable ASCII without spaces/,
    );
    assert.doesNotMatch(e.message, /top secret/);
  }
});
