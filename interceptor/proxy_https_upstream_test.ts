import assert from "node:assert/strict";
import { rawRequest, startApp, startHarness } from "./proxy_testing.ts";
import { makeCa, makeLeaf, startHttpsApp } from "./tls_testing.ts";
import { serverNameOf, Target } from "./targets.ts";
import { connectTls, upstreamTlsOf } from "./upstream_tls.ts";
import { upstreamTlsFor } from "./upstream_leg.ts";
import { UpstreamConn } from "./upstream_pool.ts";
import { readsDirectly, writesDirectly } from "./conn_io.ts";
import type { ClientConn } from "./exchange.ts";
import { interceptorEnvSchema, parseConfig } from "../shared/config.ts";

const ROUTE = "ns/app";
const HOST = "app.ns";

async function certs() {
  const dir = await Deno.makeTempDir();
  const ca = await makeCa(dir, "ca");
  const other = await makeCa(dir, "other-ca");
  const leaf = await makeLeaf(dir, "app", { ca, sans: [`DNS:${HOST}`] });
  return { dir, ca, other, leaf };
}

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test("the Service host for SNI is <service>.<namespace>, as Go's", () => {
  assert.equal(serverNameOf("ns/app:80"), "app.ns");
  assert.equal(serverNameOf("default/web:http"), "web.default");
});

Deno.test({
  name:
    "HTTPS app (appProtocol https): verified as the Service host, SNI sent, the connection reused",
  ...opts,
}, async () => {
  const { dir, ca, leaf } = await certs();
  try {
    await using app = await startHttpsApp(leaf, (req) => `tls ${req.method} ${req.url}`);
    await using h = startHarness({
      upstreamTls: { caCerts: [ca.certPem], skipVerify: false, notes: [] },
    });
    h.setRoutes([{ name: "app", namespace: "ns", spec: {} }]);
    h.setEndpoints(ROUTE, [app.port], { tls: true });
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`http://127.0.0.1:${h.port}/x?${i}`, { headers: { host: "app.test" } });
      assert.equal(r.status, 200);
      assert.equal(await r.text(), `tls GET /x?${i}`);
    }
    assert.deepEqual(app.serverNames, [HOST]);
    assert.equal(app.connections, 1, "keep-alive: one TLS connection for three requests");
    // A POST body goes over TLS too.
    const r = await fetch(`http://127.0.0.1:${h.port}/post`, {
      method: "POST",
      headers: { host: "app.test" },
      body: "x".repeat(100_000),
    });
    assert.equal(await r.text(), "tls POST /post");
    assert.equal(app.connections, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "HTTPS app with a certificate from an untrusted CA: 502 saying verification failed and what to set",
  ...opts,
}, async () => {
  const { dir, other, leaf } = await certs();
  try {
    await using app = await startHttpsApp(leaf, () => "never");
    await using h = startHarness({
      upstreamTls: { caCerts: [other.certPem], skipVerify: false, notes: [] },
    });
    h.setRoutes([{ name: "app", namespace: "ns", spec: {} }]);
    h.setEndpoints(ROUTE, [app.port], { tls: true });
    const t0 = Date.now();
    const r = await fetch(`http://127.0.0.1:${h.port}/`, { headers: { host: "app.test" } });
    assert.equal(r.status, 502);
    const text = await r.text();
    assert.match(text, /TLS verification of ns\/app:80 at 127\.0\.0\.1:\d+ as app\.ns failed/);
    assert.match(text, /KEDA_HTTP_UPSTREAM_CA_DIR/);
    assert.match(text, /KEDA_HTTP_PROXY_TLS_SKIP_VERIFY=true/);
    assert.ok(Date.now() - t0 < 400, "a failed handshake is not retried to the connect deadline");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "a certificate for another name fails verification too; SKIP_VERIFY accepts both",
  ...opts,
}, async () => {
  const { dir, ca } = await certs();
  try {
    const wrongName = await makeLeaf(dir, "wrong", { ca, sans: ["DNS:other.ns"] });
    await using app = await startHttpsApp(wrongName, (req) => `skipped ${req.url}`);
    {
      await using h = startHarness({
        upstreamTls: { caCerts: [ca.certPem], skipVerify: false, notes: [] },
      });
      h.setRoutes([{ name: "app", namespace: "ns", spec: {} }]);
      h.setEndpoints(ROUTE, [app.port], { tls: true });
      const r = await fetch(`http://127.0.0.1:${h.port}/`, { headers: { host: "app.test" } });
      assert.equal(r.status, 502);
      assert.match(await r.text(), /TLS verification .* failed: .*not valid for name "app\.ns"/);
    }
    await using h = startHarness({
      upstreamTls: { caCerts: [], skipVerify: true, notes: [] },
    });
    h.setRoutes([{ name: "app", namespace: "ns", spec: {} }]);
    h.setEndpoints(ROUTE, [app.port], { tls: true });
    for (let i = 0; i < 2; i++) {
      const r = await fetch(`http://127.0.0.1:${h.port}/s${i}`, { headers: { host: "app.test" } });
      assert.equal(r.status, 200);
      assert.equal(await r.text(), `skipped /s${i}`);
    }
    assert.ok(app.serverNames.every((n) => n === HOST), `SNI still sent: ${app.serverNames}`);
    assert.equal(app.serverNames.at(-1), HOST);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "a plaintext app behind appProtocol https: 502 asking whether the app serves TLS",
  ...opts,
}, async () => {
  await using plain = startApp(() => new Response("plain"));
  await using h = startHarness({ upstreamTls: { caCerts: [], skipVerify: false, notes: [] } });
  h.setRoutes([{ name: "app", namespace: "ns", spec: {} }]);
  h.setEndpoints(ROUTE, [plain.port], { tls: true });
  const r = await rawRequest(
    h.port,
    "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
  );
  assert.equal(r.status, 502);
  assert.match(r.body, /TLS handshake with ns\/app:80 .* failed: .*does the app serve TLS/);
});

Deno.test({
  name:
    "plain HTTP/1.1 targets are unchanged, and TLS and plain connections to one address never mix",
  ...opts,
}, async () => {
  await using plain = startApp((req) => new Response(`plain ${new URL(req.url).pathname}`));
  await using h = startHarness();
  h.setRoutes([{ name: "app", namespace: "ns", spec: {} }]);
  h.setEndpoints(ROUTE, [plain.port]);
  for (let i = 0; i < 2; i++) {
    const r = await fetch(`http://127.0.0.1:${h.port}/p${i}`, { headers: { host: "app.test" } });
    assert.equal(await r.text(), `plain /p${i}`);
  }
  // The same address now says https: the idle plain connection is not handed out for it.
  h.setEndpoints(ROUTE, [plain.port], { tls: true });
  const r = await fetch(`http://127.0.0.1:${h.port}/`, { headers: { host: "app.test" } });
  assert.equal(r.status, 502);
  await r.body?.cancel();
});

Deno.test({
  name: "upstream trust from config: KEDA_HTTP_UPSTREAM_CA_DIR PEMs and the serving certificate",
  ...opts,
}, async () => {
  const { dir, ca, other, leaf } = await certs();
  try {
    await Deno.mkdir(`${dir}/cas`);
    await Deno.writeTextFile(`${dir}/cas/bundle.pem`, ca.certPem + other.certPem);
    await Deno.writeTextFile(`${dir}/cas/readme.txt`, "not a certificate");
    const config = parseConfig("interceptor", interceptorEnvSchema(), {
      KEDA_HTTP_UPSTREAM_CA_DIR: `${dir}/cas`,
      KEDA_HTTP_PROXY_TLS_SKIP_VERIFY: "false",
      KEDA_HTTP_PROXY_TLS_ENABLED: "true",
      KEDA_HTTP_PROXY_TLS_CERT_PATH: leaf.cert,
      KEDA_HTTP_PROXY_TLS_KEY_PATH: leaf.key,
    });
    const trust = upstreamTlsOf(config, `${dir}/no-service-account-ca.crt`);
    assert.equal(trust.skipVerify, false);
    assert.deepEqual(trust.caCerts.map((c) => c.trim()), [
      ca.certPem.trim(),
      other.certPem.trim(),
      leaf.certPem.trim(),
    ]);
    assert.ok(trust.notes.some((n) => /readme\.txt skipped: no PEM certificate/.test(n)));
    // The service-account CA, when there is one, is trusted first.
    const sa = upstreamTlsOf(config, ca.cert);
    assert.equal(sa.caCerts[0]!.trim(), ca.certPem.trim());
    assert.match(sa.notes[0]!, /^cluster CA /);
    // And the loaded trust works end to end.
    await using app = await startHttpsApp(leaf, () => "trusted");
    await using h = startHarness({ upstreamTls: trust });
    h.setRoutes([{ name: "app", namespace: "ns", spec: {} }]);
    h.setEndpoints(ROUTE, [app.port], { tls: true });
    const r = await fetch(`http://127.0.0.1:${h.port}/`, { headers: { host: "app.test" } });
    assert.equal(await r.text(), "trusted");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("which exchanges use TLS: appProtocol https, or a TLS client unless the port is h2c", () => {
  const t = (tls: boolean, h2c: boolean) => Object.assign(new Target("ns/app:80"), { tls, h2c });
  const from = (proto: "http" | "https") => ({ proto }) as ClientConn;
  assert.equal(upstreamTlsFor(t(false, false), from("http")), false);
  assert.equal(upstreamTlsFor(t(true, false), from("http")), true);
  assert.equal(upstreamTlsFor(t(false, false), from("https")), true, "as Go's TLS listener");
  assert.equal(upstreamTlsFor(t(false, true), from("https")), false, "h2c declares cleartext");
});

Deno.test({
  name: "a TLS upstream connection keeps the direct read/write ops (Deno.TlsConn has a rid)",
  ...opts,
}, async () => {
  const { dir, ca, leaf } = await certs();
  try {
    await using app = await startHttpsApp(leaf, () => "x");
    const conn = await connectTls({
      ip: "127.0.0.1",
      port: app.port,
      serverName: HOST,
      config: { caCerts: [ca.certPem], skipVerify: false, notes: [] },
      timeoutMs: 2_000,
    });
    const u = new UpstreamConn(conn, `127.0.0.1:${app.port}`, true);
    assert.ok(readsDirectly(u.reader));
    assert.ok(writesDirectly(conn));
    conn.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
