import assert from "node:assert/strict";
import { type InterceptorRoute, parseInterceptorRoute } from "../shared/interceptor_route.ts";
import {
  desiredRouteStatus,
  NO_RULES_MESSAGE,
  RECONCILED_MESSAGE,
  routeProblems,
  routeReadyState,
  routeStatusEqual,
} from "./route_status.ts";

function route(spec: Record<string, unknown> = {}): InterceptorRoute {
  return parseInterceptorRoute({
    apiVersion: "http.keda.sh/v1beta1",
    kind: "InterceptorRoute",
    metadata: { name: "web", namespace: "shop", generation: 3, uid: "u1" },
    spec: {
      target: { service: "web", port: 8080 },
      scalingMetric: { concurrency: { targetValue: 10 } },
      rules: [{ hosts: ["shop.example.com"] }],
      ...spec,
    },
  });
}

const http8080 = { ports: [{ name: "http", port: 8080 }] };

Deno.test("route status: valid route, Service with the port: Ready True/Reconciled", () => {
  assert.deepEqual(routeReadyState(route(), { service: http8080 }), {
    status: "True",
    reason: "Reconciled",
    message: RECONCILED_MESSAGE,
  });
  // By name too.
  const byName = route({ target: { service: "web", portName: "http" } });
  assert.equal(routeReadyState(byName, { service: http8080 }).status, "True");
});

Deno.test("route status: no rules is Ready but says nothing is routed", () => {
  for (const r of [route({ rules: [] }), route({ rules: undefined })]) {
    assert.deepEqual(routeReadyState(r, { service: http8080 }), {
      status: "True",
      reason: "Reconciled",
      message: NO_RULES_MESSAGE,
    });
  }
  // A problem still wins over the hint.
  assert.equal(routeReadyState(route({ rules: [] }), { service: null }).reason, "ServiceNotFound");
});

Deno.test("route status: missing Service and missing ports name what to fix", () => {
  assert.deepEqual(routeReadyState(route(), { service: null }), {
    status: "False",
    reason: "ServiceNotFound",
    message: "Service shop/web not found: create it or fix spec.target.service",
  });
  assert.deepEqual(
    routeProblems(route(), { service: { ports: [{ name: "metrics", port: 9090 }] } }),
    [
      {
        reason: "PortNotFound",
        message:
          "Service shop/web has no port 8080 (it has metrics=9090): fix spec.target.port or the Service",
      },
    ],
  );
  const byName = route({ target: { service: "web", portName: "grpc" } });
  assert.deepEqual(
    routeProblems(byName, { service: { ports: [{ port: 80 }, { name: "http", port: 8080 }] } }),
    [
      {
        reason: "PortNotFound",
        message:
          'Service shop/web has no port named "grpc" (it has 80, http=8080): fix spec.target.portName or the Service',
      },
    ],
  );
  assert.match(
    routeProblems(route(), { service: { ports: [] } })[0]!.message,
    /\(it has no ports\)/,
  );
});

Deno.test("route status: the fallback Service is checked too, after the target", () => {
  const withFallback = route({
    coldStart: { fallback: { service: { name: "sorry", port: 80 } } },
  });
  assert.deepEqual(routeReadyState(withFallback, { service: http8080, fallbackService: null }), {
    status: "False",
    reason: "FallbackServiceNotFound",
    message:
      "fallback Service shop/sorry not found: create it or fix spec.coldStart.fallback.service.name",
  });
  assert.deepEqual(
    routeProblems(withFallback, { service: http8080, fallbackService: { ports: [{ port: 81 }] } }),
    [{
      reason: "FallbackPortNotFound",
      message:
        "fallback Service shop/sorry has no port 80 (it has 81): fix spec.coldStart.fallback.service.port or the Service",
    }],
  );
  const both = routeReadyState(withFallback, { service: null, fallbackService: null });
  assert.equal(both.reason, "ServiceNotFound", "the first problem gives the reason");
  assert.match(
    both.message,
    /^Service shop\/web not found.*; fallback Service shop\/sorry not found/,
  );
  assert.equal(
    routeReadyState(withFallback, { service: http8080, fallbackService: { ports: [{ port: 80 }] } })
      .status,
    "True",
  );
  // A placeholder-only cold start names no Service.
  const placeholder = route({ coldStart: { placeholder: { response: { statusCode: 503 } } } });
  assert.equal(routeReadyState(placeholder, { service: http8080 }).status, "True");
});

Deno.test("route status: an invalid route is Ready False/Invalid with the parse error", () => {
  assert.deepEqual(routeReadyState({ invalid: "spec.target: required" }, { service: null }), {
    status: "False",
    reason: "Invalid",
    message: "spec.target: required",
  });
});

Deno.test("route status: observedGeneration, lastTransitionTime only on a flip, other conditions kept", () => {
  const t0 = new Date("2026-01-01T00:00:00.123Z");
  const t1 = new Date("2026-01-01T00:05:00Z");
  const ok = { status: "True" as const, reason: "Reconciled", message: RECONCILED_MESSAGE };
  const first = desiredRouteStatus(undefined, ok, 3, t0);
  assert.deepEqual(first, {
    conditions: [{
      type: "Ready",
      status: "True",
      observedGeneration: 3,
      reason: "Reconciled",
      message: RECONCILED_MESSAGE,
      lastTransitionTime: "2026-01-01T00:00:00Z",
    }],
  });
  // Nothing changed: equal, so no write; the time stays.
  const again = desiredRouteStatus(first, ok, 3, t1);
  assert.ok(routeStatusEqual(first, again));
  assert.equal(again.conditions![0]!.lastTransitionTime, "2026-01-01T00:00:00Z");
  // A new generation with the same status: a write, but no transition.
  const bumped = desiredRouteStatus(first, ok, 4, t1);
  assert.ok(!routeStatusEqual(first, bumped));
  assert.equal(bumped.conditions![0]!.observedGeneration, 4);
  assert.equal(bumped.conditions![0]!.lastTransitionTime, "2026-01-01T00:00:00Z");
  // A flip moves the time.
  const down = desiredRouteStatus(
    bumped,
    {
      status: "False",
      reason: "ServiceNotFound",
      message: "x",
    },
    4,
    t1,
  );
  assert.equal(down.conditions![0]!.lastTransitionTime, "2026-01-01T00:05:00Z");
  // Someone else's condition stays where it is.
  const foreign = {
    conditions: [
      { type: "Audited", status: "True", lastTransitionTime: "2025-01-01T00:00:00Z" },
      ...first.conditions!,
    ],
  };
  const kept = desiredRouteStatus(foreign, ok, 3, t1);
  assert.ok(routeStatusEqual(foreign, kept));
  assert.deepEqual(kept.conditions!.map((c) => c.type), ["Audited", "Ready"]);
});
