import assert from "node:assert/strict";
import {
  fetchQueueCounts,
  parseQueueCounts,
  type QueueCounts,
  queueResponse,
  queueWatchResponse,
  watchQueueCounts,
} from "./queue_counts.ts";

Deno.test("/queue round trip over real HTTP, in the Go add-on's format", async () => {
  const counts: QueueCounts = {
    "default/app": { Concurrency: 3, RequestCount: 42 },
    "ns2/other": { Concurrency: 0, RequestCount: 0 },
  };
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => queueResponse(counts),
  );
  const base = `http://127.0.0.1:${server.addr.port}`;
  const raw = await (await fetch(`${base}/queue`)).text();
  assert.equal(
    raw,
    '{"default/app":{"Concurrency":3,"RequestCount":42},"ns2/other":{"Concurrency":0,"RequestCount":0}}',
  );
  assert.deepEqual(await fetchQueueCounts(base, { timeoutMs: 2000 }), counts);
});

Deno.test("parseQueueCounts says what is malformed", () => {
  assert.throws(() => parseQueueCounts("{"), /queue counts are not JSON/);
  assert.throws(
    () => parseQueueCounts('{"a/b":{"Concurrency":-1,"RequestCount":0}}'),
    /malformed at a\/b\.Concurrency/,
  );
  assert.throws(
    () => parseQueueCounts('{"a/b":{"Concurrency":1}}'),
    /malformed at a\/b\.RequestCount/,
  );
});

Deno.test("fetchQueueCounts times out instead of hanging", async () => {
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      await new Promise((r) => req.signal.addEventListener("abort", r));
      return new Response("late");
    },
  );
  await assert.rejects(
    fetchQueueCounts(`http://127.0.0.1:${server.addr.port}`, { timeoutMs: 100 }),
    /timed out|abort/i,
  );
});

Deno.test("/queue/watch streams a snapshot, then changes and heartbeats", async () => {
  const listeners = new Set<(c: QueueCounts) => void>();
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () =>
      queueWatchResponse(
        () => ({ "default/app": { Concurrency: 0, RequestCount: 1 } }),
        (send) => {
          listeners.add(send);
          return () => listeners.delete(send);
        },
        { heartbeatMs: 50 },
      ),
  );
  const got: Array<[QueueCounts, boolean]> = [];
  let heartbeats = 0;
  const stop = new AbortController();
  const done = watchQueueCounts(`http://127.0.0.1:${server.addr.port}`, (c, snap) => {
    // Heartbeats may arrive at any point on a loaded machine; count them apart.
    if (!snap && Object.keys(c).length === 0) heartbeats++;
    else got.push([c, snap]);
    if (got.length === 1 && snap) {
      for (const l of listeners) l({ "default/app": { Concurrency: 1, RequestCount: 2 } });
    }
    if (got.length >= 2 && heartbeats >= 1) stop.abort();
  }, { signal: stop.signal, idleTimeoutMs: 5000 }).catch((e) => {
    if (!stop.signal.aborted) throw e;
  });
  await done;
  assert.deepEqual(got, [
    [{ "default/app": { Concurrency: 0, RequestCount: 1 } }, true],
    [{ "default/app": { Concurrency: 1, RequestCount: 2 } }, false],
  ]);
  assert.ok(heartbeats >= 1);
  // The server unsubscribed when the client went away.
  for (let i = 0; i < 50 && listeners.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(listeners.size, 0);
});
