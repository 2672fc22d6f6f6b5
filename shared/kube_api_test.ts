import assert from "node:assert/strict";
import { createLogger } from "./log.ts";
import {
  credentialsFromKubeconfigFile,
  Informer,
  KubeApiClient,
  loadCredentials,
} from "./kube_api.ts";

const b64 = (s: string) => btoa(s);

Deno.test("kubeconfig files (YAML or JSON) become credentials without client-node", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/ca.pem`, "CA-PEM");
    await Deno.writeTextFile(
      `${dir}/config`,
      [
        "apiVersion: v1",
        "kind: Config",
        "current-context: dev",
        "clusters:",
        "- name: c1",
        "  cluster:",
        "    server: https://10.0.0.1:6443/",
        "    certificate-authority: ca.pem",
        "users:",
        "- name: u1",
        "  user:",
        `    client-certificate-data: ${b64("CERT")}`,
        `    client-key-data: ${b64("KEY")}`,
        "contexts:",
        "- name: other",
        "  context: {cluster: none, user: none}",
        "- name: dev",
        "  context:",
        "    cluster: c1",
        "    user: u1",
        "    namespace: team-a",
      ].join("\n"),
    );
    const c = await credentialsFromKubeconfigFile(`${dir}/config`);
    assert.deepEqual(c, {
      server: "https://10.0.0.1:6443",
      namespace: "team-a",
      caCerts: ["CA-PEM"],
      cert: "CERT",
      key: "KEY",
    });
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({
        "current-context": "x",
        clusters: [{ name: "c", cluster: { server: "https://h:1" } }],
        users: [{ name: "u", user: { token: "t0k" } }],
        contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
      }),
    );
    assert.deepEqual(await loadCredentials(`${dir}/config.json`), {
      server: "https://h:1",
      namespace: "default",
      token: "t0k",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kubeconfig problems are explained: missing context, exec plugins", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.json`, JSON.stringify({ "current-context": "nope" }));
    await assert.rejects(
      () => credentialsFromKubeconfigFile(`${dir}/a.json`),
      /has no context named by current-context \("nope"\)/,
    );
    await Deno.writeTextFile(
      `${dir}/b.json`,
      JSON.stringify({
        "current-context": "x",
        clusters: [{ name: "c", cluster: { server: "https://h:1" } }],
        users: [{ name: "u", user: { exec: { command: "aws" } } }],
        contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
      }),
    );
    await assert.rejects(
      () => credentialsFromKubeconfigFile(`${dir}/b.json`),
      /exec credential plugin/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an optional resource (missingHint) that is absent or forbidden lists as empty and synced", async () => {
  for (const status of [404, 403]) {
    let lists = 0;
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
      lists++;
      return Response.json({ kind: "Status", status: "Failure", reason: "x", code: status }, {
        status,
      });
    });
    const lines: string[] = [];
    const log = createLogger({ level: "debug", sink: (l) => lines.push(l) });
    const client = new KubeApiClient({
      server: `http://127.0.0.1:${server.addr.port}`,
      namespace: "default",
    });
    const informer = new Informer(client, {
      path: "/apis/http.keda.sh/v1beta1/interceptorroutes",
      log,
      missingHint: "apply k8s/crd/interceptorroutes.yaml",
    });
    const stop = new AbortController();
    const running = informer.run(stop.signal);
    await informer.synced;
    assert.equal(informer.hasSynced, true);
    assert.equal(informer.store.size, 0);
    stop.abort();
    await running;
    client.close();
    await server.shutdown();
    assert.equal(lists, 1, "one list, then the 30 s retry wait (aborted here)");
    const warn = lines.map((l) => JSON.parse(l)).find((l) => l.level === "warn");
    assert.match(
      warn.hint,
      status === 404 ? /apply k8s\/crd\/interceptorroutes\.yaml/ : /grant get\/list\/watch/,
    );
  }
});
