/**
 * The install path users take: k8s/ rendered by kustomize, validated by the
 * API server, applied with kubectl, and run by the node agent, which maps our
 * images to the matching `deno run` commands. Proves every pod becomes Ready,
 * each ServiceAccount's RBAC is enough and no more, and a request through the
 * interceptor Service reaches a demo app at 1 replica.
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { startCluster } from "./cluster/mod.ts";
import { demoAppManifests } from "./fixtures/demo_manifests.ts";
import { ensureBinaries } from "./cluster/binaries.ts";
import { writeOverlay } from "../build/deploy.ts";
import { repoPath } from "../build/programs.ts";

const NS = "kedahttp-deploy-test";
const IMAGES = {
  KEDAHTTP_INTERCEPTOR_IMAGE: "registry.local/keda-http-deno/interceptor:test",
  KEDAHTTP_SCALER_IMAGE: "registry.local/keda-http-deno/scaler:test",
  KEDAHTTP_OPERATOR_IMAGE: "registry.local/keda-http-deno/operator:test",
};

async function kubectl(
  bin: string,
  kubeconfig: string,
  args: string[],
  stdin?: string,
): Promise<{ code: number; out: string; err: string }> {
  const child = new Deno.Command(bin, {
    args: ["--kubeconfig", kubeconfig, ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const o = await child.output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
}

Deno.test({
  name:
    "deploy: k8s/ renders, passes server-side dry run, installs and serves through the interceptor",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using cluster = await startCluster();
    const kubectlBin = (await ensureBinaries(["kubectl"])).kubectl!;
    const kc = cluster.kubeconfigPath;
    const k = (args: string[], stdin?: string) => kubectl(kubectlBin, kc, args, stdin);

    const overlay = await writeOverlay({ ...IMAGES, KEDAHTTP_NAMESPACE: NS });
    let rendered = "";

    await t.step("kubectl kustomize renders k8s/ and the overlay", async () => {
      const base = await k(["kustomize", repoPath("k8s")]);
      assert.equal(base.code, 0, base.err);
      const r = await k(["kustomize", overlay]);
      assert.equal(r.code, 0, r.err);
      rendered = r.out;
      const docs = parseAllDocuments(rendered).map((d) =>
        d.toJS() as {
          kind: string;
          metadata: { name: string; namespace?: string };
          spec?: Record<string, unknown>;
        }
      );
      const kinds = new Set(docs.map((d) => d.kind));
      for (
        const kind of [
          "Namespace",
          "CustomResourceDefinition",
          "ServiceAccount",
          "ClusterRole",
          "Deployment",
          "Service",
          "ScaledObject",
        ]
      ) {
        assert.ok(kinds.has(kind), `rendered manifests lack a ${kind}`);
      }
      const deployments = docs.filter((d) => d.kind === "Deployment");
      for (const d of deployments) {
        assert.equal(d.metadata.namespace, NS, `${d.metadata.name} namespace`);
      }
      const so = docs.find((d) => d.kind === "ScaledObject")!;
      assert.match(
        JSON.stringify(so.spec),
        new RegExp(`keda-add-ons-http-external-scaler\\.${NS}:9090`),
      );
      assert.match(rendered, /image: registry\.local\/keda-http-deno\/interceptor:test/);
    });

    await t.step("rendered objects pass server-side dry run", async () => {
      // A dry run creates nothing, so the namespace the rest lives in must exist first.
      const ns = await k(["create", "namespace", NS]);
      assert.equal(ns.code, 0, ns.err);
      const r = await k([
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        "-",
      ], rendered);
      assert.equal(r.code, 0, `server-side dry run failed:\n${r.err}`);
    });

    try {
      await t.step("apply: every pod becomes Ready", async () => {
        const r = await k(["apply", "--server-side", "--force-conflicts", "-k", overlay]);
        assert.equal(r.code, 0, r.err);
        await cluster.waitFor(async () => {
          const pods = await cluster.client.list(`/api/v1/namespaces/${NS}/pods`) as {
            items: Array<
              {
                metadata: { name: string };
                status?: { conditions?: Array<{ type: string; status: string }> };
              }
            >;
          };
          const ready = pods.items.filter((p) =>
            p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")
          );
          // operator ×2, scaler ×1, interceptor ×1
          return pods.items.length === 4 && ready.length === 4;
        }, { what: `4 ready pods in ${NS}`, timeoutMs: 120_000, intervalMs: 500 });
      });

      await t.step("RBAC: enough and no more, per ServiceAccount", async () => {
        const sa = (name: string) => `system:serviceaccount:${NS}:${name}`;
        const cases: Array<[string, string, string, string | undefined, boolean]> = [
          // [serviceaccount, verb, resource, namespace, allowed]
          [
            "keda-add-ons-http-operator",
            "watch",
            "httpscaledobjects.http.keda.sh",
            undefined,
            true,
          ],
          [
            "keda-add-ons-http-operator",
            "patch",
            "httpscaledobjects.http.keda.sh/status",
            "default",
            true,
          ],
          ["keda-add-ons-http-operator", "create", "scaledobjects.keda.sh", "default", true],
          [
            "keda-add-ons-http-operator",
            "update",
            "leases.coordination.k8s.io/http-add-on.keda.sh",
            NS,
            true,
          ],
          [
            "keda-add-ons-http-operator",
            "update",
            "leases.coordination.k8s.io/someone-elses",
            NS,
            false,
          ],
          [
            "keda-add-ons-http-operator",
            "update",
            "leases.coordination.k8s.io/http-add-on.keda.sh",
            "default",
            false,
          ],
          ["keda-add-ons-http-operator", "get", "secrets", "default", false],
          ["keda-add-ons-http-operator", "delete", "deployments.apps", "default", false],
          [
            "keda-add-ons-http-interceptor",
            "watch",
            "httpscaledobjects.http.keda.sh",
            undefined,
            true,
          ],
          [
            "keda-add-ons-http-interceptor",
            "watch",
            "endpointslices.discovery.k8s.io",
            undefined,
            true,
          ],
          [
            "keda-add-ons-http-interceptor",
            "patch",
            "httpscaledobjects.http.keda.sh",
            "default",
            false,
          ],
          ["keda-add-ons-http-interceptor", "get", "secrets", "default", false],
          ["keda-add-ons-http-interceptor", "get", "pods", "default", true],
          ["keda-add-ons-http-interceptor", "list", "pods", "default", false],
          [
            "keda-add-ons-http-scaler",
            "watch",
            "httpscaledobjects.http.keda.sh",
            undefined,
            true,
          ],
          [
            "keda-add-ons-http-scaler",
            "list",
            "endpointslices.discovery.k8s.io",
            NS,
            true,
          ],
          [
            "keda-add-ons-http-scaler",
            "list",
            "endpointslices.discovery.k8s.io",
            "default",
            false,
          ],
          [
            "keda-add-ons-http-scaler",
            "update",
            "httpscaledobjects.http.keda.sh",
            "default",
            false,
          ],
          ["keda-add-ons-http-scaler", "get", "secrets", NS, false],
        ];
        const wrong: string[] = [];
        for (const [name, verb, resource, ns, allowed] of cases) {
          const args = [
            "auth",
            "can-i",
            verb,
            resource,
            "--as",
            sa(name),
            ...(ns ? ["-n", ns] : ["--all-namespaces"]),
          ];
          const r = await k(args);
          const got = r.out.trim() === "yes";
          if (got !== allowed) {
            wrong.push(
              `${name} ${verb} ${resource}${ns ? ` in ${ns}` : ""}: expected ${
                allowed ? "yes" : "no"
              }, got ${r.out.trim() || r.err.trim()}`,
            );
          }
        }
        assert.deepEqual(wrong, []);
      });

      await t.step(
        "a request through the interceptor Service reaches a demo app at 1 replica; its metrics Service serves it counted",
        async () => {
          const app = await cluster.createNamespace("deploy-demo");
          await cluster.applyYaml(
            demoAppManifests({
              namespace: app,
              replicas: 1,
              host: "demo.deploy.test",
              spec: { replicas: { min: 1, max: 2 } },
            }),
          );
          // A client pod-namespace to send from: the demo pod itself.
          const pod = await cluster.waitFor(async () => {
            const pods = await cluster.client.list(`/api/v1/namespaces/${app}/pods`) as {
              items: Array<
                {
                  metadata: { name: string };
                  status?: { conditions?: Array<{ type: string; status: string }> };
                }
              >;
            };
            return pods.items.find((p) =>
              p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")
            )?.metadata.name;
          }, { what: "a ready demo pod", timeoutMs: 60_000 });
          const url = `http://keda-add-ons-http-interceptor-proxy.${NS}:8080/hello`;
          const body = await cluster.waitFor(async () => {
            const r = await cluster.execInPod(app, pod, [
              "curl",
              "-sS",
              "-m",
              "5",
              "-H",
              "Host: demo.deploy.test",
              url,
            ]);
            return r.code === 0 && r.stdout.includes('"path":"/hello"') ? r.stdout : undefined;
          }, {
            what: `an answer from the demo app through ${url}`,
            timeoutMs: 60_000,
            intervalMs: 1000,
          });
          assert.match(body, /"path":"\/hello"/);
          // The Go add-on's metrics Service: what a ServiceMonitor scrapes.
          const metricsUrl = `http://keda-add-ons-http-interceptor-metrics.${NS}:2223/metrics`;
          const metrics = await cluster.waitFor(async () => {
            const r = await cluster.execInPod(app, pod, ["curl", "-sS", "-m", "5", metricsUrl]);
            return r.code === 0 && r.stdout.includes("interceptor_request_count_total")
              ? r.stdout
              : undefined;
          }, { what: `Prometheus text from ${metricsUrl}`, timeoutMs: 30_000, intervalMs: 1000 });
          assert.match(metrics, /^interceptor_request_count_total\{code="200",method="GET"/m);
        },
      );
    } finally {
      // Not `kubectl delete -k`: that would delete the CRD other tests share.
      await k(["delete", "namespace", NS, "--ignore-not-found", "--wait=false"]);
      for (const kind of ["clusterrolebinding", "clusterrole"]) {
        await k([
          "delete",
          kind,
          "keda-add-ons-http-operator",
          "keda-add-ons-http-interceptor",
          "keda-add-ons-http-scaler",
          "--ignore-not-found",
        ]);
      }
    }
  },
});
