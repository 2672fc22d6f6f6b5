/**
 * The dashboard in a real headless browser (Debian's chromium driven by
 * playwright-core, no browser download) against the scaler's real parts and
 * HTTP server, fed by real interceptor admin servers (interceptor/admin.ts)
 * on loopback whose counters (SharedCounters) and cold-start log
 * (ColdStartLog) the test moves as the data plane and the EndpointSlice
 * watch would. The cluster test (tests/dashboard_cluster_test.ts) sends
 * real traffic through a real interceptor.
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { createLogger } from "../shared/log.ts";
import type { QueueCounts } from "../shared/queue_counts.ts";
import { adminHandler } from "../interceptor/admin.ts";
import { ColdStartLog } from "../interceptor/control.ts";
import { SharedCounters } from "../interceptor/counters.ts";
import { buildRoutingTable } from "../shared/routing_table.ts";
import { DEFAULT_MAX_DASHBOARD_CLIENTS } from "./dashboard.ts";
import {
  httpsoObject,
  interceptorRouteObject,
  startTestScaler,
  waitFor,
} from "./testing/harness.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = new URL("../tests/artifacts/", import.meta.url);

/** An interceptor's admin server with the state the data plane and the watches would give it. */
class AdminStandIn implements AsyncDisposable {
  readonly counters = SharedCounters.create({ routeCapacity: 16, podCapacity: 16 });
  readonly coldStarts = new ColdStartLog();
  readonly slots = new Map<string, number>();
  readonly pods = new Map<string, { readyPods: number; pods: number }>();
  readonly #watchers = new Set<(c: QueueCounts) => void>();
  readonly #stop = new AbortController();
  readonly #server: Deno.HttpServer<Deno.NetAddr>;

  constructor(routes: string[]) {
    routes.forEach((r, i) => {
      this.slots.set(r, i + 1);
      this.pods.set(r, { readyPods: 0, pods: 0 });
    });
    const table = buildRoutingTable([]);
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {}, signal: this.#stop.signal },
      adminHandler({
        queueCounts: () => this.queueCounts(),
        watchQueue: (send) => {
          this.#watchers.add(send);
          return () => this.#watchers.delete(send);
        },
        routingTable: () => table,
        routingPing: () => Promise.resolve(table),
        deployments: () => ({}),
        routeStatus: () => {
          const routes: Record<string, { held: number; readyPods: number; pods: number }> = {};
          for (const [key, slot] of this.slots) {
            routes[key] = { held: this.counters.held(slot), ...this.pods.get(key)! };
          }
          this.coldStarts.sampleHeld((r) => this.counters.held(this.slots.get(r)!));
          return { routes, coldStarts: this.coldStarts.list() };
        },
        ready: () => true,
        draining: () => false,
        metrics: () => Promise.resolve(""),
        log: createLogger({ sink: () => {} }),
        signal: this.#stop.signal,
        heartbeatMs: 200,
      }),
    );
  }

  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}`;
  }

  queueCounts(): QueueCounts {
    const out: QueueCounts = {};
    for (const [key, slot] of this.slots) {
      out[key] = {
        Concurrency: this.counters.concurrency(slot),
        RequestCount: this.counters.requests32(slot),
      };
    }
    return out;
  }

  /** As the data plane: a request arrives and, with no ready pod, is held. */
  holdOne(route: string): void {
    const slot = this.slots.get(route)!;
    const first = this.counters.begin(slot);
    assert.ok(this.counters.holdBegin(slot, 100));
    if (first) this.coldStarts.begin(route, `${route}:8080`, Date.now(), false);
    this.#notify(route);
  }

  /** As the data plane: a request is forwarded to a ready pod and ends. */
  serveOne(route: string): void {
    const slot = this.slots.get(route)!;
    this.counters.begin(slot);
    this.counters.end(slot);
    this.#notify(route);
  }

  /** As the EndpointSlice watch: a pod appears, then becomes ready and the held request goes. */
  podAppears(route: string): void {
    this.pods.set(route, { readyPods: 0, pods: 1 });
    this.coldStarts.observe(
      `${route}:8080`,
      { pods: 1, ready: 0, early: false },
      Date.now(),
      () => 1,
    );
  }

  podReady(route: string): void {
    const slot = this.slots.get(route)!;
    this.pods.set(route, { readyPods: 1, pods: 1 });
    this.coldStarts.observe(
      `${route}:8080`,
      { pods: 1, ready: 1, early: false },
      Date.now(),
      () => this.counters.held(slot),
    );
    this.counters.holdEnd(slot);
    this.counters.end(slot);
    this.#notify(route);
  }

  #notify(route: string): void {
    const c = this.queueCounts();
    for (const w of this.#watchers) w({ [route]: c[route]! });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#stop.abort();
    await this.#server.finished;
  }
}

Deno.test({
  name: "dashboard: held count at zero replicas shows 1, then the cold start with its duration",
  // The browser keeps timers and sockets of its own; it is closed before the test ends.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using a = new AdminStandIn(["apps/shop", "apps/web"]);
    await using b = new AdminStandIn(["apps/shop", "apps/web"]);
    await using scaler = await startTestScaler({
      routes: [
        interceptorRouteObject("apps", "shop", {
          rules: [{ hosts: ["shop.example.com"] }, {
            hosts: ["example.com"],
            paths: [{ value: "/<b>shop</b>" }],
          }],
        }),
      ],
      httpsos: [httpsoObject("apps", "web", { replicas: { min: 1, max: 5 } })],
    });
    scaler.parts.fleet.setPods([
      { id: "uid-a", name: "interceptor-a", url: a.url, ready: true },
      { id: "uid-b", name: "interceptor-b", url: b.url, ready: true },
    ]);
    await scaler.parts.fleet.pingAll();
    const feed = new AbortController();
    const feeding = scaler.parts.dashboard.run(feed.signal);
    a.pods.set("apps/web", { readyPods: 2, pods: 2 });
    b.pods.set("apps/web", { readyPods: 2, pods: 2 });
    for (let i = 0; i < 7; i++) (i % 2 ? a : b).serveOne("apps/web");

    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    try {
      const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
      const external: string[] = [];
      page.on("request", (r) => {
        if (!r.url().startsWith(scaler.httpUrl)) external.push(r.url());
      });
      await page.goto(`${scaler.httpUrl}/dashboard`);
      const shop = page.locator(`tr.route[data-route="apps/shop"]`);
      await shop.waitFor({ timeout: 15_000 });
      assert.equal(await page.locator("#conn").textContent(), "live");
      assert.equal(await shop.locator("td.held").textContent(), "0");
      // A path written by a user is text, never markup.
      assert.match(await shop.textContent() ?? "", /\/<b>shop<\/b>/);
      assert.equal(await shop.locator("b").count(), 0);

      // Traffic to the route at zero replicas: held on one interceptor.
      a.holdOne("apps/shop");
      await page.locator(`tr.route[data-route="apps/shop"] td.held`).filter({ hasText: /^1$/ })
        .waitFor({ timeout: 15_000 });
      assert.equal(await shop.locator("td.inflight").textContent(), "1");
      assert.equal(await shop.locator("td.replicas").textContent(), "0 / 0");
      const waiting = page.locator(`tr.cold-start.waiting[data-route="apps/shop"]`);
      await waiting.waitFor({ timeout: 15_000 });

      a.podAppears("apps/shop");
      await new Promise((r) => setTimeout(r, 300));
      a.podReady("apps/shop");
      const done = page.locator(`tr.cold-start.ready[data-route="apps/shop"]`);
      await done.waitFor({ timeout: 15_000 });
      assert.match(await done.locator("td.duration").textContent() ?? "", /^\d+(\.\d+)? (ms|s)$/);
      assert.match(
        await done.locator(".phases").textContent() ?? "",
        /^waiting for a pod \d+ ms, pod starting \d+ ms$/,
      );
      await shop.locator("td.held").filter({ hasText: /^0$/ }).waitFor({ timeout: 15_000 });
      assert.equal(
        await page.locator(`tr[data-pod="interceptor-b"] td`).nth(5).textContent(),
        "ok",
      );
      // web: nothing in flight, so the HTTPScaledObject's min replicas.
      const web = page.locator(`tr.route[data-route="apps/web"]`);
      assert.equal(await web.locator("td.replicas").textContent(), "2 / 2");
      assert.equal(await web.locator("td.desired").textContent(), "1");
      assert.deepEqual(external, [], "the page loaded nothing from elsewhere");

      await Deno.mkdir(ARTIFACTS, { recursive: true });
      const shot = await page.screenshot({ fullPage: false });
      await Deno.writeFile(new URL("dashboard_inprocess.png", ARTIFACTS), shot);
      if (Deno.env.get("KEDAHTTP_UPDATE_DOCS_SCREENSHOT") === "true") {
        await Deno.writeFile(new URL("./dashboard.png", import.meta.url), shot);
      }
    } finally {
      await browser.close();
      feed.abort();
      await feeding;
    }
  },
});

Deno.test("dashboard: event streams are bounded, and end when the scaler shuts down", async () => {
  await using scaler = await startTestScaler({ routes: [interceptorRouteObject("apps", "shop")] });
  const feed = new AbortController();
  const feeding = scaler.parts.dashboard.run(feed.signal);
  const streams: Response[] = [];
  try {
    // A client that hangs up is forgotten.
    const gone = await fetch(`${scaler.httpUrl}/dashboard/events`);
    await waitFor("the stream counted", () => scaler.parts.dashboard.clients === 1 || undefined);
    await gone.body!.cancel();
    await waitFor("the stream forgotten", () => scaler.parts.dashboard.clients === 0 || undefined);
    for (let i = 0; i < DEFAULT_MAX_DASHBOARD_CLIENTS; i++) {
      const res = await fetch(`${scaler.httpUrl}/dashboard/events`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
      streams.push(res);
    }
    await waitFor(
      "every stream counted",
      () => scaler.parts.dashboard.clients === DEFAULT_MAX_DASHBOARD_CLIENTS ? true : undefined,
    );
    const refused = await fetch(`${scaler.httpUrl}/dashboard/events`);
    assert.equal(refused.status, 503);
    assert.match(
      await refused.text(),
      /too many dashboard streams open \(32\): close a dashboard tab/,
    );

    // The first event is a whole snapshot.
    const reader = streams[0]!.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n\n", text.indexOf("event: snapshot"))) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const data = /event: snapshot\ndata: (.*)\n/.exec(text)?.[1];
    assert.ok(data, text);
    assert.deepEqual(JSON.parse(data).routes.map((r: { key: string }) => r.key), ["apps/shop"]);

    feed.abort();
    await feeding;
    // Every stream ends (no hang) once the feed stops.
    while (!(await reader.read()).done) { /* the rest of the stream */ }
    for (const s of streams.slice(1)) await s.body!.cancel();
    assert.equal(scaler.parts.dashboard.clients, 0);
  } finally {
    feed.abort();
    await feeding;
  }
});

Deno.test("dashboard: the page is one self-contained document", async () => {
  await using scaler = await startTestScaler();
  const res = await fetch(`${scaler.httpUrl}/dashboard`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(res.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  const html = await res.text();
  assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+href=|https?:\/\//);
  assert.doesNotMatch(html, /innerHTML/);
  // ASCII only, like the rest of the sources.
  assert.ok([...html].every((ch) => ch.charCodeAt(0) < 128));
});
