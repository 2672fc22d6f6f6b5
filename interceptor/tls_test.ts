import assert from "node:assert/strict";
import tls from "node:tls";
import { createLogger } from "../shared/log.ts";
import { certNames, CertSelector, loadCertStore, startTlsServer } from "./tls.ts";
import { startHarness } from "./proxy_testing.ts";
import { startHttpsApp } from "./tls_testing.ts";
import { nodeRequests } from "./h2_testing.ts";

async function makeCert(dir: string, name: string, sans: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      `${dir}/${name}.key`,
      "-out",
      `${dir}/${name}.crt`,
      "-days",
      "1",
      "-subj",
      `/CN=${sans[0]}`,
      "-addext",
      `subjectAltName=${sans.map((s) => `DNS:${s}`).join(",")}`,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

Deno.test("CertSelector: exact SAN, then one-label wildcard, then the default", () => {
  const s = new CertSelector<string>("default");
  s.add(["a.test", "*.a.test"], "A");
  s.add(["x.a.test"], "X");
  assert.equal(s.select("a.test"), "A");
  assert.equal(s.select("X.A.test"), "X");
  assert.equal(s.select("y.a.test"), "A");
  assert.equal(s.select("z.y.a.test"), "default", "a wildcard covers one label only");
  assert.equal(s.select("other.test"), "default");
  assert.equal(s.select(undefined), "default");
});

Deno.test({
  name:
    "TLS: certificates from the store are picked by SNI (wildcards too) and requests are proxied as https",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/store/nested`, { recursive: true });
    await makeCert(`${dir}/store`, "a", ["a.test", "*.a.test"]);
    await makeCert(`${dir}/store/nested`, "b", ["b.test"]);
    await makeCert(dir, "default", ["default.test"]);
    assert.deepEqual(certNames(await Deno.readTextFile(`${dir}/store/a.crt`)), [
      "a.test",
      "*.a.test",
    ]);
    const store = loadCertStore([`${dir}/store`]);
    assert.deepEqual(store.problems, []);
    assert.deepEqual(store.pairs.map((p) => p.names[0]).sort(), ["a.test", "b.test"]);

    // From the TLS listener the app is reached over TLS too, as in Go (here unverified).
    await using h = startHarness({ upstreamTls: { caCerts: [], skipVerify: true, notes: [] } });
    let seenProto = "";
    await using app = await startHttpsApp({
      cert: `${dir}/default.crt`,
      key: `${dir}/default.key`,
      certPem: await Deno.readTextFile(`${dir}/default.crt`),
      keyPem: await Deno.readTextFile(`${dir}/default.key`),
    }, (req) => {
      seenProto = String(req.headers["x-forwarded-proto"] ?? "");
      return `hi ${req.headers.host}`;
    });
    h.setRoutes([{ name: "app", spec: {} }]);
    h.setEndpoints("default/app", [app.port]);
    const server = await startTlsServer({
      hostname: "127.0.0.1",
      settings: {
        port: 0,
        certPath: `${dir}/default.crt`,
        keyPath: `${dir}/default.key`,
        certStorePaths: [`${dir}/store`],
      },
      log: createLogger({ sink: () => {} }),
      onConnection: (conn, ip, h2) => h.proxy.serve(conn, ip, "https", h2),
    });
    try {
      const get = (servername: string, ca: string) =>
        new Promise<string>((resolve, reject) => {
          const sock = tls.connect({ host: "127.0.0.1", port: server.port, servername, ca }, () => {
            sock.write(`GET / HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
          });
          let text = "";
          sock.on("data", (d: Uint8Array) => (text += new TextDecoder().decode(d)));
          sock.on("end", () => resolve(text));
          sock.on("error", reject);
        });
      const caA = await Deno.readTextFile(`${dir}/store/a.crt`);
      const caB = await Deno.readTextFile(`${dir}/store/nested/b.crt`);
      const caDefault = await Deno.readTextFile(`${dir}/default.crt`);
      assert.match(await get("www.a.test", caA), /^HTTP\/1\.1 200[\s\S]*hi www\.a\.test$/);
      assert.equal(seenProto, "https");
      assert.match(await get("b.test", caB), /hi b\.test$/);
      // Two labels under the wildcard: the default certificate is served, so A's CA fails.
      await assert.rejects(() => get("x.y.a.test", caA));
      assert.match(await get("default.test", caDefault), /hi default\.test$/);
      // HTTP/2 by ALPN, with the certificate chosen per SNI.
      // (A client that did not get h2 by ALPN fails its session: nodeRequests throws.)
      const sni: Array<[string, string]> = [
        ["www.a.test", `${dir}/store/a.crt`],
        ["b.test", `${dir}/store/nested/b.crt`],
      ];
      for (const [name, caFile] of sni) {
        const [r] = await nodeRequests(`https://127.0.0.1:${server.port}`, [
          { headers: { ":path": "/", ":authority": name } },
        ], { caFile, servername: name });
        assert.equal(r!.status, 200, name);
        assert.equal(r!.body, `hi ${name}`);
        assert.equal(seenProto, "https");
      }
    } finally {
      server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
