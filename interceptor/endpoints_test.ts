import assert from "node:assert/strict";
import type { V1EndpointSlice, V1Service } from "@kubernetes/client-node";
import { EndpointView, targetKeyOf } from "./endpoints.ts";

const svc = (name: string, ports: Array<{ name?: string; port: number; appProtocol?: string }>) =>
  ({ metadata: { name, namespace: "ns" }, spec: { ports } }) as V1Service;

const slice = (
  name: string,
  service: string,
  ports: Array<{ name?: string; port: number; appProtocol?: string }>,
  endpoints: Array<{ ip: string; ready?: boolean; terminating?: boolean; pod?: string }>,
  addressType = "IPv4",
) =>
  ({
    metadata: { name, namespace: "ns", labels: { "kubernetes.io/service-name": service } },
    addressType,
    ports,
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: {
        ...(e.ready !== undefined ? { ready: e.ready } : {}),
        ...(e.terminating !== undefined ? { terminating: e.terminating } : {}),
      },
      ...(e.pod ? { targetRef: { kind: "Pod", name: e.pod } } : {}),
    })),
  }) as V1EndpointSlice;

Deno.test("endpoints: the Service port maps to the slice's target port by name", () => {
  const v = new EndpointView();
  v.upsertService(svc("app", [{ name: "http", port: 80 }, { name: "admin", port: 9090 }]));
  v.upsertSlice(
    slice("app-1", "app", [{ name: "http", port: 8080 }, { name: "admin", port: 9091 }], [
      { ip: "10.0.0.2", ready: true, pod: "p2" },
      { ip: "10.0.0.1", pod: "p1" },
      { ip: "10.0.0.3", ready: false, pod: "p3" },
      { ip: "10.0.0.4", ready: true, terminating: true, pod: "p4" },
    ]),
  );
  const r = v.resolve({ namespace: "ns", service: "app", port: 80 });
  assert.deepEqual(r.ready, [{ ip: "10.0.0.1", port: 8080 }, { ip: "10.0.0.2", port: 8080 }]);
  assert.equal(r.notReady, 2);
  assert.equal(r.replicas, 4);
  assert.equal(r.key, "ns/app:80");
  const admin = v.resolve({ namespace: "ns", service: "app", portName: "admin" });
  assert.deepEqual(admin.ready.map((e) => e.port), [9091, 9091]);
});

Deno.test("endpoints: several slices are merged and deduplicated; deletes apply", () => {
  const v = new EndpointView();
  v.upsertService(svc("app", [{ name: "", port: 80 }]));
  v.upsertSlice(slice("s1", "app", [{ port: 8080 }], [{ ip: "10.0.0.1" }]));
  v.upsertSlice(slice("s2", "app", [{ port: 8080 }], [{ ip: "10.0.0.2" }, { ip: "10.0.0.1" }]));
  v.upsertSlice(slice("other", "other", [{ port: 8080 }], [{ ip: "10.9.9.9" }]));
  const ref = { namespace: "ns", service: "app", port: 80 };
  assert.deepEqual(v.resolve(ref).ready.map((e) => e.ip), ["10.0.0.1", "10.0.0.2"]);
  assert.deepEqual(v.deleteSlice("ns/s2"), ["ns/app"]);
  assert.deepEqual(v.resolve(ref).ready.map((e) => e.ip), ["10.0.0.1"]);
});

Deno.test("endpoints: appProtocol and problems are reported", () => {
  const v = new EndpointView();
  v.upsertService(svc("h2", [{ name: "grpc", port: 80, appProtocol: "kubernetes.io/h2c" }]));
  v.upsertSlice(
    slice("h2-1", "h2", [{ name: "grpc", port: 8080, appProtocol: "kubernetes.io/h2c" }], [
      { ip: "10.0.0.5" },
    ]),
  );
  assert.equal(
    v.resolve({ namespace: "ns", service: "h2", port: 80 }).appProtocol,
    "kubernetes.io/h2c",
  );
  const missing = v.resolve({ namespace: "ns", service: "h2", port: 81 });
  assert.deepEqual(missing.ready, []);
  assert.equal(missing.problem, "Service ns/h2 has no port 81");
});

Deno.test("endpoints: without the Service yet, a single-port slice is used; FQDN slices are ignored", () => {
  const v = new EndpointView();
  v.upsertSlice(slice("a", "app", [{ name: "http", port: 8080 }], [{ ip: "10.0.0.1" }]));
  v.upsertSlice(slice("f", "app", [{ name: "http", port: 8080 }], [{ ip: "example.com" }], "FQDN"));
  assert.deepEqual(v.resolve({ namespace: "ns", service: "app", port: 80 }).ready, [
    { ip: "10.0.0.1", port: 8080 },
  ]);
});

Deno.test("endpoints: a slice relabelled to another Service moves with it", () => {
  const v = new EndpointView();
  v.upsertSlice(slice("s", "a", [{ port: 8080 }], [{ ip: "10.0.0.1" }]));
  const moved = v.upsertSlice(slice("s", "b", [{ port: 8080 }], [{ ip: "10.0.0.1" }]));
  assert.deepEqual(moved.sort(), ["ns/a", "ns/b"]);
  assert.deepEqual(v.resolve({ namespace: "ns", service: "a", port: 8080 }).ready, []);
  assert.equal(v.resolve({ namespace: "ns", service: "b", port: 8080 }).ready.length, 1);
});

Deno.test("targetKeyOf names the Service port", () => {
  assert.equal(targetKeyOf({ namespace: "n", service: "s", port: 80 }), "n/s:80");
  assert.equal(targetKeyOf({ namespace: "n", service: "s", portName: "http" }), "n/s:http");
});

Deno.test("endpoints: a starting endpoint names only a pod of the slice's own namespace", () => {
  const v = new EndpointView();
  v.upsertService(svc("app", [{ name: "http", port: 80 }]));
  const s = slice("app-1", "app", [{ name: "http", port: 8080 }], [
    { ip: "10.0.0.1", ready: false, pod: "mine" },
    { ip: "10.0.0.2", ready: false, pod: "victim" },
    { ip: "10.0.0.3", ready: false, pod: "same" },
  ]);
  // Whoever writes the slice writes its targetRefs: one points into another namespace.
  const refs = (s.endpoints ?? []).map((e) => e.targetRef!);
  refs[0]!.uid = "u1";
  refs[1]!.namespace = "tenant-b";
  refs[2]!.namespace = "ns";
  v.upsertSlice(s);
  const r = v.resolve({ namespace: "ns", service: "app", port: 80 });
  assert.deepEqual(r.starting, [
    { ip: "10.0.0.1", port: 8080, pod: { namespace: "ns", name: "mine", uid: "u1" } },
    { ip: "10.0.0.2", port: 8080 },
    { ip: "10.0.0.3", port: 8080, pod: { namespace: "ns", name: "same" } },
  ]);
});
