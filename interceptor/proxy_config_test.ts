import assert from "node:assert/strict";
import { interceptorEnvSchema, parseConfig } from "../shared/config.ts";
import { cpuBudget, proxyConfigOf } from "./proxy_config.ts";

const cfg = (env: Record<string, string>) =>
  proxyConfigOf(parseConfig("interceptor", interceptorEnvSchema(), env));

Deno.test("readiness wait as Go HEAD: KEDA_HTTP_READINESS_TIMEOUT, default 0 (no own bound)", () => {
  assert.equal(cfg({}).readinessTimeoutMs, 0);
  assert.equal(cfg({ KEDA_HTTP_REQUEST_TIMEOUT: "45s" }).readinessTimeoutMs, 0);
  assert.equal(
    cfg({ KEDA_HTTP_REQUEST_TIMEOUT: "45s", KEDA_HTTP_READINESS_TIMEOUT: "3s" }).readinessTimeoutMs,
    3_000,
  );
});

Deno.test("defaults as documented: timeouts, hold cap, cold-start header", () => {
  const c = cfg({});
  assert.equal(c.responseHeaderTimeoutMs, 300_000);
  assert.equal(c.connectTimeoutMs, 500);
  assert.equal(c.requestTimeoutMs, 0);
  assert.equal(c.maxHeldRequests, 10_000);
  assert.equal(c.coldStartHeader, true);
  assert.equal(c.idleTimeoutMs, 90_000);
  assert.equal(c.headTimeoutMs, 10_000);
  assert.equal(cfg({ KEDA_HTTP_CONNECT_TIMEOUT: "0s" }).connectTimeoutMs, 500);
});

Deno.test("the CPU budget is at least 1 and at most the CPUs there are", () => {
  const n = cpuBudget();
  assert.ok(n >= 1 && n <= (navigator.hardwareConcurrency || 1));
});
