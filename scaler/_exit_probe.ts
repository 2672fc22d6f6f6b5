import { startCluster } from "../tests/cluster/mod.ts";
import { ExternalScalerClient } from "./external_scaler.ts";
import { createTestNetns } from "./testing/netns.ts";
const mode = Deno.args[0] ?? "client";
const n = Number(Deno.args[1] ?? 10);
await using cluster = await startCluster({ node: false });
const ns = await cluster.createNamespace("probe");
await cluster.applyYaml([{
  apiVersion: "http.keda.sh/v1alpha1",
  kind: "HTTPScaledObject",
  metadata: { name: "app", namespace: ns },
  spec: { hosts: ["a"], scaleTargetRef: { name: "app", service: "app", port: 8080 } },
}], { namespace: ns });
await using net = await createTestNetns(2);
const reps = net.addresses.map((a) =>
  net.spawn(Deno.execPath(), [
    "run",
    "-A",
    "scaler/testing/queue_server_main.ts",
    a,
    "9090",
    `${ns}/app`,
  ], { stdout: "null" })
);
await cluster.applyYaml([{
  apiVersion: "discovery.k8s.io/v1",
  kind: "EndpointSlice",
  metadata: { name: "x-a", namespace: ns, labels: { "kubernetes.io/service-name": "x" } },
  addressType: "IPv4",
  ports: [{ name: "admin", port: 9090, protocol: "TCP" }],
  endpoints: net.addresses.map((a, i) => ({
    addresses: [a],
    conditions: { ready: true },
    targetRef: { kind: "Pod", name: `p${i}`, namespace: ns, uid: `u${i}` },
  })),
}], { namespace: ns });
await new Promise((r) => setTimeout(r, 2000));
const out = (s: string) => Deno.stderr.writeSync(new TextEncoder().encode(s + "\n"));
let crashes = 0;
const clients: ExternalScalerClient[] = [];
for (let i = 0; i < n; i++) {
  const fp = () => {
    const l = Deno.listen({ port: 0 });
    const pp = (l.addr as Deno.NetAddr).port;
    l.close();
    return pp;
  };
  const grpcPort = fp(), httpPort = fp();
  const server = Deno.env.get("PROBE_SERVER") ?? "main";
  const p = new Deno.Command(Deno.execPath(), {
    args: server === "main" ? ["run", "-A", "scaler/main.ts"] : [
      "run",
      "-A",
      "scaler/_probe_server.ts",
      ns,
      ...net.addresses.map((a) => `http://${a}:9090`),
    ],
    env: {
      KUBECONFIG: cluster.kubeconfigPath,
      KEDA_HTTP_SCALER_PORT: String(grpcPort),
      KEDA_HTTP_SCALER_HTTP_PORT: String(httpPort),
      KEDA_HTTP_SCALER_TARGET_ADMIN_NAMESPACE: ns,
      KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE: "x",
      LOG_LEVEL: "error",
    },
    stdout: server === "main" ? "null" : "piped",
    stderr: "piped",
  }).spawn();
  let grpcAddr = `127.0.0.1:${grpcPort}`, httpBase = `http://127.0.0.1:${httpPort}`;
  if (server !== "main") {
    const rd = p.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let t = "";
    while (!t.includes("\n")) t += (await rd.read()).value;
    rd.releaseLock();
    const parts = t.trim().split(" ");
    grpcAddr = parts[1]!;
    httpBase = parts[2]!;
  }
  for (let j = 0; j < 200; j++) {
    try {
      const r = await fetch(`${httpBase}/readyz`);
      await r.body?.cancel();
      if (r.ok) break;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 1000));
  if (mode === "go") {
    const ref = ns;
    const o = await new Deno.Command("/tmp/goclient/goclient", {
      args: [grpcAddr, "50"],
      env: { PROBE_NS: ref },
    }).output();
    out(
      `iter ${i}: go ${new TextDecoder().decode(o.stdout).trim()} ${
        new TextDecoder().decode(o.stderr).trim().slice(0, 200)
      }`,
    );
    await new Promise((r) => setTimeout(r, 500));
    try {
      const r = await fetch(`${httpBase}/livez`);
      await r.body?.cancel();
    } catch {
      out(`iter ${i}: DEAD after go client`);
    }
  }
  if (mode === "client") {
    try {
      const c = new ExternalScalerClient(grpcAddr);
      const ref = { name: "app", namespace: ns, scalerMetadata: { httpScaledObject: "app" } };
      for (let k = 0; k < 100; k++) await c.getMetrics(ref, "");
      const set = (n: number) =>
        fetch(`http://${net.addresses[0]}:9090/_test/concurrency?route=${ns}/app&n=${n}`, {
          method: "POST",
        }).then((r) => r.text());
      await set(0);
      await new Promise((r) => setTimeout(r, 500));
      const ctrl = new AbortController();
      const stream = c.streamIsActive(ref, { signal: ctrl.signal });
      while ((await stream.next()).value !== false) { /* idle */ }
      await set(1);
      let next = await stream.next();
      while (next.value === false) next = await stream.next();
      ctrl.abort();
      await stream.return(undefined);
      if (Deno.env.get("PROBE_ORDER") !== "term-first") c.close();
      else clients.push(c);
      await new Promise((r) => setTimeout(r, 1000));
      try {
        const r = await fetch(`${httpBase}/livez`);
        await r.body?.cancel();
      } catch {
        out(`iter ${i}: DEAD after client close`);
      }
    } catch (e) {
      out(`iter ${i}: client error ${(e as Error).message.slice(0, 200)}`);
    }
  }
  try {
    p.kill("SIGTERM");
  } catch { /* dead */ }
  const st = await p.status;
  for (const c of clients.splice(0)) c.close();
  const err = new TextDecoder().decode(await new Response(p.stderr).arrayBuffer());
  if (st.code !== 0) {
    crashes++;
    out(`iter ${i}: code ${st.code} ${err.slice(-200)}`);
  }
}
out(`mode ${mode}: crashes ${crashes}/${n}`);
for (const r of reps) {
  r.kill("SIGKILL");
  await r.status;
}
