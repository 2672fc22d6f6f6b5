/**
 * The TLS listener against a real kube-apiserver: an app that serves HTTPS
 * itself (the interceptor re-encrypts to it, SNI = the Service host, verified
 * against a configured CA), HTTP/2 and HTTP/1.1 chosen by ALPN on the
 * certificate each SNI selects, and gRPC over TLS to an h2c app.
 */
import assert from "node:assert/strict";
import { startCluster } from "../tests/cluster/mod.ts";
import type { KubeObject } from "../tests/cluster/mod.ts";
import { appObjects, endpointSlice, freePort, Netns, startInterceptor } from "./cluster_testing.ts";
import { makeCa, makeLeaf } from "./tls_testing.ts";
import { nodeRequests } from "./h2_testing.ts";
import { grpcClient, unary } from "../tests/fixtures/grpc_client_testing.ts";

const GRPC_APP = new URL("../tests/fixtures/grpc_app.ts", import.meta.url).pathname;

/** curl over TLS with HTTP/1.1 only (ALPN http/1.1), `host` resolved to loopback. */
async function curlHttp1(port: number, host: string, path: string, ca: string) {
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "--http1.1",
      "--cacert",
      ca,
      "--resolve",
      `${host}:${port}:127.0.0.1`,
      "-w",
      "\n%{http_code} %{http_version}",
      `https://${host}:${port}${path}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, `curl failed: ${new TextDecoder().decode(out.stderr)}`);
  const nl = text.lastIndexOf("\n");
  const [code, version] = text.slice(nl + 1).split(" ");
  return { status: Number(code), version, body: text.slice(0, nl) };
}

Deno.test({
  name: "TLS listener against a cluster: HTTPS app, ALPN per SNI, gRPC over TLS",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  await using cluster = await startCluster({ node: false, controllers: false });
  const ns = await cluster.createNamespace("tls");
  const dir = await Deno.makeTempDir({ prefix: "tls-cluster-" });
  const storeDir = `${dir}/store`;
  const caDir = `${dir}/ca`;
  await Deno.mkdir(storeDir);
  await Deno.mkdir(caDir);
  try {
    const ca = await makeCa(caDir, "ca");
    const listener = await makeLeaf(dir, "listener", { ca, sans: ["DNS:a.tls.test"] });
    // A second certificate from the cert store, in the x.crt / x-key.pem layout.
    await makeLeaf(storeDir, "b", { ca, sans: ["DNS:b.tls.test"], keyExt: "-key.pem" });
    const appCert = await makeLeaf(dir, "app", { ca, sans: [`DNS:web.${ns}`] });

    await using netWeb = await Netns.create();
    await using netGrpc = await Netns.create();
    const [web, grpcApp] = await Promise.all([
      netWeb.startApp({
        name: "web",
        env: { TLS_CERT: appCert.cert, TLS_KEY: appCert.key },
      }),
      netGrpc.startApp({ name: "grpc", script: GRPC_APP, port: 8080 }),
    ]);

    const webObjs = appObjects({
      namespace: ns,
      name: "web",
      spec: { hosts: ["a.tls.test", "b.tls.test"] },
    });
    const grpcObjs = appObjects({
      namespace: ns,
      name: "grpc",
      spec: { hosts: ["grpc.test"] },
      appProtocol: "kubernetes.io/h2c",
    });
    await cluster.applyYaml([
      webObjs.service,
      webObjs.httpso,
      grpcObjs.service,
      grpcObjs.httpso,
      endpointSlice({
        namespace: ns,
        service: "web",
        endpoints: [{ ip: web.ip, ready: true }],
      }),
      endpointSlice({
        namespace: ns,
        service: "grpc",
        endpoints: [{ ip: grpcApp.ip, ready: true }],
        appProtocol: "kubernetes.io/h2c",
      }),
    ] as KubeObject[], { namespace: ns });

    const tlsPort = freePort();
    await using ic = await startInterceptor({
      kubeconfigPath: cluster.kubeconfigPath,
      env: {
        KEDA_HTTP_PROXY_TLS_ENABLED: "true",
        KEDA_HTTP_PROXY_TLS_PORT: String(tlsPort),
        KEDA_HTTP_PROXY_TLS_CERT_PATH: listener.cert,
        KEDA_HTTP_PROXY_TLS_KEY_PATH: listener.key,
        KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS: storeDir,
        KEDA_HTTP_UPSTREAM_CA_DIR: caDir,
      },
    });
    await cluster.waitFor(async () => {
      const d = await ic.adminJson<Record<string, { ready: string[] }>>("/deployments");
      return d[`${ns}/web:80`]?.ready.length === 1 && d[`${ns}/grpc:80`]?.ready.length === 1;
    }, { what: "endpoints of web and grpc" });

    await t.step("HTTP/1.1 by ALPN reaches an app that serves HTTPS itself", async () => {
      const r = await curlHttp1(tlsPort, "a.tls.test", "/json?q=1", ca.cert);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.version, "1.1");
      const seen = JSON.parse(r.body);
      assert.equal(seen.scheme, "https", "the app was reached over TLS");
      assert.equal(seen.path, "/json?q=1");
      assert.equal(seen.headers["x-forwarded-proto"], "https");
    });

    await t.step("h2 by ALPN on the certificate the SNI selects (cert store)", async () => {
      // Verification of b.tls.test fails unless the store's certificate was presented.
      const [r] = await nodeRequests(`https://127.0.0.1:${tlsPort}`, [
        { headers: { ":path": "/json", ":authority": "b.tls.test" } },
      ], { caFile: ca.cert, servername: "b.tls.test" });
      assert.equal(r!.status, 200, r!.body);
      const seen = JSON.parse(r!.body);
      assert.equal(seen.scheme, "https");
      assert.equal(seen.headers.host, "b.tls.test");
      const h1 = await curlHttp1(tlsPort, "b.tls.test", "/hello", ca.cert);
      assert.equal(h1.status, 200);
      assert.equal(h1.body, "hello from web");
    });

    await t.step("gRPC over TLS to an h2c app", async () => {
      const c = grpcClient(`127.0.0.1:${tlsPort}`, {
        authority: "grpc.test",
        tls: { ca: ca.certPem, servername: "a.tls.test" },
      });
      try {
        const r = await unary(c, { text: "over tls" });
        assert.equal(r.text, "unary:over tls");
        assert.equal(r.authority, "grpc.test");
      } finally {
        c.close();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
