/**
 * gRPC through the data plane with real grpc-js on both ends: all four call
 * types to an h2c app (warm, and held from zero replicas), statuses and
 * messages relayed as trailers, deadlines, cancellation reaching the app,
 * and a 4 MiB message each way.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { startGrpcApp } from "../tests/fixtures/grpc_app.ts";
import {
  bidi,
  clientFor,
  clientStream,
  serverStream,
  unary,
} from "../tests/fixtures/grpc_client_testing.ts";
import { startHarness, until } from "./proxy_testing.ts";

const KEY = "default/grpc";

Deno.test({
  name: "gRPC: all four call types through the interceptor, from zero replicas and warm",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using h = startHarness();
  await using app = await startGrpcApp();
  h.setRoutes([{ name: "grpc", spec: { hosts: ["grpc.test"] } }]);
  const slot = h.routes.get(KEY)!.slot;
  const c = clientFor(`127.0.0.1:${h.port}`, "grpc.test");
  try {
    // At zero: the call is held until the app has an endpoint.
    const cold = unary(c, { text: "cold" });
    await until(() => h.counters.held(slot) === 1, "the unary call held");
    h.setEndpoints(KEY, [app.port], { h2c: true });
    const r = await cold;
    assert.equal(r.text, "unary:cold");
    assert.equal(r.authority, "grpc.test");
    assert.equal(r.forwarded_for, "127.0.0.1");
    // Warm.
    assert.deepEqual(
      (await serverStream(c, { text: "s", count: 5 })).map((x) => x.text),
      ["s#0", "s#1", "s#2", "s#3", "s#4"],
    );
    assert.equal((await clientStream(c, ["a", "b", "c"])).text, "a+b+c");
    assert.deepEqual(await bidi(c, ["x", "y", "z"]), ["bidi:x", "bidi:y", "bidi:z"]);
    // Every call type from zero again.
    h.setEndpoints(KEY, [], { h2c: true });
    const all = Promise.all([
      unary(c, { text: "u" }),
      serverStream(c, { text: "s", count: 2 }),
      clientStream(c, ["p", "q"]),
      bidi(c, ["b"]),
    ]);
    await until(() => h.counters.held(slot) >= 3, "calls held at zero");
    h.setEndpoints(KEY, [app.port], { h2c: true });
    const [u, s, cs, b] = await all;
    assert.equal(u.text, "unary:u");
    assert.equal(s.length, 2);
    assert.equal(cs.text, "p+q");
    assert.deepEqual(b, ["bidi:b"]);
    await until(() => h.counters.concurrency(slot) === 0, "concurrency back to 0");
  } finally {
    c.close();
  }
});

Deno.test({
  name:
    "gRPC: status and message relayed, deadline exceeded, cancellation reaches the app, 4 MiB each way",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using h = startHarness();
  await using app = await startGrpcApp();
  h.setRoutes([{ name: "grpc", spec: { hosts: ["grpc.test"] } }]);
  h.setEndpoints(KEY, [app.port], { h2c: true });
  const slot = h.routes.get(KEY)!.slot;
  const c = clientFor(`127.0.0.1:${h.port}`, "grpc.test");
  try {
    await assert.rejects(
      unary(c, { text: "not yours", fail_code: grpc.status.PERMISSION_DENIED }),
      (e: grpc.ServiceError) => {
        assert.equal(e.code, grpc.status.PERMISSION_DENIED);
        assert.equal(e.details, "not yours");
        return true;
      },
    );
    await assert.rejects(
      unary(c, { text: "slow", sleep_ms: 2_000 }, { deadline: Date.now() + 300 }),
      (e: grpc.ServiceError) => e.code === grpc.status.DEADLINE_EXCEEDED,
    );
    await until(() => app.cancelled >= 1, "the app saw the call cancelled");
    const big = await unary(c, { text: "x".repeat(4 << 20), size: 4 << 20 });
    assert.equal(big.text.length, (4 << 20) + "unary:".length);
    assert.equal(big.filler.length, 4 << 20);
    await until(() => h.counters.concurrency(slot) === 0, "concurrency back to 0");
  } finally {
    c.close();
  }
});
