import assert from "node:assert/strict";
import { startCluster } from "../tests/cluster/mod.ts";
import {
  Informer,
  type InformerEvent,
  isAlreadyExists,
  isNotFound,
  KubeApiError,
  KubeClient,
  loadKubeConfig,
} from "./kube.ts";
import { createLogger } from "./log.ts";

const log = createLogger({ level: "warn" });

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("KubeClient and Informer against a real kube-apiserver", async (t) => {
  await using cluster = await startCluster({ node: false });
  using client = new KubeClient(loadKubeConfig(cluster.kubeconfigPath));
  const ns = `kube-test-${crypto.randomUUID().slice(0, 8)}`;
  await client.create("/api/v1/namespaces", { metadata: { name: ns } });
  const cms = `/api/v1/namespaces/${ns}/configmaps`;

  await t.step("API errors carry status and reason", async () => {
    await assert.rejects(
      client.get(`${cms}/missing`),
      (e) => isNotFound(e) && e instanceof KubeApiError,
    );
    await client.create(cms, { metadata: { name: "dup" } });
    await assert.rejects(client.create(cms, { metadata: { name: "dup" } }), isAlreadyExists);
  });

  await t.step("informer lists, then follows adds, updates and deletes", async () => {
    const informer = new Informer(client, { path: cms, log });
    const events: InformerEvent<Record<string, unknown>>[] = [];
    informer.subscribe((e) => events.push(e));
    const stop = new AbortController();
    const running = informer.run(stop.signal);
    await informer.synced;
    assert.ok(informer.store.has(`${ns}/dup`));
    await client.create(cms, { metadata: { name: "a" }, data: { v: "1" } });
    await until("ADDED a", () => events.some((e) => e.type === "ADDED" && e.key === `${ns}/a`));
    await client.patch(`${cms}/a`, { data: { v: "2" } });
    await until(
      "MODIFIED a",
      () => events.some((e) => e.type === "MODIFIED" && e.key === `${ns}/a`),
    );
    assert.deepEqual((informer.store.get(`${ns}/a`) as { data: unknown }).data, { v: "2" });
    await client.delete(`${cms}/a`);
    await until("DELETED a", () => events.some((e) => e.type === "DELETED" && e.key === `${ns}/a`));
    assert.equal(informer.store.has(`${ns}/a`), false);

    // A forced relist re-reads the collection and reports no spurious changes.
    const before = events.length;
    await informer.relist();
    const after = events.slice(before).filter((e) => e.type !== "SYNC");
    assert.deepEqual(after, []);
    stop.abort();
    await running;
  });

  await t.step(
    "the first list reaches subscribers page by page; a relist all at once",
    async () => {
      for (const name of ["p1", "p2", "p3", "p4"]) {
        await client.create(cms, { metadata: { name } });
      }
      const total = (await client.list(cms)).items.length;
      assert.ok(total >= 5, `expected at least 5 ConfigMaps, found ${total}`);
      const informer = new Informer(client, { path: cms, log, pageSize: 2 });
      // How many objects the store holds once the code that emitted the first
      // ADDED yields: page by page, only the first page; all at once, the list.
      let firstBatch = -1;
      let added = 0;
      let syncedEvents = 0;
      informer.subscribe((e) => {
        if (e.type !== "ADDED") return;
        if (added++ === 0) queueMicrotask(() => (firstBatch = informer.store.size));
        if (informer.hasSynced) syncedEvents++;
      });
      const stop = new AbortController();
      const running = informer.run(stop.signal);
      await informer.synced;
      assert.equal(added, total);
      assert.equal(syncedEvents, 0, "the first list's objects arrive before its SYNC");
      assert.equal(
        firstBatch,
        2,
        "the first page reaches subscribers before the second is fetched",
      );
      stop.abort();
      await running;

      // A relist (here: the same informer run again) applies every page at once.
      await client.create(cms, { metadata: { name: "p5" } });
      await client.create(cms, { metadata: { name: "p6" } });
      added = 0;
      firstBatch = -1;
      const again = new AbortController();
      const rerun = informer.run(again.signal);
      await informer.relist();
      assert.equal(added, 2);
      assert.equal(firstBatch, total + 2, "a relist is applied whole before anyone runs");
      again.abort();
      await rerun;
    },
  );

  await client.delete(`/api/v1/namespaces/${ns}`);
});
