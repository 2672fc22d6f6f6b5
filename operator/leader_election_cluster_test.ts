/** Leader election against a real kube-apiserver (tests/cluster, control plane only). */
import assert from "node:assert/strict";
import { KubeClient, loadKubeConfig } from "../shared/kube.ts";
import { aborted } from "../shared/lifetime.ts";
import { createLogger } from "../shared/log.ts";
import { startCluster } from "../tests/cluster/mod.ts";
import { LeaderElector, type Lease, microTime } from "./leader_election.ts";

const report = createLogger({ level: "info", fields: { component: "leader-election-test" } });
const LEASE_MS = 2_000;
const RENEW_MS = 1_500;
const RETRY_MS = 300;

Deno.test("microTime has exactly six fractional digits", () => {
  assert.equal(microTime(new Date("2026-01-02T03:04:05.678Z")), "2026-01-02T03:04:05.678000Z");
  assert.equal(microTime(new Date("2026-01-02T03:04:05Z")), "2026-01-02T03:04:05.000000Z");
});

interface Candidate {
  elector: LeaderElector;
  /** Aborts the campaign (and the term). */
  stop: AbortController;
  /** Resolves when run() returns. */
  done: Promise<void>;
  terms: number;
  /** Set while a term runs. */
  leading: boolean;
  client: KubeClient;
}

function candidate(
  kubeconfig: string,
  namespace: string,
  identity: string,
  options: { release?: boolean } = {},
): Candidate {
  const client = new KubeClient(loadKubeConfig(kubeconfig));
  const stop = new AbortController();
  const c: Candidate = {
    elector: new LeaderElector({
      client,
      namespace,
      name: "test-lease",
      identity,
      leaseDurationMs: LEASE_MS,
      renewDeadlineMs: RENEW_MS,
      retryPeriodMs: RETRY_MS,
      log: createLogger({ level: "error", fields: { identity } }),
      releaseOnCancel: options.release ?? true,
    }),
    stop,
    done: Promise.resolve(),
    terms: 0,
    leading: false,
    client,
  };
  c.done = c.elector.run(stop.signal, async (term) => {
    c.terms++;
    c.leading = true;
    await aborted(term);
    c.leading = false;
  }).finally(() => client.close());
  return c;
}

Deno.test("leader election on a real Lease", async (t) => {
  await using cluster = await startCluster({ node: false });
  const leasePath = (ns: string) =>
    `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/test-lease`;
  const wait = <T>(
    what: string,
    fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
    timeoutMs = 15_000,
  ) => cluster.waitFor(fn, { what, timeoutMs, intervalMs: 20 });
  const all: Candidate[] = [];
  const stopAll = async () => {
    for (const c of all) c.stop.abort();
    await Promise.all(all.map((c) => c.done.catch(() => {})));
  };

  try {
    await t.step(
      "one of two candidates leads; killed without release, the other takes over after the lease expires",
      async () => {
        const ns = await cluster.createNamespace("le");
        const a = candidate(cluster.kubeconfigPath, ns, "a", { release: false });
        all.push(a);
        await wait("a to lead", () => a.leading);
        const b = candidate(cluster.kubeconfigPath, ns, "b", { release: false });
        all.push(b);
        // b must see a holding the lease for a while and stay a follower.
        const lease = await wait("b to observe the lease", async () => {
          const l = await cluster.client.get<Lease>(leasePath(ns));
          return l.spec?.holderIdentity === "a" && l;
        });
        assert.equal(lease.spec?.leaseDurationSeconds, LEASE_MS / 1000);
        // Several renewals later b is still a follower.
        for (let i = 0; i < 3; i++) {
          const before = (await cluster.client.get<Lease>(leasePath(ns))).spec?.renewTime;
          await wait("a to renew", async () => {
            const l = await cluster.client.get<Lease>(leasePath(ns));
            return l.spec?.renewTime !== before && l.spec?.holderIdentity === "a";
          });
        }
        assert.equal(b.leading, false);
        assert.equal(b.elector.isLeader, false);
        assert.equal(a.elector.holdsLease(), true);

        // "Crash": stop a's process without releasing the lease.
        const killedAt = performance.now();
        a.stop.abort();
        await a.done;
        await wait("b to take over", () => b.leading, 10_000);
        const takeoverMs = performance.now() - killedAt;
        const after = await cluster.client.get<Lease>(leasePath(ns));
        assert.equal(after.spec?.holderIdentity, "b");
        assert.equal(after.spec?.leaseTransitions, 1);
        // It must not take over before the lease could have expired.
        assert.ok(takeoverMs >= LEASE_MS - RETRY_MS, `took over after ${takeoverMs} ms`);
        report.info("takeover after the leader died", {
          takeoverMs: Math.round(takeoverMs),
          leaseMs: LEASE_MS,
          retryMs: RETRY_MS,
        });
        b.stop.abort();
        await b.done;
      },
    );

    await t.step(
      "a leader that shuts down releases the lease and the standby takes over at once",
      async () => {
        const ns = await cluster.createNamespace("le");
        const a = candidate(cluster.kubeconfigPath, ns, "a");
        all.push(a);
        await wait("a to lead", () => a.leading);
        const b = candidate(cluster.kubeconfigPath, ns, "b");
        all.push(b);
        await wait("b to observe a", async () => {
          const l = await cluster.client.get<Lease>(leasePath(ns));
          return l.spec?.holderIdentity === "a";
        });
        const stoppedAt = performance.now();
        a.stop.abort();
        await a.done;
        assert.equal(a.leading, false, "the term ended before run() returned");
        await wait("b to take over", () => b.leading, 10_000);
        const ms = performance.now() - stoppedAt;
        assert.ok(ms < LEASE_MS, `released lease taken over after ${ms} ms`);
        report.info("takeover after a graceful shutdown", { takeoverMs: Math.round(ms) });
        b.stop.abort();
        await b.done;
      },
    );

    await t.step("a leader whose lease is taken steps down (its term is aborted)", async () => {
      const ns = await cluster.createNamespace("le");
      const a = candidate(cluster.kubeconfigPath, ns, "a");
      all.push(a);
      await wait("a to lead", () => a.leading);
      const lease = await cluster.client.get<Lease>(leasePath(ns));
      const now = microTime(new Date());
      await cluster.client.request("PUT", leasePath(ns), {
        body: {
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: "intruder",
            leaseDurationSeconds: 60,
            renewTime: now,
            acquireTime: now,
          },
        },
      });
      await wait("a to step down", () => !a.leading, 10_000);
      assert.equal(a.elector.holdsLease(), false);
      assert.equal(a.elector.isLeader, false);
      // It keeps campaigning but cannot win while the intruder's lease is valid.
      const l = await cluster.client.get<Lease>(leasePath(ns));
      assert.equal(l.spec?.holderIdentity, "intruder");
      a.stop.abort();
      await a.done;
    });
  } finally {
    await stopAll();
  }
});
