/**
 * The local test cluster itself, end to end: scheduling, the node agent,
 * pod networking, kube-proxy Services, name resolution, service account
 * tokens, restarts, kubectl, and that stopping leaves nothing behind.
 *
 * Run alone (`deno test -A tests/cluster_test.ts`, starts its own cluster and
 * checks its teardown) or through `deno task test` (attaches to the shared
 * one). Needs root.
 */

import assert from "node:assert/strict";
import { ensureBinaries } from "./cluster/binaries.ts";
import { DEMO_APP_IMAGE } from "./cluster/images.ts";
import { type Cluster, startCluster } from "./cluster/mod.ts";
import { BRIDGE, NETNS_PREFIX, NODE_OWNER_FILE, REPO_ROOT, VETH_PREFIX } from "./cluster/paths.ts";
import { alive } from "./cluster/processes.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const isRoot = Deno.uid() === 0;

function demoManifest(replicas: number): string {
  return `
apiVersion: apps/v1
kind: Deployment
metadata: {name: demo}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: app
        image: ${DEMO_APP_IMAGE}
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: RESPONSE_TEXT, value: "hello from $(POD_NAME)"}
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: demo}
spec:
  selector: {app: demo}
  ports: [{name: http, port: 80, targetPort: http}]
`;
}

const CLIENT_POD = `
apiVersion: v1
kind: ConfigMap
metadata: {name: client-cfg}
data: {greeting: hello}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: cfg, configMap: {name: client-cfg}}
  initContainers:
  - name: init
    image: busybox
    command: ["sh", "-c", "echo initialized > /mnt/khd-test-scratch/marker"]
    volumeMounts: [{name: scratch, mountPath: /mnt/khd-test-scratch}]
  containers:
  - name: client
    image: ${DEMO_APP_IMAGE}
    env:
    - {name: FROM_CM, valueFrom: {configMapKeyRef: {name: client-cfg, key: greeting}}}
    volumeMounts:
    - {name: scratch, mountPath: /mnt/khd-test-scratch}
    - {name: cfg, mountPath: /mnt/khd-test-cfg, readOnly: true}
`;

async function pods(c: Cluster, ns: string, selector: string): Promise<Json[]> {
  const list = await c.client.list<Json>(`/api/v1/namespaces/${ns}/pods`, {
    labelSelector: selector,
  });
  return list.items;
}

function isReady(pod: Json): boolean {
  return Boolean(
    pod.status?.conditions?.some((x: Json) => x.type === "Ready" && x.status === "True"),
  );
}

async function readySlices(c: Cluster, ns: string): Promise<string[]> {
  const slices = await c.client.list<Json>(
    `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`,
    { labelSelector: "kubernetes.io/service-name=demo" },
  );
  return slices.items.flatMap((s: Json) => s.endpoints ?? [])
    .filter((e: Json) => e.conditions?.ready)
    .flatMap((e: Json) => e.addresses);
}

/** Runs `deno eval` inside a pod: fetches url, prints the body. */
async function fetchFromPod(c: Cluster, ns: string, pod: string, url: string): Promise<string> {
  const code =
    `const r = await fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(5000) });` +
    `if (!r.ok) throw new Error("status " + r.status); await Deno.stdout.write(new Uint8Array(await r.arrayBuffer()));`;
  const out = await c.execInPod(ns, pod, [Deno.execPath(), "eval", "--quiet", code]);
  if (out.code !== 0) throw new Error(`fetch ${url} in pod ${pod} failed: ${out.stderr}`);
  return out.stdout;
}

/** Pids whose command line mentions marker (scanning /proc; not this process). */
function processesMentioning(marker: string): number[] {
  const found: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${pid}/cmdline`).includes(marker)) found.push(pid);
    } catch {
      // Exited meanwhile.
    }
  }
  return found;
}

async function sh(cmd: string): Promise<string> {
  const out = await new Deno.Command("sh", { args: ["-c", cmd], stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout);
}

Deno.test({
  name: "cluster: demo Deployment scales, serves through pod IPs and a Service, scales to zero",
  ignore: !isRoot,
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const cluster = await startCluster();
  const ownCluster = !cluster.attached;
  const stateDir = cluster.stateDir;
  try {
    const c = cluster;
    const ns = await c.createNamespace("cluster");

    await t.step("node is registered and Ready", async () => {
      const nodes = await c.client.list<Json>("/api/v1/nodes");
      assert.ok(nodes.items.length >= 1, "no Node registered");
      assert.ok(
        nodes.items.some((n: Json) =>
          n.status.conditions.some((x: Json) => x.type === "Ready" && x.status === "True")
        ),
        "no Ready node",
      );
    });

    await c.applyYaml(demoManifest(0), { namespace: ns });
    await c.applyYaml(CLIENT_POD, { namespace: ns });

    let demoPods: Json[] = [];
    await t.step("scaled 0 → 2: two Ready pods with distinct IPs", async () => {
      await c.client.patch(`/apis/apps/v1/namespaces/${ns}/deployments/demo/scale`, {
        spec: { replicas: 2 },
      });
      demoPods = await c.waitFor(async () => {
        const ps = (await pods(c, ns, "app=demo")).filter(isReady);
        return ps.length === 2 ? ps : undefined;
      }, { what: "2 Ready demo pods", timeoutMs: 60_000 });
      const ips = demoPods.map((p) => p.status.podIP);
      assert.notStrictEqual(ips[0], ips[1]);
      for (const p of demoPods) {
        assert.match(p.status.podIP, /^10\.244\./);
        assert.deepStrictEqual(p.status.phase, "Running");
        assert.deepStrictEqual(p.status.containerStatuses[0].ready, true);
        const types = p.status.conditions.filter((x: Json) => x.status === "True").map((
          x: Json,
        ) => x.type);
        for (const want of ["PodScheduled", "Initialized", "ContainersReady", "Ready"]) {
          assert.ok(types.includes(want), `condition ${want} not True on ${p.metadata.name}`);
        }
      }
    });

    await t.step("EndpointSlice lists both pods as ready", async () => {
      const want = demoPods.map((p) => p.status.podIP).sort();
      await c.waitFor(async () => {
        const got = (await readySlices(c, ns)).sort();
        return JSON.stringify(got) === JSON.stringify(want);
      }, { what: `EndpointSlice with ready ${want.join(", ")}` });
    });

    await c.waitFor(
      async () => isReady((await pods(c, ns, "")).find((p) => p.metadata.name === "client")),
      {
        what: "client pod Ready",
        timeoutMs: 60_000,
      },
    );

    await t.step("pod IPs answer from inside another pod", async () => {
      for (const p of demoPods) {
        const body = JSON.parse(
          await fetchFromPod(c, ns, "client", `http://${p.status.podIP}:8080/direct`),
        );
        assert.deepStrictEqual(body.pod, p.metadata.name);
        assert.deepStrictEqual(body.podIP, p.status.podIP);
        assert.deepStrictEqual(body.namespace, ns);
        assert.deepStrictEqual(body.path, "/direct");
        assert.deepStrictEqual(body.text, `hello from ${p.metadata.name}`);
      }
    });

    await t.step("Service name resolves and balances inside a pod (kube-proxy)", async () => {
      const seen = new Set<string>();
      await c.waitFor(async () => {
        for (
          const url of [
            `http://demo.${ns}/svc`,
            `http://demo/svc`,
            `http://demo.${ns}.svc.cluster.local/svc`,
          ]
        ) {
          const body = JSON.parse(await fetchFromPod(c, ns, "client", url));
          assert.deepStrictEqual(body.path, "/svc");
          seen.add(body.pod);
        }
        return seen.size === 2;
      }, {
        what: "answers from both demo pods through the Service",
        timeoutMs: 30_000,
        intervalMs: 50,
      });
    });

    await t.step("a pod reaches itself through its Service (hairpin)", async () => {
      const self = demoPods[0].metadata.name;
      await c.waitFor(async () => {
        const body = JSON.parse(await fetchFromPod(c, ns, self, `http://demo.${ns}/hairpin`));
        return body.pod === self;
      }, { what: "a hairpin answer", timeoutMs: 20_000, intervalMs: 50 });
    });

    await t.step("the host reaches the ClusterIP", async () => {
      const svc = await c.client.get<Json>(`/api/v1/namespaces/${ns}/services/demo`);
      const res = await fetch(`http://${svc.spec.clusterIP}/from-host`, {
        signal: AbortSignal.timeout(5_000),
      });
      const body = await res.json();
      assert.deepStrictEqual(body.path, "/from-host");
    });

    await t.step("pods get a bound service account token and reach the apiserver", async () => {
      const sa = "/var/run/secrets/kubernetes.io/serviceaccount";
      const code = `
        const dir = ${JSON.stringify(sa)};
        const token = (await Deno.readTextFile(dir + "/token")).trim();
        const client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(dir + "/ca.crt")] });
        const host = Deno.env.get("KUBERNETES_SERVICE_HOST"), port = Deno.env.get("KUBERNETES_SERVICE_PORT");
        const r = await fetch("https://kubernetes.default.svc:" + port + "/apis/authentication.k8s.io/v1/selfsubjectreviews", {
          client, method: "POST", headers: { authorization: "Bearer " + token, "content-type": "application/json" },
          body: JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }) });
        const ns = await Deno.readTextFile(dir + "/namespace");
        await Deno.stdout.write(new TextEncoder().encode(JSON.stringify({ status: r.status, host, ns, review: await r.json() })));`;
      const out = await c.execInPod(ns, "client", [Deno.execPath(), "eval", "--quiet", code]);
      assert.deepStrictEqual(out.code, 0, out.stderr);
      const res = JSON.parse(out.stdout);
      assert.deepStrictEqual(res.status, 201);
      assert.deepStrictEqual(res.host, "10.96.0.1");
      assert.deepStrictEqual(res.ns, ns);
      assert.deepStrictEqual(
        res.review.status.userInfo.username,
        `system:serviceaccount:${ns}:default`,
      );
      assert.deepStrictEqual(
        res.review.status.userInfo.extra["authentication.kubernetes.io/pod-name"],
        ["client"],
      );
    });

    await t.step("init container, emptyDir, configMap volume and env", async () => {
      const out = await c.execInPod(ns, "client", [
        "sh",
        "-c",
        "cat /mnt/khd-test-scratch/marker /mnt/khd-test-cfg/greeting; echo; echo $FROM_CM",
      ]);
      assert.deepStrictEqual(out.stdout, "initialized\nhello\nhello\n", out.stderr);
      const pod = await c.client.get<Json>(`/api/v1/namespaces/${ns}/pods/client`);
      assert.deepStrictEqual(
        pod.status.initContainerStatuses[0].state.terminated.reason,
        "Completed",
      );
    });

    await t.step("an emptyDir at /tmp hides neither the log nor the token", async () => {
      // Our own Deployments mount an emptyDir at /tmp (readOnlyRootFilesystem).
      const marker = `khd-tmp-${crypto.randomUUID().slice(0, 8)}`;
      await c.applyYaml(
        `
apiVersion: v1
kind: Pod
metadata: {name: tmpvol}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "echo ${marker} > /tmp/${marker} && cat /tmp/${marker} && test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token-ok; sleep 600"]
    volumeMounts: [{name: tmp, mountPath: /tmp}]
  volumes: [{name: tmp, emptyDir: {}}]
`,
        { namespace: ns },
      );
      const log = await c.waitFor(async () => {
        const text = await c.podLogs(ns, "tmpvol", "app");
        return text.includes("token-ok") ? text : undefined;
      }, { what: "tmpvol pod to write to its /tmp and read its token", timeoutMs: 30_000 });
      assert.ok(log.includes(marker), log);
      // The write went to the pod's emptyDir, not to the host's /tmp.
      await assert.rejects(Deno.stat(`/tmp/${marker}`), Deno.errors.NotFound);
      await c.client.delete(`/api/v1/namespaces/${ns}/pods/tmpvol`);
    });

    await t.step("readiness follows the probe; deletion honours the grace period", async () => {
      await c.applyYaml(
        `
apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: ${DEMO_APP_IMAGE}
    env: [{name: READY_DELAY_MS, value: "2500"}]
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
  - name: stubborn
    image: busybox
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"]
`,
        { namespace: ns },
      );
      const get = () => c.client.get<Json>(`/api/v1/namespaces/${ns}/pods/slow`);
      const running = await c.waitFor(async () => {
        const p = await get();
        return p.status?.containerStatuses?.every((s: Json) => s.state.running) ? p : undefined;
      }, { what: "slow pod running", timeoutMs: 30_000 });
      assert.ok(!isReady(running), "pod must not be Ready before its probe succeeds");
      await c.waitFor(async () => isReady(await get()), {
        what: "slow pod Ready",
        timeoutMs: 15_000,
      });
      const t0 = Date.now();
      await c.client.delete(`/api/v1/namespaces/${ns}/pods/slow`);
      await c.waitFor(
        async () => !(await c.client.getOrUndefined(`/api/v1/namespaces/${ns}/pods/slow`)),
        {
          what: "slow pod gone",
          timeoutMs: 20_000,
          intervalMs: 50,
        },
      );
      const took = Date.now() - t0;
      // The stubborn container ignores SIGTERM: it is killed after the 2 s grace.
      assert.ok(took >= 1_900 && took < 8_000, `deletion took ${took} ms`);
    });

    await t.step("container logs are written per container", async () => {
      const text = await c.podLogs(ns, demoPods[0].metadata.name, "app");
      assert.ok(text.includes("demo app listening"), `unexpected log:\n${text}`);
    });

    await t.step("a crashing container is restarted and counted", async () => {
      await c.applyYaml(
        `
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: crash
    image: busybox
    command: ["sh", "-c", "echo crashing; exit 3"]
`,
        { namespace: ns },
      );
      const pod = await c.waitFor(async () => {
        const p = await c.client.get<Json>(`/api/v1/namespaces/${ns}/pods/crasher`);
        return p.status?.containerStatuses?.[0]?.restartCount >= 1 ? p : undefined;
      }, { what: "a restart of the crasher", timeoutMs: 30_000 });
      assert.deepStrictEqual(pod.status.containerStatuses[0].lastState.terminated.exitCode, 3);
      await c.client.delete(`/api/v1/namespaces/${ns}/pods/crasher`);
    });

    await t.step("scaled to 0: processes gone, no ready endpoints", async () => {
      const pids: number[] = [];
      const netns: string[] = [];
      if (stateDir) {
        for (const p of demoPods) {
          const dir = `${stateDir}/pods/${ns}_${p.metadata.name}`;
          pids.push(Number((await Deno.readTextFile(`${dir}/app.pid`)).trim()));
          netns.push((await Deno.readTextFile(`${dir}/netns`)).trim());
        }
        assert.ok(pids.every(alive), "demo processes should run before scaling down");
      }
      await c.client.patch(`/apis/apps/v1/namespaces/${ns}/deployments/demo/scale`, {
        spec: { replicas: 0 },
      });
      await c.waitFor(async () => (await pods(c, ns, "app=demo")).length === 0, {
        what: "demo pods deleted",
        timeoutMs: 30_000,
      });
      await c.waitFor(async () => (await readySlices(c, ns)).length === 0, {
        what: "no ready endpoints",
      });
      for (const pid of pids) assert.ok(!alive(pid), `process ${pid} still runs`);
      const list = await sh("ip netns list");
      for (const n of netns) {
        assert.ok(!list.split("\n").some((l) => l.split(" ")[0] === n), `netns ${n} left`);
      }
    });

    await t.step("kubectl works with the cluster's kubeconfig", async () => {
      const { kubectl } = await ensureBinaries(["kubectl"]);
      const out = await new Deno.Command(kubectl!, {
        args: ["get", "nodes", "-o", "name"],
        env: { KUBECONFIG: c.kubeconfigPath },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      assert.match(text, /^node\//m);
      // kubectl logs goes apiserver → node agent (kubelet API on :10250).
      const logs = await new Deno.Command(kubectl!, {
        args: ["logs", "-n", ns, "client", "--tail=5"],
        env: { KUBECONFIG: c.kubeconfigPath },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(logs.success, new TextDecoder().decode(logs.stderr));
      assert.match(new TextDecoder().decode(logs.stdout), /demo app listening/);
    });
  } finally {
    await cluster.stop();
  }

  if (ownCluster && stateDir) {
    await t.step("stop leaves nothing behind", async () => {
      assert.deepStrictEqual(
        processesMentioning(stateDir),
        [],
        "processes of the cluster still run",
      );
      let dirExists = true;
      try {
        await Deno.stat(stateDir);
      } catch {
        dirExists = false;
      }
      assert.ok(!dirExists, `${stateDir} still exists`);
      let owner = false;
      try {
        await Deno.stat(NODE_OWNER_FILE);
        owner = true;
      } catch {
        // Nobody owns the pod network now.
      }
      if (!owner) {
        // Only meaningful while no other cluster with a node has started.
        const netns = await sh("ip netns list");
        assert.ok(
          !netns.split("\n").some((l) => l.startsWith(NETNS_PREFIX)),
          `netns left: ${netns}`,
        );
        const links = await sh("ip -o link show");
        assert.ok(
          !new RegExp(`: (${BRIDGE}|${VETH_PREFIX}\\d+)[:@]`).test(links),
          "interfaces left",
        );
        const rules = await sh("iptables -w -S; iptables -w -t nat -S");
        assert.ok(!/KUBE-|keda-http-deno/.test(rules), "iptables rules left");
      }
    });
  }
});

Deno.test({
  name: "cluster: `deno task cluster up/status/down` (control plane only)",
  ignore: !isRoot,
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  // A private state root keeps this away from a developer's dev cluster.
  const root = await Deno.makeTempDir({ prefix: "khd-cli-test-" });
  const env = { KEDAHTTP_CLUSTER_STATE_ROOT: root };
  const cli = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `--config=${REPO_ROOT}/deno.json`,
        `${REPO_ROOT}/tests/cluster/cli.ts`,
        ...args,
      ],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      ok: out.success,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
  };
  try {
    const up = await cli("up", "--no-node");
    assert.ok(up.ok, up.stderr);
    const last = up.stdout.trim().split("\n").at(-1) ?? "";
    assert.match(last, /^export KUBECONFIG=\//);
    const kubeconfig = last.slice("export KUBECONFIG=".length);

    const { kubectl } = await ensureBinaries(["kubectl"]);
    const get = await new Deno.Command(kubectl!, {
      args: ["get", "namespaces", "-o", "name"],
      env: { KUBECONFIG: kubeconfig },
      stdout: "piped",
    }).output();
    assert.ok(get.success);
    assert.match(new TextDecoder().decode(get.stdout), /namespace\/kube-system/);

    const status = await cli("status");
    assert.match(status.stdout, /dev: ready/);

    const down = await cli("down");
    assert.ok(down.ok, down.stderr);
    assert.deepStrictEqual(processesMentioning(root), [], "processes of the cluster still run");
    const left = [...Deno.readDirSync(root)].map((e) => e.name);
    assert.deepStrictEqual(left, [], `left in ${root}: ${left.join(", ")}`);
  } finally {
    await cli("down", "--all");
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
});
