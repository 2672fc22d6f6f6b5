import assert from "node:assert/strict";
import {
  connectDeadline,
  holdDeadline,
  holdMs,
  requestDeadline,
  responseHeaderDeadline,
} from "./deadlines.ts";
import type { LiveRoute, ProxyConfig } from "./proxy_contract.ts";
import { TEST_PROXY_CONFIG } from "./proxy_testing.ts";

const cfg = (c: Partial<ProxyConfig>): ProxyConfig => ({ ...TEST_PROXY_CONFIG, ...c });
const route = (r: Partial<LiveRoute>): LiveRoute => ({
  key: "ns/r",
  kind: "InterceptorRoute",
  rules: [],
  timeouts: {},
  slot: 1,
  rank: "",
  targetKey: "ns/r:80",
  staticRoutes: [],
  ...r,
});

Deno.test("deadlines: readiness 0 holds until the request deadline, which 0 removes", () => {
  const c = cfg({ readinessTimeoutMs: 0, requestTimeoutMs: 0 });
  const r = route({});
  assert.equal(holdMs(c, r), Infinity);
  assert.equal(requestDeadline(c, r, 1_000), Infinity);
  assert.equal(holdDeadline(c, r, 1_000, requestDeadline(c, r, 1_000)), Infinity);
  const withRequest = cfg({ readinessTimeoutMs: 0, requestTimeoutMs: 5_000 });
  assert.equal(holdDeadline(withRequest, r, 1_000, requestDeadline(withRequest, r, 1_000)), 6_000);
  // Connection retries still end: 20 s when nothing else bounds them.
  assert.equal(connectDeadline(c, r, 1_000, Infinity, 1_000), 21_000);
});

Deno.test("deadlines: a route's timeouts override the global ones, and 0s turns one off", () => {
  const c = cfg({
    readinessTimeoutMs: 10_000,
    requestTimeoutMs: 60_000,
    responseHeaderTimeoutMs: 300_000,
  });
  const own = route({
    timeouts: { readinessMs: 2_000, requestMs: 4_000, responseHeaderMs: 1_000 },
  });
  assert.equal(holdMs(c, own), 2_000);
  assert.equal(requestDeadline(c, own, 0), 4_000);
  assert.equal(responseHeaderDeadline(c, own, Infinity, 100), 1_100);
  const off = route({ timeouts: { readinessMs: 0, requestMs: 0, responseHeaderMs: 0 } });
  assert.equal(holdMs(c, off), Infinity);
  assert.equal(requestDeadline(c, off, 0), Infinity);
  assert.equal(responseHeaderDeadline(c, off, Infinity, 100), Infinity);
  const unset = route({});
  assert.equal(holdMs(c, unset), 10_000);
  assert.equal(requestDeadline(c, unset, 0), 60_000);
  assert.equal(responseHeaderDeadline(c, unset, Infinity, 0), 300_000);
  // The response-head wait never outlives the request deadline.
  assert.equal(responseHeaderDeadline(c, unset, 50_000, 0), 50_000);
});

Deno.test("deadlines: a fallback waits the readiness timeout, 30 s when that is off, or timeoutSeconds", () => {
  const c = cfg({ readinessTimeoutMs: 0 });
  const fb = { fallbackKey: "ns/fb:80", fallback: { service: "fb" } };
  assert.equal(holdMs(c, route({ ...fb })), 30_000);
  assert.equal(holdMs(c, route({ ...fb, timeouts: { readinessMs: 0 } })), 30_000);
  assert.equal(holdMs(c, route({ ...fb, timeouts: { readinessMs: 7_000 } })), 7_000);
  assert.equal(holdMs(cfg({ readinessTimeoutMs: 9_000 }), route({ ...fb })), 9_000);
  // HTTPScaledObject: coldStartTimeoutFailoverRef.timeoutSeconds decides.
  assert.equal(
    holdMs(
      c,
      route({ kind: "HTTPScaledObject", ...fb, fallback: { service: "fb", timeoutMs: 5_000 } }),
    ),
    5_000,
  );
});
