import assert from "node:assert/strict";
import { OperatorMetrics } from "./metrics.ts";

Deno.test("metrics: Prometheus text with counters by label, the summary and the gauges", () => {
  const m = new OperatorMetrics();
  m.reconciles.inc({ result: "success" });
  m.reconciles.inc({ result: "success" });
  m.reconciles.inc({ result: "error" });
  m.routeReconciles.inc({ result: "success" });
  m.writes.inc({ resource: "scaledobjects", verb: "apply" });
  m.writes.inc({ resource: 'we"ird\\', verb: "patch" });
  m.observeReconcile(0.25);
  m.observeReconcile(0.5);
  m.setSources({
    queueDepth: () => 3,
    leader: () => true,
    httpScaledObjects: () => 7,
    interceptorRoutes: () => 2,
    informersSynced: () => false,
  });
  const text = m.render();
  const lines = text.split("\n");
  assert.ok(lines.includes('keda_http_operator_reconcile_total{result="success"} 2'));
  assert.ok(lines.includes('keda_http_operator_reconcile_total{result="error"} 1'));
  assert.ok(
    lines.includes('keda_http_operator_interceptorroute_reconcile_total{result="success"} 1'),
  );
  assert.ok(lines.includes("# TYPE keda_http_operator_reconcile_total counter"));
  assert.ok(
    lines.includes('keda_http_operator_api_writes_total{resource="scaledobjects",verb="apply"} 1'),
  );
  assert.ok(
    lines.includes('keda_http_operator_api_writes_total{resource="we\\"ird\\\\",verb="patch"} 1'),
  );
  assert.ok(lines.includes("keda_http_operator_reconcile_duration_seconds_sum 0.75"));
  assert.ok(lines.includes("keda_http_operator_reconcile_duration_seconds_count 2"));
  assert.ok(lines.includes("keda_http_operator_workqueue_depth 3"));
  assert.ok(lines.includes("keda_http_operator_is_leader 1"));
  assert.ok(lines.includes("keda_http_operator_httpscaledobjects 7"));
  assert.ok(lines.includes("keda_http_operator_interceptorroutes 2"));
  assert.ok(lines.includes("keda_http_operator_informers_synced 0"));
  assert.ok(text.endsWith("\n"));
  assert.equal(m.writes.total(), 2);
});
