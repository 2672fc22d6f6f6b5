/**
 * The dashboard on the local cluster with the real KEDA, in a real headless
 * browser (Debian's chromium driven by playwright-core; no browser
 * download): the system installed from k8s/, the demo app at zero replicas
 * (ready 3 s after its pod starts),
 * the page opened from the scaler's HTTP Service (port 9091), one request
 * sent through the interceptor's proxy Service. Asserted, in order: the
 * route's held count shows 1 while the app is at zero, then the cold start
 * row appears as ready with a duration and where the time went; the held
 * count is back at 0; the page loaded nothing from elsewhere. A screenshot
 * is saved to tests/artifacts/dashboard.png.
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { ensureBinaries } from "./cluster/binaries.ts";
import { startCluster } from "./cluster/mod.ts";
import { installKeda } from "./keda/mod.ts";
import { ClusterAccess } from "./e2e/access.ts";
import { e2eLogger, waitNamespaceGone, withTimeout } from "./e2e/harness.ts";
import { httpGet } from "./e2e/http_client.ts";
import {
  deployAppAtZero,
  installSystem,
  PROXY_SERVICE,
  SCALER_SERVICE,
  systemImages,
  type SystemInstall,
} from "./e2e/system.ts";

const NAMESPACE = "kedahttp-dashboard";
const HOST = "dashboard.e2e.test";
const CHROMIUM = Deno.env.get("KEDAHTTP_CHROMIUM") ?? "/usr/bin/chromium";
const ARTIFACTS = new URL("./artifacts/", import.meta.url);

Deno.test({
  name: "dashboard on a cluster: held count at zero replicas shows 1, then the cold start",
  // Informers, HTTP clients and the browser keep timers between calls.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const log = e2eLogger("dashboard-e2e");
    await using cluster = await startCluster();
    if (!cluster.node) {
      throw new Error(
        "this test needs a cluster that runs pods: run as root (the local node agent) or attach " +
          "to one with KEDAHTTP_USE_EXISTING_CLUSTER=true",
      );
    }
    const local = cluster.stateDir !== undefined;
    const kubectl = local
      ? (await ensureBinaries(["kubectl"])).kubectl!
      : Deno.env.get("KUBECTL") ?? "kubectl";
    await using keda = await installKeda(cluster);
    const client = keda.client;
    assert.ok(
      await waitNamespaceGone(client, NAMESPACE, 120_000),
      `namespace ${NAMESPACE} of an earlier run is still there`,
    );
    await using system: SystemInstall = await installSystem(cluster, {
      namespace: NAMESPACE,
      kubectl,
      client,
      log,
      images: systemImages(local),
    });
    await using access = new ClusterAccess({
      client,
      direct: local,
      kubectl,
      kubeconfigPath: cluster.kubeconfigPath,
    });
    const proxy = await access.proxy(NAMESPACE, PROXY_SERVICE, 8080);
    const scalerHttp = await access.service(NAMESPACE, SCALER_SERVICE, 9091);
    const dashboardUrl = `http://${scalerHttp.hostname}:${scalerHttp.port}/dashboard`;
    const appNs = await cluster.createNamespace("dashboard-app");
    const route = `${appNs}/app`;
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    try {
      await withTimeout("dashboard shows a cold start", 240_000, async (ctx) => {
        ctx.step("deploy the app at zero; wait for its route and its ScaledObject");
        await deployAppAtZero({
          cluster,
          client,
          system,
          access,
          namespace: NAMESPACE,
          appNs,
          host: HOST,
        });
        // A pod that reports ready a while after it starts: the hold lasts
        // long enough to be seen on every run (the demo app is ready at once otherwise).
        await client.patch(
          `/apis/apps/v1/namespaces/${appNs}/deployments/app`,
          {
            spec: {
              template: {
                spec: {
                  containers: [{ name: "app", env: [{ name: "READY_DELAY_MS", value: "3000" }] }],
                },
              },
            },
          },
          { contentType: "application/strategic-merge-patch+json" },
        );

        ctx.step("open the dashboard");
        const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
        const origin = new URL(dashboardUrl).origin;
        const external: string[] = [];
        page.on("request", (r) => {
          if (!r.url().startsWith(origin)) external.push(r.url());
        });
        await page.goto(dashboardUrl);
        const row = page.locator(`tr.route[data-route="${route}"]`);
        await row.waitFor({ timeout: 60_000 });
        assert.equal(await row.locator("td.held").textContent(), "0");
        assert.equal(await page.locator("#conn").textContent(), "live");

        ctx.step("send a request to the app at zero replicas");
        const sent = httpGet(proxy, { host: HOST, path: "/dashboard", timeoutMs: 120_000 });
        // Caught at once so a failure while the page is watched is not unhandled.
        const answered = sent.then((r) => r, (e: Error) => e);

        ctx.step("wait for the held count to show 1");
        await row.locator("td.held").filter({ hasText: /^1$/ }).waitFor({ timeout: 60_000 });
        await page.locator(`tr.cold-start.waiting[data-route="${route}"]`).waitFor({
          timeout: 60_000,
        });

        ctx.step("wait for the cold start to finish with its duration");
        const done = page.locator(`tr.cold-start.ready[data-route="${route}"]`);
        await done.waitFor({ timeout: 60_000 });
        const duration = await done.locator("td.duration").textContent() ?? "";
        assert.match(duration, /^\d+(\.\d+)? (ms|s)$|^\d+ min \d+ s$/);
        assert.match(
          await done.locator(".phases").textContent() ?? "",
          /^waiting for a pod \S+ m?s, pod starting \S+ m?s$/,
        );

        const r = await answered;
        if (r instanceof Error) throw r;
        assert.equal(r.status, 200, `the held request: ${r.status} ${r.body.slice(0, 300)}`);
        assert.equal(r.headers.get("x-keda-http-cold-start"), "true");
        await row.locator("td.held").filter({ hasText: /^0$/ }).waitFor({ timeout: 60_000 });
        await row.locator("td.replicas").filter({ hasText: /^[1-9]\d* \/ / }).waitFor({
          timeout: 60_000,
        });
        assert.deepEqual(external, [], "the page loaded nothing from elsewhere");

        await Deno.mkdir(ARTIFACTS, { recursive: true });
        const path = new URL("dashboard.png", ARTIFACTS);
        await Deno.writeFile(path, await page.screenshot());
        log.info("dashboard screenshot saved", { path: path.pathname, coldStart: duration });
      }, () => system.describe());
    } finally {
      await browser.close();
      await client.delete(`/api/v1/namespaces/${appNs}`).catch(() => {});
      if (!(await waitNamespaceGone(client, appNs, 90_000))) {
        log.warn("app namespace still terminating after 90 s", { namespace: appNs });
      }
    }
  },
});
