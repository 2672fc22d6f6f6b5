/**
 * Routing at scale: 10,000 HTTPScaledObjects through the interceptor's real
 * rebuild path (Control: parse, table, slots, index) and lookups on the index.
 */
import process from "node:process";
import { createLogger } from "../shared/log.ts";
import { percentileOf } from "./load_tools.ts";
import { KubeApiClient, type KubeObject, LIST_PAGE_SIZE } from "../shared/kube_api.ts";
import { Control, type RouteSink } from "../interceptor/control.ts";
import { SharedCounters } from "../interceptor/counters.ts";
import { headerSourceOf, RouteIndex, ruleEntriesOf } from "../interceptor/routing.ts";
import type { LiveRoute, TargetUpdate } from "../interceptor/proxy_contract.ts";

export interface RoutingResult {
  routes: number;
  /** Table change → every data-plane worker matching on the new index (real workers). */
  workersAppliedMs?: number;
  /** Validating one list page (500 objects) as it arrives, before the first sync. */
  pageP50Ms: number;
  pageMaxMs: number;
  /** The first table, once the list's last page is in (cold JIT). */
  fullRebuildMs: number;
  incrementalRebuildMs: number;
  indexBuildMs: number;
  lookupP50Us: number;
  lookupP99Us: number;
  lookupMaxUs: number;
}

/** Objects with a mix of exact hosts, wildcards, path prefixes and headers. */
export function makeObjects(n: number): KubeObject[] {
  const out: KubeObject[] = [];
  for (let i = 0; i < n; i++) {
    const ns = `team-${i % 50}`;
    const spec: Record<string, unknown> = {
      scaleTargetRef: { name: `app-${i}`, service: `app-${i}`, port: 8080 },
    };
    switch (i % 5) {
      case 0:
        spec.hosts = [`app-${i}.example.com`];
        break;
      case 1:
        spec.hosts = [`*.svc-${i}.example.com`];
        spec.pathPrefixes = ["/api", "/v1/api"];
        break;
      case 2:
        spec.hosts = [`app-${i}.example.com`, `www.app-${i}.example.com`];
        spec.pathPrefixes = [`/p${i % 7}`];
        break;
      case 3:
        spec.hosts = [`shared-${i % 100}.example.com`];
        spec.pathPrefixes = [`/tenant/${i}`];
        spec.headers = [{ name: "x-tenant", value: `t${i}` }];
        break;
      default:
        spec.hosts = [`app-${i}.example.com`];
        spec.timeouts = { conditionWait: "30s" };
    }
    out.push({
      apiVersion: "http.keda.sh/v1alpha1",
      kind: "HTTPScaledObject",
      metadata: { name: `app-${i}`, namespace: ns, resourceVersion: `${i + 1}` },
      spec,
    });
  }
  return out;
}

function hrMs(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

export function runRoutingBench(n = 10_000, lookups = 200_000): RoutingResult {
  // Never contacted: the benchmark fills the informer's store itself.
  const client = new KubeApiClient({ server: "https://127.0.0.1:1", namespace: "default" });
  let routes: LiveRoute[] = [];
  let version = 0;
  const sink: RouteSink = {
    setRoutes(r: LiveRoute[]) {
      routes = r;
      return ++version;
    },
    setTargets(_u: TargetUpdate[]) {
      return ++version;
    },
    get version() {
      return version;
    },
    get minAcked() {
      return version;
    },
  };
  const control = new Control({
    client,
    log: createLogger({ level: "error", sink: () => {} }),
    watchNamespace: "",
    counters: SharedCounters.create(),
    sink,
  });
  // Feed the informer's store directly, a list page at a time as the
  // informer does before its first sync: this measures our code, not the API
  // server. Pages follow each other at once here; a real list waits for each.
  const store = control.httpso.store;
  const objects = makeObjects(n);
  let synced = false;
  Object.defineProperty(control.httpso, "hasSynced", { get: () => synced });
  // The other route sources (InterceptorRoutes, labelled ConfigMaps) list empty at once.
  Object.defineProperty(control.routes, "hasSynced", { get: () => true });
  Object.defineProperty(control.configMaps, "hasSynced", { get: () => true });
  const pageMs: number[] = [];
  for (let i = 0; i < n; i += LIST_PAGE_SIZE) {
    for (const o of objects.slice(i, i + LIST_PAGE_SIZE)) {
      store.set(`${o.metadata!.namespace}/${o.metadata!.name}`, o);
    }
    const t = process.hrtime.bigint();
    rebuildOnce(control);
    pageMs.push(hrMs(t));
  }
  if (routes.length !== 0) throw new Error("a table was published before the list was complete");
  synced = true;
  const t0 = process.hrtime.bigint();
  rebuildOnce(control);
  const fullRebuildMs = hrMs(t0);
  if (routes.length !== n) throw new Error(`expected ${n} routes, got ${routes.length}`);

  // One object changes (a new resourceVersion): the others come from the parse cache.
  const changed = objects[1234]!;
  store.set(`${changed.metadata!.namespace}/${changed.metadata!.name}`, {
    ...changed,
    metadata: { ...changed.metadata, resourceVersion: "999999" },
  });
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = process.hrtime.bigint();
    rebuildOnce(control);
    samples.push(hrMs(t));
  }
  samples.sort((a, b) => a - b);
  const incrementalRebuildMs = samples[2]!;

  const t1 = process.hrtime.bigint();
  const index = new RouteIndex(ruleEntriesOf(routes));
  const indexBuildMs = hrMs(t1);

  // Lookups: hits on every kind of route, and misses.
  const queries: Array<[string, string, ReturnType<typeof headerSourceOf>]> = [];
  for (let i = 0; i < 1000; i++) {
    const j = (i * 37) % n;
    const none = headerSourceOf({});
    switch (j % 6) {
      case 0:
        queries.push([`app-${j}.example.com`, "/some/path?x=1", none]);
        break;
      case 1:
        queries.push([`a.b.svc-${j}.example.com:8080`, "/v1/api/items", none]);
        break;
      case 3:
        queries.push([
          `shared-${j % 100}.example.com`,
          `/tenant/${j}/x`,
          headerSourceOf({ "x-tenant": `t${j}` }),
        ]);
        break;
      case 5:
        queries.push(["unknown.example.org", "/nothing/here", none]);
        break;
      default:
        queries.push([`APP-${j}.Example.com`, `/p${j % 7}/deep/er/path`, none]);
    }
  }
  const times = new Float64Array(lookups);
  let found = 0;
  for (let i = 0; i < lookups; i++) {
    const q = queries[i % queries.length]!;
    const t = process.hrtime.bigint();
    const r = index.lookup(q[0], q[1], q[2]);
    times[i] = Number(process.hrtime.bigint() - t) / 1000;
    if (r) found++;
  }
  if (found === 0) throw new Error("no lookup matched: the benchmark is broken");
  // Drop the first pass (JIT warm-up) from the distribution.
  const warm = times.slice(queries.length).sort();
  client.close();
  pageMs.sort((a, b) => a - b);
  return {
    routes: n,
    pageP50Ms: percentileOf(pageMs, 50),
    pageMaxMs: pageMs[pageMs.length - 1]!,
    fullRebuildMs,
    incrementalRebuildMs,
    indexBuildMs,
    lookupP50Us: percentileOf(warm, 50),
    lookupP99Us: percentileOf(warm, 99),
    lookupMaxUs: warm[warm.length - 1]!,
  };
}

/** The work a watch event causes: routes marked dirty, then flushed. */
function rebuildOnce(control: Control): void {
  control.rebuildRoutes();
}

/**
 * The whole path of a change into the data plane: the table is copied to
 * each worker, which builds its index; measured until every worker acks.
 */
export async function measureWorkerApply(n = 10_000, workers = 2): Promise<number> {
  const { DataPlane } = await import("../interceptor/dataplane.ts");
  const { TEST_PROXY_CONFIG } = await import("../interceptor/proxy_testing.ts");
  const { buildRoutingTable } = await import("../shared/routing_table.ts");
  const { liveRouteOf } = await import("../interceptor/proxy_contract.ts");
  const table = buildRoutingTable(makeObjects(n));
  let slot = 1;
  const resolve = () => ({ status: 200, headers: [], hasContentType: false });
  const routes = [...table.entries.values()].map((e) =>
    liveRouteOf(e, slot++, `${e.key}:80`, undefined, { rank: "", resolve })
  );
  const dp = new DataPlane({
    workers,
    config: TEST_PROXY_CONFIG,
    listen: { hostname: "127.0.0.1", port: 0 },
    tls: null,
    counters: SharedCounters.create(),
    log: createLogger({ level: "error", sink: () => {} }),
    logLevel: "error",
    onActivity: () => {},
  });
  await dp.start();
  try {
    // Warm up once (JIT), then measure a second full table.
    await dp.applied(dp.setRoutes(routes));
    const t = process.hrtime.bigint();
    const v = dp.setRoutes(routes.map((r) => ({ ...r })));
    if (!(await dp.applied(v, 30_000))) throw new Error("workers did not apply the table");
    return hrMs(t);
  } finally {
    dp.stop();
  }
}

/**
 * The rebuild and lookup figures measured in `runs` fresh processes, each
 * with the interceptor's runtime flags: the first (cold) rebuild depends on
 * JIT warm-up, so only a new isolate measures it, and one sample on a shared
 * machine is noise. Returns every run; the caller reports medians.
 */
export async function runRoutingBenchFresh(
  runs: number,
  flags: string[],
): Promise<RoutingResult[]> {
  const results: RoutingResult[] = [];
  for (let i = 0; i < runs; i++) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", ...flags, import.meta.filename!, "--one"],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    if (!out.success) throw new Error(`routing benchmark run ${i + 1} failed (exit ${out.code})`);
    results.push(JSON.parse(new TextDecoder().decode(out.stdout)) as RoutingResult);
  }
  return results;
}

if (import.meta.main) {
  const out = (s: string) => Deno.stdout.writeSync(new TextEncoder().encode(s + "\n"));
  const r = runRoutingBench();
  if (!Deno.args.includes("--one")) r.workersAppliedMs = await measureWorkerApply();
  out(JSON.stringify(r, null, 2));
}
