import assert from "node:assert/strict";
import { createLogger } from "../shared/log.ts";
import { serveAdmin, serveProbes } from "./admin.ts";

async function withAdmin(
  ready: boolean,
  fn: (base: string) => Promise<void>,
): Promise<void> {
  const stop = new AbortController();
  const listening = Promise.withResolvers<number>();
  const serving = serveAdmin({
    port: 0,
    hostname: "127.0.0.1",
    log: createLogger({ level: "error" }),
    routingTable: () => '{"routes":{},"invalid":{}}',
    ready: () => ({
      ready,
      detail: ready ? "caches synced" : "waiting for the first list of: services",
    }),
    metrics: () => "keda_http_operator_is_leader 1\n",
    info: () => ({ leader: true }),
    onListen: (port) => listening.resolve(port),
  })(stop.signal);
  try {
    await fn(`http://127.0.0.1:${await listening.promise}`);
  } finally {
    stop.abort();
    await serving;
  }
}

Deno.test("admin: /routing_table, /livez, /metrics and unknown paths over HTTP", async () => {
  await withAdmin(true, async (base) => {
    const table = await fetch(`${base}/routing_table`);
    assert.equal(table.status, 200);
    assert.equal(table.headers.get("content-type"), "application/json");
    assert.deepEqual(await table.json(), { routes: {}, invalid: {} });
    const live = await fetch(`${base}/livez`);
    assert.equal(live.status, 200);
    await live.body?.cancel();
    const metrics = await fetch(`${base}/metrics`);
    assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.equal(await metrics.text(), "keda_http_operator_is_leader 1\n");
    const ready = await fetch(`${base}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { ready: true, detail: "caches synced", leader: true });
    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
    assert.match(
      await missing.text(),
      /serves \/routing_table, \/livez, \/healthz, \/readyz and \/metrics/,
    );
    // The Go operator's probe path, answered here when the probe port is the admin port.
    const healthz = await fetch(`${base}/healthz`);
    assert.equal(healthz.status, 200);
    await healthz.body?.cancel();
    const post = await fetch(`${base}/routing_table`, { method: "POST" });
    assert.equal(post.status, 405);
    await post.body?.cancel();
  });
});

Deno.test("admin: /readyz is 503 with the reason until the caches have listed", async () => {
  await withAdmin(false, async (base) => {
    const res = await fetch(`${base}/readyz`);
    assert.equal(res.status, 503);
    const body = await res.json();
    assert.equal(body.ready, false);
    assert.match(body.detail, /waiting for the first list of: services/);
  });
});

Deno.test("probes: /healthz and /readyz only, with the admin port's answers", async () => {
  let ready = false;
  const stop = new AbortController();
  const listening = Promise.withResolvers<number>();
  const serving = serveProbes({
    port: 0,
    hostname: "127.0.0.1",
    log: createLogger({ level: "error" }),
    ready: () => ({ ready, detail: ready ? "caches synced" : "waiting for the first list of: x" }),
    info: () => ({ leader: false }),
    onListen: (port) => listening.resolve(port),
  })(stop.signal);
  try {
    const base = `http://127.0.0.1:${await listening.promise}`;
    const get = async (path: string) => {
      const res = await fetch(`${base}${path}`);
      return { status: res.status, body: await res.text() };
    };
    assert.equal((await get("/healthz")).status, 200);
    const notReady = await get("/readyz");
    assert.equal(notReady.status, 503);
    assert.match(notReady.body, /waiting for the first list of: x/);
    ready = true;
    assert.deepEqual(JSON.parse((await get("/readyz")).body), {
      ready: true,
      detail: "caches synced",
      leader: false,
    });
    const other = await get("/routing_table");
    assert.equal(other.status, 404);
    assert.match(other.body, /serves \/healthz and \/readyz/);
  } finally {
    stop.abort();
    await serving;
  }
});
