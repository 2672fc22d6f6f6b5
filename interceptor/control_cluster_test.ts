import assert from "node:assert/strict";
import { startCluster } from "../tests/cluster/mod.ts";
import type { KubeObject } from "../tests/cluster/mod.ts";
import { KubeClient, loadKubeConfig } from "../shared/kube.ts";
import { createLogger } from "../shared/log.ts";
import { ColdStartLog, Control, type RouteSink } from "./control.ts";
import { SharedCounters } from "./counters.ts";
import { appObjects, endpointSlice } from "./cluster_testing.ts";
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

Deno.test("ColdStartLog: begin, a pod appears, ready releases; newest first", () => {
  const log = new ColdStartLog(3);
  log.begin("ns/a", "ns/a:80", 1000, false);
  // A second request of the same cold start does not open another.
  log.begin("ns/a", "ns/a:80", 1100, false);
  log.observe("ns/a:80", { pods: 1, ready: 0, early: false }, 1500, () => 2);
  log.sampleHeld(() => 3);
  assert.deepEqual(log.list(), [{
    route: "ns/a",
    target: "ns/a:80",
    heldAt: 1000,
    podSeenAt: 1500,
    outcome: "waiting",
    held: 3,
  }]);
  log.observe("ns/a:80", { pods: 1, ready: 1, early: true }, 2500, () => 1);
  assert.deepEqual(log.list(), [{
    route: "ns/a",
    target: "ns/a:80",
    heldAt: 1000,
    podSeenAt: 1500,
    readyAt: 2500,
    readyBy: "probe",
    outcome: "ready",
    held: 3,
  }]);
  // Another target's pods do not touch it; the route's next cold start is a new record.
  log.begin("ns/a", "ns/a:80", 9000, true);
  assert.equal(log.list()[0]?.podSeenAt, 9000);
  assert.equal(log.list().length, 2);
});

Deno.test("ColdStartLog: idle without a ready pod is abandoned, unless a placeholder answered", () => {
  const log = new ColdStartLog(2);
  log.begin("ns/held", "ns/held:80", 1000, false);
  log.begin("ns/ph", "ns/ph:80", 1000, false);
  log.idle("ns/held", 4000, false);
  log.idle("ns/ph", 4000, true);
  const [ph, held] = log.list();
  assert.equal(ph?.outcome, "waiting");
  assert.deepEqual([held?.outcome, held?.endedAt], ["abandoned", 4000]);
  // A route gone from the table ends its cold start; the history keeps the newest ones.
  log.forget((r) => r !== "ns/ph", 5000);
  log.begin("ns/c", "ns/c:80", 6000, false);
  log.idle("ns/c", 7000, false);
  assert.deepEqual(log.list().map((c) => c.route), ["ns/c", "ns/ph"]);
});

Deno.test("Control: a held request at zero pods is a cold start until its EndpointSlice says ready", async () => {
  await using cluster = await startCluster({ node: false, controllers: false });
  const ns = await cluster.createNamespace("coldstart");
  const app = appObjects({ namespace: ns, name: "a", spec: { hosts: ["a.example.com"] } });
  await cluster.applyYaml([app.service, app.httpso] as KubeObject[], { namespace: ns });
  using client = new KubeClient(loadKubeConfig(cluster.kubeconfigPath));
  const counters = SharedCounters.create({ routeCapacity: 16, podCapacity: 16 });
  const control = new Control({
    client,
    log: createLogger({ level: "warn" }),
    watchNamespace: ns,
    counters,
    sink: recordingSink().sink,
    probeStartingPods: false,
  });
  const stop = new AbortController();
  const running = control.run(stop.signal);
  const key = `${ns}/a`;
  const target = `${ns}/a:80`;
  try {
    await until("the target is known", () => control.deployments()[target] !== undefined);
    // As the data plane does: the request is counted, then held (no ready endpoint).
    const slot = control.routeSlots.slotOf(key)!;
    counters.begin(slot);
    assert.ok(counters.holdBegin(slot, 10));
    control.onActivity(slot, true);
    let status = control.routeStatus();
    assert.deepEqual(status.routes[key], { held: 1, readyPods: 0, pods: 0 });
    assert.equal(status.coldStarts[0]?.outcome, "waiting");
    assert.equal(status.coldStarts[0]?.target, target);

    const slice = (ready: boolean) =>
      endpointSlice({ namespace: ns, service: "a", endpoints: [{ ip: "10.1.2.3", ready }] });
    await cluster.applyYaml([slice(false)] as KubeObject[], { namespace: ns });
    await until(
      "the starting pod seen",
      () => control.coldStarts.list()[0]?.podSeenAt !== undefined,
    );
    assert.equal(control.coldStarts.list()[0]?.outcome, "waiting");
    await cluster.applyYaml([slice(true)] as KubeObject[], { namespace: ns });
    await until("the cold start over", () => control.coldStarts.list()[0]?.outcome === "ready");
    const c = control.coldStarts.list()[0]!;
    assert.equal(c.readyBy, "kubelet");
    assert.equal(c.held, 1);
    assert.ok(c.heldAt <= c.podSeenAt! && c.podSeenAt! <= c.readyAt!, JSON.stringify(c));
    // The data plane releases the request; the route's pods as the watch sees them.
    counters.holdEnd(slot);
    counters.end(slot);
    control.onActivity(slot, false);
    status = control.routeStatus();
    assert.deepEqual(status.routes[key], { held: 0, readyPods: 1, pods: 1 });
    assert.equal(status.coldStarts.length, 1);

    // Busy again with a ready pod: no cold start.
    counters.begin(slot);
    control.onActivity(slot, true);
    assert.equal(control.routeStatus().coldStarts.length, 1);
  } finally {
    stop.abort();
    await running;
  }
});
