import assert from "node:assert/strict";
import { startCluster } from "../tests/cluster/mod.ts";
import type { KubeObject } from "../tests/cluster/mod.ts";
import { KubeClient, loadKubeConfig } from "../shared/kube.ts";
import { createLogger } from "../shared/log.ts";
import { Control, type RouteSink } from "./control.ts";
import { SharedCounters } from "./counters.ts";
import { appObjects } from "./cluster_testing.ts";
import type { LiveRoute } from "./proxy_contract.ts";

/** A data plane that records what it was sent. */
function recordingSink() {
  const tables: LiveRoute[][] = [];
  let version = 0;
  const sink: RouteSink = {
    setRoutes(routes) {
      tables.push(routes);
      return ++version;
    },
    setTargets() {
      return ++version;
    },
    get version() {
      return version;
    },
    get minAcked() {
      return version;
    },
  };
  return { sink, tables };
}

async function until(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("Control: a first list in pages publishes one whole table, then follows changes", async () => {
  await using cluster = await startCluster({ node: false, controllers: false });
  const ns = await cluster.createNamespace("control");
  const names = ["a", "b", "c", "d", "e"];
  await cluster.applyYaml(
    names.map((name) =>
      appObjects({ namespace: ns, name, spec: { hosts: [`${name}.example.com`] } }).httpso
    ) as KubeObject[],
    { namespace: ns },
  );
  using client = new KubeClient(loadKubeConfig(cluster.kubeconfigPath));
  const { sink, tables } = recordingSink();
  const control = new Control({
    client,
    log: createLogger({ level: "warn" }),
    watchNamespace: ns,
    counters: SharedCounters.create(),
    sink,
    // Three pages: the objects of each are validated while the next is fetched.
    listPageSize: 2,
  });
  const stop = new AbortController();
  const running = control.run(stop.signal);
  try {
    await until("the first table", () => control.ready);
    // Nothing was published while the list was incomplete.
    assert.equal(tables.length, 1);
    const keys = (t: LiveRoute[]) => t.map((r) => r.key).sort();
    assert.deepEqual(keys(tables[0]!), names.map((n) => `${ns}/${n}`));
    assert.deepEqual([...control.table.entries.keys()], names.map((n) => `${ns}/${n}`));

    // After the sync a change rebuilds the table from the cache plus the change.
    await client.patch(
      `/apis/http.keda.sh/v1alpha1/namespaces/${ns}/httpscaledobjects/c`,
      { spec: { hosts: ["c.example.org"] } },
    );
    await until("the changed table", () => tables.length === 2);
    assert.deepEqual(keys(tables[1]!), names.map((n) => `${ns}/${n}`));
    assert.deepEqual(control.table.entries.get(`${ns}/c`)?.rules[0]?.hosts, ["c.example.org"]);
    assert.deepEqual(control.table.entries.get(`${ns}/a`)?.rules[0]?.hosts, ["a.example.com"]);
  } finally {
    stop.abort();
    await running;
  }
});
