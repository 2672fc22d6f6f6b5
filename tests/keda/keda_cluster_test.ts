/**
 * KEDA itself on the local cluster: installKeda, then a demo Deployment at 0
 * replicas with a ScaledObject whose `external-push` trigger points at a
 * SettableExternalScaler served by this test. KEDA must scale 0 → 1 when the
 * scaler turns active (StreamIsActive), the HPA must scale out through the
 * external metrics API (aggregation layer → KEDA's metrics API server →
 * KEDA's operator → GetMetrics), and KEDA must scale back to 0 after
 * cooldownPeriod. Every step's duration is logged (component keda-test).
 *
 * Against an existing cluster (KEDAHTTP_USE_EXISTING_CLUSTER=true), pods must
 * reach this test's gRPC server: set KEDAHTTP_TEST_HOST_ADDRESS to an address
 * of this machine they can reach (for kind: the docker network's gateway,
 * e.g. 172.18.0.1); without it the test is ignored.
 */

import assert from "node:assert/strict";
import { startCluster } from "../cluster/mod.ts";
import { DEMO_APP_IMAGE } from "../cluster/images.ts";
import { BRIDGE_IP } from "../cluster/paths.ts";
import type { KubeClient } from "../../shared/kube.ts";
import { createLogger } from "../../shared/log.ts";
import { installKeda, KEDA_VERSION } from "./mod.ts";
import { SettableExternalScaler } from "./settable_scaler.ts";

const existing = Deno.env.get("KEDAHTTP_USE_EXISTING_CLUSTER") === "true";
const hostAddress = existing ? Deno.env.get("KEDAHTTP_TEST_HOST_ADDRESS") : BRIDGE_IP;
const demoImage = Deno.env.get("KEDAHTTP_TEST_DEMO_IMAGE") ?? DEMO_APP_IMAGE;
const figures = createLogger({ level: "info", fields: { component: "keda-test" } });

interface DeploymentState {
  spec?: { replicas?: number };
  status?: { readyReplicas?: number; replicas?: number };
}

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

function demoManifests(namespace: string, scalerAddress: string): unknown[] {
  const labels = { app: "demo" };
  return [
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "demo", namespace, labels },
      spec: {
        replicas: 0,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            terminationGracePeriodSeconds: 5,
            containers: [{
              name: "demo",
              image: demoImage,
              ports: [{ containerPort: 8080, name: "http" }],
              env: [
                { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                {
                  name: "POD_NAMESPACE",
                  valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } },
                },
              ],
              readinessProbe: {
                httpGet: { path: "/healthz", port: 8080 },
                periodSeconds: 1,
                failureThreshold: 1,
              },
            }],
          },
        },
      },
    },
    {
      apiVersion: "keda.sh/v1alpha1",
      kind: "ScaledObject",
      metadata: { name: "demo", namespace },
      spec: {
        scaleTargetRef: { name: "demo" },
        minReplicaCount: 0,
        maxReplicaCount: 4,
        pollingInterval: 1,
        cooldownPeriod: 5,
        advanced: {
          horizontalPodAutoscalerConfig: {
            behavior: {
              scaleUp: { stabilizationWindowSeconds: 0 },
              scaleDown: { stabilizationWindowSeconds: 0 },
            },
          },
        },
        triggers: [{ type: "external-push", metadata: { scalerAddress } }],
      },
    },
  ];
}

async function applyAll(client: KubeClient, objects: unknown[]): Promise<void> {
  for (
    const o of objects as Array<{ kind: string; metadata: { name: string; namespace: string } }>
  ) {
    const path = o.kind === "Deployment"
      ? `/apis/apps/v1/namespaces/${o.metadata.namespace}/deployments/${o.metadata.name}`
      : `/apis/keda.sh/v1alpha1/namespaces/${o.metadata.namespace}/scaledobjects/${o.metadata.name}`;
    await client.patch(path, o, {
      contentType: "application/apply-patch+yaml",
      query: { fieldManager: "keda-test", force: true },
    });
  }
}

Deno.test({
  name:
    "KEDA scales a Deployment 0 → 1 → N → 0 from an external-push scaler, HPA via external metrics",
  ignore: existing && !hostAddress,
  // @grpc/grpc-js keeps internal timers between calls.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using cluster = await startCluster();
    assert.ok(cluster.node, "this test needs a cluster that runs pods (startCluster with a node)");
    // Declared before KEDA so that KEDA (when uninstalled) finalizes the
    // ScaledObject while the scaler still answers.
    await using scaler = new SettableExternalScaler({ metricName: "demo-load", target: 1 });
    const scalerAddress = await scaler.listen({ hostname: hostAddress! });
    // The existing-cluster opt-in only checks, and says what is missing.
    await assert.rejects(
      installKeda(cluster, { existing: true, namespace: "no-keda-here" }),
      /KEDA must already be installed[\s\S]*Deployment no-keda-here\/keda-operator does not exist/,
    );
    const tInstall = Date.now();
    await using keda = await installKeda(cluster);
    // Once KEDA is there, the check passes and leaves KEDA alone on dispose.
    {
      await using found = await installKeda(cluster, { existing: true });
      assert.equal(found.managed, false);
      assert.equal(found.namespace, keda.namespace);
      if (!existing) assert.equal(found.version, KEDA_VERSION.replace(/^v/, ""));
    }
    figures.info("KEDA ready", {
      ms: Date.now() - tInstall,
      timings: keda.timings,
      managed: keda.managed,
    });
    const client = keda.client;
    const failure = async (what: string) => `${what}\n--- KEDA ---\n${await keda.describe()}`;

    const ns = await cluster.createNamespace("keda-test");
    const deploymentPath = `/apis/apps/v1/namespaces/${ns}/deployments/demo`;
    const soPath = `/apis/keda.sh/v1alpha1/namespaces/${ns}/scaledobjects/demo`;
    const deployment = () => client.get<DeploymentState>(deploymentPath);
    const waitReplicas = async (
      what: string,
      ok: (d: DeploymentState) => boolean,
      timeoutMs: number,
    ) => {
      try {
        return await cluster.waitFor(async () => ok(await deployment()) && Date.now(), {
          what,
          timeoutMs,
          intervalMs: 100,
        });
      } catch (e) {
        const d = await deployment().catch(() => undefined);
        throw new Error(
          await failure(
            `${(e as Error).message}; Deployment spec.replicas=${d?.spec?.replicas} ` +
              `ready=${d?.status?.readyReplicas ?? 0}`,
          ),
        );
      }
    };

    const tApply = Date.now();
    await applyAll(client, demoManifests(ns, scalerAddress));

    // KEDA reconciles: asks GetMetricSpec, creates the HPA, opens the stream.
    try {
      await cluster.waitFor(async () => {
        const so = await client.get<{ status?: { conditions?: Condition[] } }>(soPath);
        return so.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
      }, { what: "ScaledObject demo Ready=True", timeoutMs: 60_000 });
      await cluster.waitFor(() => scaler.openStreams > 0, {
        what: "KEDA to open StreamIsActive on the test scaler",
        timeoutMs: 60_000,
      });
    } catch (e) {
      const so = await client.get(soPath).catch(() => undefined);
      throw new Error(
        await failure(`${(e as Error).message}; ScaledObject: ${JSON.stringify(so)}`),
      );
    }
    const tReconciled = Date.now();
    const hpa = await client.get<{
      spec: {
        minReplicas?: number;
        maxReplicas: number;
        metrics: Array<{ external?: { metric: { name: string } } }>;
      };
    }>(`/apis/autoscaling/v2/namespaces/${ns}/horizontalpodautoscalers/keda-hpa-demo`);
    assert.equal(hpa.spec.maxReplicas, 4);
    assert.equal(hpa.spec.metrics[0]?.external?.metric.name, "s0-demo-load");
    assert.ok(scaler.calls.some((c) => c.method === "GetMetricSpec" && c.ref.name === "demo"));
    assert.equal((await deployment()).spec?.replicas ?? 0, 0, "inactive: stays at 0");
    figures.info("ScaledObject reconciled", { ms: tReconciled - tApply });

    // 0 → 1: the stream says true.
    const tActive = Date.now();
    scaler.set(1);
    const tScaled = await waitReplicas(
      "KEDA to scale demo 0 → 1",
      (d) => (d.spec?.replicas ?? 0) >= 1,
      60_000,
    );
    const tReady = await waitReplicas(
      "a ready demo pod",
      (d) => (d.status?.readyReplicas ?? 0) >= 1,
      90_000,
    );
    figures.info("scale 0 → 1", {
      toReplicasMs: tScaled - tActive,
      toReadyPodMs: tReady - tActive,
    });

    // The HPA's path: apiserver aggregation → KEDA's metrics API server → operator → GetMetrics.
    const metric = await cluster.waitFor(async () => {
      const list = await client.get<{ items: Array<{ metricName: string; value: string }> }>(
        `/apis/external.metrics.k8s.io/v1beta1/namespaces/${ns}/s0-demo-load`,
        { query: { labelSelector: "scaledobject.keda.sh/name=demo" } },
      );
      return list.items[0];
    }, {
      what: "the external metric s0-demo-load through the aggregation layer",
      timeoutMs: 30_000,
    })
      .catch(async (e) => {
        throw new Error(await failure((e as Error).message));
      });
    assert.equal(metric.metricName, "s0-demo-load");
    assert.equal(Number(metric.value), 1);

    // 1 → 3: average value 1 per replica, metric 3.
    const tOut = Date.now();
    scaler.set(3);
    const tOutDone = await waitReplicas(
      "the HPA to scale demo to 3",
      (d) => d.spec?.replicas === 3,
      90_000,
    );
    const hpaStatus = await client.get<{
      status?: { currentMetrics?: Array<{ external?: { current?: { averageValue?: string } } }> };
    }>(`/apis/autoscaling/v2/namespaces/${ns}/horizontalpodautoscalers/keda-hpa-demo`);
    assert.ok(hpaStatus.status?.currentMetrics?.[0]?.external, "the HPA read the external metric");
    figures.info("scale 1 → 3 (HPA)", { ms: tOutDone - tOut });

    // → 0 after cooldownPeriod (5 s) with the scaler inactive.
    const tIdle = Date.now();
    scaler.set(0);
    const tZero = await waitReplicas(
      "KEDA to scale demo back to 0",
      (d) => (d.spec?.replicas ?? 0) === 0,
      90_000,
    );
    // cooldownPeriod counts from the last time KEDA saw the trigger active;
    // KEDA stores that time with 1 s resolution (status.lastActiveTime).
    const lastActive = scaler.calls.filter((c) => c.method === "IsActive" && c.answered === true)
      .at(-1)?.at ?? tIdle;
    assert.ok(
      tZero - lastActive >= 5_000 - 1_000,
      `scaled to 0 ${tZero - lastActive} ms after KEDA last saw the trigger active: ` +
        `before cooldownPeriod (5 s)`,
    );
    await waitReplicas("demo pods gone", (d) => (d.status?.replicas ?? 0) === 0, 60_000);
    figures.info("scale 3 → 0", {
      ms: tZero - tIdle,
      afterLastActiveMs: tZero - lastActive,
      cooldownMs: 5_000,
    });

    // And again from zero: the loop works more than once.
    const tAgain = Date.now();
    scaler.set(1);
    const tAgainDone = await waitReplicas(
      "KEDA to scale demo 0 → 1 again",
      (d) => (d.spec?.replicas ?? 0) >= 1,
      60_000,
    );
    figures.info("scale 0 → 1 again", { ms: tAgainDone - tAgain });
    scaler.set(0);

    if (!keda.managed) {
      // KEDA belongs to the cluster's owner: only remove our ScaledObject.
      await client.delete(soPath);
      await cluster.waitFor(() => client.get(soPath).then(() => false, () => true), {
        what: "KEDA to finalize the ScaledObject",
        timeoutMs: 60_000,
      });
      return;
    }
    // Uninstall (what a shared cluster gets on dispose): KEDA finalizes the
    // ScaledObject first, then every KEDA object is gone.
    const tUninstall = Date.now();
    await keda.uninstall();
    for (
      const path of [
        soPath,
        "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.external.metrics.k8s.io",
        `/api/v1/namespaces/${keda.namespace}`,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/keda-operator",
      ]
    ) {
      await assert.rejects(client.get(path), (e: { status?: number }) => e.status === 404, path);
    }
    figures.info("KEDA uninstalled", { ms: Date.now() - tUninstall });
  },
});
