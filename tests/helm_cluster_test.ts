/**
 * The Helm chart (k8s/chart/keda-add-ons-http) on a real cluster with the real
 * KEDA, as tests/e2e installs them: `helm install --create-namespace` (the
 * chart's own Namespace object adopted), a cold start through the interceptor
 * proxy Service, `helm upgrade` of the interceptor's log level while requests
 * run against the warm app (every one answered 200), and `helm uninstall`:
 * our objects go, the CRDs and the users' HTTPScaledObjects stay.
 *
 * The test cluster installs our CRDs itself (tests/cluster/crds.ts), so the
 * install adopts them with `--take-ownership`, as a user who first applied
 * k8s/crd with kubectl does.
 */
import assert from "node:assert/strict";
import { ensureBinaries } from "./cluster/binaries.ts";
import { startCluster } from "./cluster/mod.ts";
import { installKeda } from "./keda/mod.ts";
import { helmBinary } from "./tools/helm.ts";
import { imageNames } from "../build/image.ts";
import { isNotFound, type KubeObject } from "../shared/kube.ts";
import { ClusterAccess } from "./e2e/access.ts";
import { e2eLogger, waitNamespaceGone, withTimeout } from "./e2e/harness.ts";
import type { HttpTarget } from "./e2e/http_client.ts";
import { describeTally, emptyTally, failedAccepted, fixedRate, percentile } from "./e2e/load.ts";
import {
  CHART,
  coldStartThroughProxy,
  DEPLOYMENTS,
  HELM_RELEASE,
  helmImageValues,
  helmRunner,
  installSystem,
  PROXY_SERVICE,
  systemImages,
  type SystemInstall,
} from "./e2e/system.ts";

const NAMESPACE = "kedahttp-helm";
const CRDS = ["httpscaledobjects.http.keda.sh", "interceptorroutes.http.keda.sh"];
const CLUSTER_SCOPED_PREFIX = "keda-add-ons-http-";
const HOST = "helm.e2e.test";
const figures = e2eLogger("helm-figures");

interface Deployment extends KubeObject {
  spec?: {
    template?: {
      spec?: {
        containers?: Array<{ name: string; env?: Array<{ name: string; value?: string }> }>;
      };
    };
  };
}

function logLevelOf(d: Deployment): string | undefined {
  return d.spec?.template?.spec?.containers?.[0]?.env?.find((e) => e.name === "LOG_LEVEL")?.value;
}

Deno.test({
  name: "helm chart on a cluster: install, cold start, upgrade under load, uninstall keeps CRDs",
  // Informers and HTTP clients keep timers between calls.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const log = e2eLogger("helm-e2e");
    const t0 = Date.now();
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
    const helm = await helmBinary();
    const tCluster = Date.now();
    await using keda = await installKeda(cluster);
    const client = keda.client;
    const tKeda = Date.now();
    assert.ok(
      await waitNamespaceGone(client, NAMESPACE, 120_000),
      `namespace ${NAMESPACE} of an earlier run is still there`,
    );
    const crdUids = new Map<string, string>();
    for (const name of CRDS) {
      const crd = await client.get(
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`,
      );
      crdUids.set(name, crd.metadata?.uid ?? "");
    }

    // Without --create-namespace the chart's Namespace cannot help: Helm
    // stores the release (a Secret) in the namespace before any object.
    const home = await Deno.makeTempDir({ prefix: "khd-helm-" });
    try {
      const bare = helmRunner(helm, cluster.kubeconfigPath, NAMESPACE, home);
      const r = await bare([
        "install",
        HELM_RELEASE,
        CHART,
        ...helmImageValues(await imageNames(systemImages(local))),
        "--take-ownership",
      ]);
      assert.notEqual(r.code, 0, "helm install into a missing namespace succeeded");
      assert.match(r.err, new RegExp(`namespaces "${NAMESPACE}" not found`), r.err);
      assert.ok(await waitNamespaceGone(client, NAMESPACE, 1_000), "no namespace was made");

      // Client-side apply (Helm 3's way, Helm 4 with --server-side=false)
      // creates the chart's Namespace after --create-namespace made it: refused
      // with AlreadyExists.
      // (crds.install=false: adopting the existing CRDs would take Helm's update path.)
      const csaNs = `${NAMESPACE}-csa`;
      const csa = helmRunner(helm, cluster.kubeconfigPath, csaNs, home);
      const c = await csa([
        "install",
        HELM_RELEASE,
        CHART,
        ...helmImageValues(await imageNames(systemImages(local))),
        "--set",
        "crds.install=false",
        "--create-namespace",
        "--server-side=false",
      ]);
      // The other objects are created all the same, in a release marked failed.
      const csaStatus = await csa(["status", HELM_RELEASE, "-o", "json"]);
      await csa(["uninstall", HELM_RELEASE]);
      await client.delete(`/api/v1/namespaces/${csaNs}`).catch(() => {});
      assert.ok(await waitNamespaceGone(client, csaNs, 90_000), `namespace ${csaNs} still there`);
      figures.info("client-side apply with --create-namespace", {
        code: c.code,
        err: c.err.split("\n").filter((l) => !l.includes("symbolic link")).join(" ").trim(),
      });
      assert.notEqual(c.code, 0, "client-side apply of the chart's Namespace was accepted");
      assert.match(c.err, new RegExp(`namespaces "${csaNs}" already exists`), c.err);
      assert.equal(
        (JSON.parse(csaStatus.out || "{}") as { info?: { status?: string } }).info?.status,
        "failed",
        csaStatus.out + csaStatus.err,
      );
    } finally {
      await Deno.remove(home, { recursive: true });
    }

    const tChecks = Date.now();

    // 1. helm install --create-namespace, with the chart's own Namespace (createNamespace: true).
    await using system: SystemInstall = await installSystem(cluster, {
      namespace: NAMESPACE,
      kubectl,
      client,
      log,
      images: systemImages(local),
      helm: { binary: helm, args: ["--create-namespace", "--take-ownership"] },
    });
    const tSystem = Date.now();
    const ns = await client.get(`/api/v1/namespaces/${NAMESPACE}`);
    assert.equal(
      ns.metadata?.labels?.["app.kubernetes.io/managed-by"],
      "Helm",
      `the release namespace is the chart's Namespace, adopted by Helm: ${
        JSON.stringify(ns.metadata)
      }`,
    );
    assert.equal(ns.metadata?.annotations?.["meta.helm.sh/release-name"], system.release);
    const status = await system.helm!(["status", system.release!, "-o", "json"]);
    assert.equal(status.code, 0, status.err);
    assert.equal((JSON.parse(status.out) as { info: { status: string } }).info.status, "deployed");

    await using access = new ClusterAccess({
      client,
      direct: local,
      kubectl,
      kubeconfigPath: cluster.kubeconfigPath,
    });
    const proxy: HttpTarget = await access.proxy(NAMESPACE, PROXY_SERVICE, 8080);
    const appNs = await cluster.createNamespace("helm-app");
    let stripFinalizers = false;
    try {
      // 2. A cold start through the proxy Service.
      await withTimeout("cold start", 180_000, async (ctx) => {
        const ms = await coldStartThroughProxy({
          cluster,
          client,
          system,
          access,
          namespace: NAMESPACE,
          appNs,
          host: HOST,
          step: ctx.step,
        });
        figures.info("cold start through the chart's install", { ms });
      }, () => system.describe());

      // 3. helm upgrade (interceptor log level) while a bounded load runs on the warm app.
      await withTimeout("upgrade under load", 240_000, async (ctx) => {
        const path = `/apis/apps/v1/namespaces/${NAMESPACE}/deployments/${DEPLOYMENTS.interceptor}`;
        const before = await client.get<Deployment>(path);
        assert.equal(logLevelOf(before), undefined, "LOG_LEVEL unset at the default (info)");
        const load = new AbortController();
        ctx.signal.addEventListener("abort", () => load.abort());
        const tally = emptyTally();
        const running = fixedRate({
          targets: [proxy],
          request: { host: HOST, path: "/hello", timeoutMs: 30_000 },
          signal: load.signal,
          rps: 20,
          tally,
        });
        try {
          ctx.step("load running; helm upgrade --reuse-values logging.interceptor.level=warn");
          await new Promise((r) => setTimeout(r, 2_000));
          const tUpgrade = Date.now();
          const up = await system.helm!([
            "upgrade",
            system.release!,
            CHART,
            "--reuse-values",
            "--set",
            "logging.interceptor.level=warn",
          ]);
          assert.equal(up.code, 0, `helm upgrade failed:\n${up.err}`);
          ctx.step("the interceptor rolls out; load continues");
          const after = await cluster.waitFor(async () => {
            const d = await client.get<Deployment & { status?: Record<string, number> }>(path);
            const s = d.status ?? {};
            return (d.metadata?.generation ?? 0) > (before.metadata?.generation ?? 0) &&
              (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
              s.updatedReplicas === s.replicas && s.readyReplicas === s.replicas &&
              (s.replicas ?? 0) >= 1 && d;
          }, { what: "the interceptor's rollout", timeoutMs: 120_000, intervalMs: 250 });
          assert.equal(logLevelOf(after), "warn", "the pod template carries the new LOG_LEVEL");
          await system.waitSettled("interceptor", 1, 120_000);
          figures.info("helm upgrade rolled out", { ms: Date.now() - tUpgrade });
          // Requests after the old interceptor has gone, too.
          await new Promise((r) => setTimeout(r, 3_000));
        } finally {
          load.abort();
        }
        await running;
        figures.info("load during the upgrade", {
          tally: describeTally(tally),
          p50: percentile(tally.latenciesMs, 50),
          p99: percentile(tally.latenciesMs, 99),
        });
        assert.ok(tally.sent >= 60, `too few requests to say anything: ${describeTally(tally)}`);
        assert.equal(failedAccepted(tally), 0, describeTally(tally));
        assert.equal(tally.ok, tally.sent, `every request answered 200: ${describeTally(tally)}`);
        const revision = await system.helm!(["status", system.release!, "-o", "json"]);
        assert.equal((JSON.parse(revision.out) as { version: number }).version, 2);
      }, () => system.describe());

      // 4. helm uninstall: ours gone; the CRDs and the users' HTTPScaledObjects kept.
      await withTimeout("uninstall", 180_000, async (ctx) => {
        ctx.step("helm uninstall");
        const hsoPath = `/apis/http.keda.sh/v1alpha1/namespaces/${appNs}/httpscaledobjects/app`;
        const hsoUid = (await client.get(hsoPath)).metadata?.uid;
        stripFinalizers = true;
        const un = await system.helm!(["uninstall", system.release!]);
        assert.equal(un.code, 0, `helm uninstall failed:\n${un.err}`);
        figures.info("helm uninstall said", { out: un.out.trim(), err: un.err.trim() });
        for (const crd of CRDS) {
          assert.match(
            un.out + un.err,
            new RegExp(`kept due to the resource policy[^]*${crd.replaceAll(".", "\\.")}`),
            `Helm should say it kept ${crd}`,
          );
        }
        ctx.step("our namespace (Deployments, Services, Roles) goes");
        assert.ok(
          await waitNamespaceGone(client, NAMESPACE, 120_000),
          `namespace ${NAMESPACE} still there 120 s after helm uninstall`,
        );
        for (const kind of ["clusterroles", "clusterrolebindings"]) {
          const left = (await client.list(`/apis/rbac.authorization.k8s.io/v1/${kind}`)).items
            .map((o) => o.metadata?.name ?? "").filter((n) => n.startsWith(CLUSTER_SCOPED_PREFIX));
          assert.deepEqual(left, [], `${kind} left after helm uninstall`);
        }
        ctx.step("the CRDs and the HTTPScaledObject are still there");
        for (const name of CRDS) {
          const crd = await client.get(
            `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`,
          );
          assert.equal(crd.metadata?.uid, crdUids.get(name), `${name} is the same CRD`);
          assert.ok(!crd.metadata?.deletionTimestamp, `${name} is not being deleted`);
        }
        const hso = await client.get(hsoPath);
        assert.equal(hso.metadata?.uid, hsoUid, "the HTTPScaledObject is the same object");
        assert.ok(!hso.metadata?.deletionTimestamp, "the HTTPScaledObject is not being deleted");
        const list = await system.helm!(["list", "-o", "json"]);
        assert.deepEqual(JSON.parse(list.out), [], "no release left");
      }, () => system.describe());
      figures.info("helm cluster test done", {
        clusterMs: tCluster - t0,
        kedaMs: tKeda - tCluster,
        namespaceChecksMs: tChecks - tKeda,
        installMs: tSystem - tChecks,
        totalMs: Date.now() - t0,
      });
    } finally {
      // With the operator gone, nothing removes its finalizer from the
      // HTTPScaledObject: the user does, before deleting it.
      if (stripFinalizers) {
        await client.patch(
          `/apis/http.keda.sh/v1alpha1/namespaces/${appNs}/httpscaledobjects/app`,
          { metadata: { finalizers: null } },
          { contentType: "application/merge-patch+json" },
        ).catch((e) => {
          if (!isNotFound(e)) log.warn("removing the HTTPScaledObject's finalizer", { error: e });
        });
      }
      await client.delete(`/api/v1/namespaces/${appNs}`).catch(() => {});
      if (!(await waitNamespaceGone(client, appNs, 90_000))) {
        log.warn("app namespace still terminating after 90 s", { namespace: appNs });
      }
    }
  },
});
