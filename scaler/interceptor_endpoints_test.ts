import assert from "node:assert/strict";
import type { V1EndpointSlice } from "@kubernetes/client-node";
import { endpointSliceQuery, interceptorPodsFromSlices } from "./interceptor_endpoints.ts";

const slice = (addressType: string, endpoints: unknown[]): V1EndpointSlice =>
  ({
    metadata: { name: `s-${addressType}`, namespace: "keda" },
    addressType,
    endpoints,
  }) as V1EndpointSlice;

const ep = (address: string, name: string, ready?: boolean) => ({
  addresses: [address],
  ...(ready === undefined ? {} : { conditions: { ready } }),
  targetRef: { kind: "Pod", namespace: "keda", name, uid: `uid-${name}` },
});

Deno.test("endpointSliceQuery selects the admin Service's slices by label", () => {
  assert.deepEqual(endpointSliceQuery("keda", "interceptor-admin"), {
    path: "/apis/discovery.k8s.io/v1/namespaces/keda/endpointslices",
    labelSelector: "kubernetes.io/service-name=interceptor-admin",
  });
});

Deno.test("interceptorPodsFromSlices: one pod per UID, IPv4 preferred, readiness kept", () => {
  const pods = interceptorPodsFromSlices([
    slice("IPv6", [ep("fd00::7", "b", true), ep("fd00::8", "c", false)]),
    slice("IPv4", [ep("10.0.0.7", "b", true), ep("10.0.0.9", "a")]),
  ], 9090);
  assert.deepEqual(pods, [
    // ready unset means ready (EndpointConditions API).
    { id: "uid-a", name: "a", url: "http://10.0.0.9:9090", ready: true },
    // Dual-stack: counted once, over IPv4.
    { id: "uid-b", name: "b", url: "http://10.0.0.7:9090", ready: true },
    // Only in the IPv6 slice, not ready (terminating or starting): still tracked.
    { id: "uid-c", name: "c", url: "http://[fd00::8]:9090", ready: false },
  ]);
});

Deno.test("interceptorPodsFromSlices: a pod moving between slices is counted once, ready wins", () => {
  const pods = interceptorPodsFromSlices([
    slice("IPv4", [ep("10.0.0.7", "a", false)]),
    slice("IPv4", [ep("10.0.0.7", "a", true)]),
  ], 9090);
  assert.equal(pods.length, 1);
  assert.equal(pods[0]?.ready, true);
});

Deno.test("interceptorPodsFromSlices: endpoints without address are skipped, without targetRef keyed by address", () => {
  const pods = interceptorPodsFromSlices([
    slice("IPv4", [{ addresses: [] }, { addresses: ["10.0.0.3"] }]),
    { metadata: {}, addressType: "IPv4" } as V1EndpointSlice,
  ], 8081);
  assert.deepEqual(pods, [
    { id: "10.0.0.3", name: "10.0.0.3", url: "http://10.0.0.3:8081", ready: true },
  ]);
});
