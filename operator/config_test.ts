import assert from "node:assert/strict";
import { ConfigError } from "../shared/config.ts";
import { loadOperatorConfig } from "./config.ts";

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

/** The env the Go add-on's Helm chart sets on the operator. */
const CHART_ENV = {
  KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_SERVICE: "keda-add-ons-http-external-scaler",
  KEDA_HTTP_OPERATOR_EXTERNAL_SCALER_PORT: "9090",
  KEDA_HTTP_OPERATOR_NAMESPACE: "keda",
  KEDA_HTTP_OPERATOR_WATCH_NAMESPACE: "",
};

Deno.test("operator config: the chart's flags and env together", () => {
  const { config, probe, warnings } = loadOperatorConfig(CHART_ARGS, CHART_ENV);
  assert.equal(config.prometheus.port, 8443);
  assert.equal(config.prometheus.enabled, true);
  assert.equal(config.leaderElection.enabled, true);
  assert.equal(config.externalScaler.port, 9090);
  // Probe port 8081 is our admin port's default: the admin server answers /healthz and /readyz.
  assert.equal(config.adminPort, 8081);
  assert.equal(probe, null);
  assert.equal(warnings.length, 2);
});

Deno.test("operator config: flags override env", () => {
  const { config, probe } = loadOperatorConfig(
    ["--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=:9555"],
    {
      ...CHART_ENV,
      KEDA_HTTP_OPERATOR_LEADER_ELECTION: "true",
      OTEL_PROM_EXPORTER_ENABLED: "true",
      OTEL_PROM_EXPORTER_PORT: "2300",
    },
  );
  assert.equal(config.leaderElection.enabled, false);
  assert.equal(config.prometheus.enabled, false);
  assert.deepEqual(probe, { hostname: "", port: 9555 });
  // Without the flag the env decides.
  assert.equal(
    loadOperatorConfig([], { ...CHART_ENV, KEDA_HTTP_OPERATOR_LEADER_ELECTION: "false" }).config
      .leaderElection.enabled,
    false,
  );
});

Deno.test("operator config: a clash names the flag that caused it", () => {
  assert.throws(
    () => loadOperatorConfig(["--metrics-bind-address=:8081"], CHART_ENV),
    (e: Error) =>
      e instanceof ConfigError &&
      /OTEL_PROM_EXPORTER_PORT="8081" \(set by --metrics-bind-address\): must differ from KEDA_HTTP_OPERATOR_ADMIN_PORT/
        .test(e.message),
  );
  assert.throws(
    () =>
      loadOperatorConfig(
        ["--metrics-bind-address=:9000", "--health-probe-bind-address=:9000"],
        CHART_ENV,
      ),
    /--health-probe-bind-address=":9000": must differ from the metrics port \(9000, from --metrics-bind-address\)/,
  );
});
