/**
 * The data plane with real worker isolates on one port (SO_REUSEPORT, from
 * "unstable": ["net"] in deno.json): growing and shrinking under traffic.
 */
import assert from "node:assert/strict";
import { createLogger } from "../shared/log.ts";
import { SharedCounters } from "./counters.ts";
import { DataPlane } from "./dataplane.ts";
import { reusePortAvailable } from "./dataplane_protocol.ts";
import { liveRoutes, RawClient, startApp, TEST_PROXY_CONFIG } from "./proxy_testing.ts";

const get = "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n";

/** Requests answered per isolate so far. */
async function servedPerIsolate(plane: DataPlane): Promise<number[]> {
  const { snapshots } = await plane.metrics();
  return snapshots.map((s) => s.counts.reduce((n, [, , , c]) => n + c, 0));
}

Deno.test("data plane: grow adds an isolate on the port and recycles open connections; shrink drains it", async () => {
  assert.ok(reusePortAvailable(), 'tests need "unstable": ["net"] in deno.json');
  await using app = startApp(() => new Response("ok"));
  const plane = new DataPlane({
    workers: 1,
    config: TEST_PROXY_CONFIG,
    listen: { hostname: "127.0.0.1", port: 0 },
    tls: null,
    counters: SharedCounters.create({ routeCapacity: 16, podCapacity: 16 }),
    log: createLogger({ level: "error", sink: () => {} }),
    logLevel: "error",
    onActivity: () => {},
  });
  try {
    await plane.start();
    const routes = liveRoutes([{ name: "app", spec: { hosts: ["app.test"] } }]);
    plane.setRoutes([...routes.values()]);
    plane.setTargets([{
      key: routes.get("default/app")!.targetKey,
      h2c: false,
      tls: false,
      endpoints: [{ ip: "127.0.0.1", port: app.port, slot: 1 }],
    }]);
    assert.ok(await plane.applied(plane.version));
    using old = await RawClient.connect(plane.port);
    await old.send(get);
    assert.equal((await old.response()).headers.get("connection"), undefined);

    await plane.grow();
    assert.equal(plane.isolates, 2);
    assert.ok(await plane.applied(plane.version), "the new isolate has the routes");
    // The connection from before the growth is told to reconnect...
    await old.send(get);
    const r = await old.response();
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("connection"), "close");
    // ...and new connections land on both isolates.
    for (let i = 0; i < 40; i++) {
      using c = await RawClient.connect(plane.port);
      await c.send(get);
      assert.equal((await c.response()).status, 200);
    }
    const served = await servedPerIsolate(plane);
    assert.equal(served.length, 2);
    assert.ok(served.every((n) => n > 0), `requests per isolate: ${served}`);

    await plane.shrink(1000);
    assert.equal(plane.isolates, 1);
    for (let i = 0; i < 10; i++) {
      using c = await RawClient.connect(plane.port);
      await c.send(get);
      assert.equal((await c.response()).status, 200, "the remaining isolate answers");
    }
    assert.equal((await servedPerIsolate(plane)).length, 1);
  } finally {
    plane.stop();
  }
});
