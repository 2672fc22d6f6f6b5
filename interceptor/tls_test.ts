import assert from "node:assert/strict";
import tls from "node:tls";
import { createLogger } from "../shared/log.ts";
import { ConfigError, interceptorEnvSchema, parseConfig } from "../shared/config.ts";
import { DENO_TLS12_SUITES } from "../shared/tls_options.ts";
import type { TlsSettings } from "./dataplane_protocol.ts";
import { certNames, CertSelector, loadCertStore, startTlsServer } from "./tls.ts";
import { startHarness } from "./proxy_testing.ts";
import { makeCa, makeLeaf, probe, startHttpsApp } from "./tls_testing.ts";
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

const quiet = createLogger({ sink: () => {} });
const noLeaks = { sanitizeResources: false, sanitizeOps: false };

/** A TLS listener with `leaf` as its certificate and `extra` settings; each connection is closed. */
async function listener(
  leaf: { cert: string; key: string },
  extra: Partial<TlsSettings> = {},
): Promise<{ port: number; close(): void }> {
  return await startTlsServer({
    hostname: "127.0.0.1",
    settings: { port: 0, certPath: leaf.cert, keyPath: leaf.key, certStorePaths: [], ...extra },
    log: quiet,
    // A byte before closing: s_client prints what was negotiated only after reading.
    onConnection: (conn) =>
      void conn.write(new TextEncoder().encode("hi\n")).finally(() => conn.close()),
  });
}

Deno.test({
  name: "TLS min/max version: Deno honours them, a version outside is refused by the handshake",
  ...noLeaks,
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ca = await makeCa(dir, "ca");
    const leaf = await makeLeaf(dir, "leaf", { ca, sans: ["DNS:a.test"] });
    const any = await listener(leaf);
    const only13 = await listener(leaf, { minVersion: "TLSv1.3" });
    const only12 = await listener(leaf, { maxVersion: "TLSv1.2" });
    try {
      assert.equal((await probe(any.port, ["-tls1_2"])).protocol, "TLSv1.2");
      assert.equal((await probe(any.port, ["-tls1_3"])).protocol, "TLSv1.3");
      // With and without SNI: the context SNICallback picks carries the versions too.
      assert.equal((await probe(only13.port, ["-tls1_2"])).protocol, "");
      assert.equal((await probe(only13.port, ["-tls1_2", "-servername", "a.test"])).protocol, "");
      assert.equal(
        (await probe(only13.port, ["-tls1_3", "-servername", "a.test"])).protocol,
        "TLSv1.3",
      );
      assert.equal((await probe(only13.port, ["-tls1_3"])).protocol, "TLSv1.3");
      assert.equal((await probe(only12.port, ["-tls1_3"])).protocol, "");
      assert.equal((await probe(only12.port, ["-tls1_3", "-servername", "a.test"])).protocol, "");
      assert.equal((await probe(only12.port, ["-tls1_2"])).protocol, "TLSv1.2");
    } finally {
      any.close();
      only13.close();
      only12.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "Deno's node:tls ignores ciphers and ecdhCurve (why those settings are refused unless they allow all Deno uses)",
  ...noLeaks,
}, async () => {
  // If this fails, Deno started honouring them: pass them through and relax shared/tls_options.ts.
  const dir = await Deno.makeTempDir();
  try {
    const ca = await makeCa(dir, "ca");
    const rsa = await makeLeaf(dir, "rsa", { ca, sans: ["DNS:a.test"], kind: "rsa" });
    const server = tls.createServer({
      cert: rsa.certPem,
      key: rsa.keyPem,
      ciphers: "ECDHE-RSA-AES128-GCM-SHA256",
      ecdhCurve: "P-384",
    }, (s: tls.TLSSocket) => s.end("hi\n"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const port = (server.address() as { port: number }).port;
    try {
      const c = await probe(port, ["-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"]);
      assert.equal(c.cipher, "ECDHE-RSA-AES256-GCM-SHA384", "a cipher outside `ciphers` was used");
      const g = await probe(port, ["-tls1_3", "-groups", "X25519"]);
      assert.match(g.group, /X25519/, "a group outside `ecdhCurve` was used");
      // And what Deno negotiates at all: not P-521 (so a list needs X25519, P-256, P-384).
      assert.equal((await probe(port, ["-tls1_3", "-groups", "P-521"])).protocol, "");
      assert.match((await probe(port, ["-tls1_3", "-groups", "P-384"])).group, /secp384r1/);
    } finally {
      server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const parse = (env: Record<string, string>) =>
  parseConfig("interceptor", interceptorEnvSchema(), env);
const problems = (env: Record<string, string>): string => {
  try {
    parse(env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.join("\n");
    throw e;
  }
  return "";
};

Deno.test("TLS options: Go's spellings parsed; what Deno cannot honour is refused at start, naming why", () => {
  const allTls12 = DENO_TLS12_SUITES.join(",");
  // Versions: "1.2" and "1.3" only, as Go HEAD's parseTLSVersion.
  assert.equal(parse({ KEDA_HTTP_PROXY_TLS_MIN_VERSION: "1.3" }).tls.minVersion, "1.3");
  assert.equal(parse({}).tls.maxVersion, "");
  assert.match(
    problems({ KEDA_HTTP_PROXY_TLS_MIN_VERSION: "TLS1.2" }),
    /KEDA_HTTP_PROXY_TLS_MIN_VERSION="TLS1.2": "TLS1.2" is not a TLS version: use 1.2 or 1.3/,
  );
  assert.match(
    problems({ KEDA_HTTP_PROXY_TLS_MIN_VERSION: "1.3", KEDA_HTTP_PROXY_TLS_MAX_VERSION: "1.2" }),
    /no TLS version is left/,
  );
  // Cipher suites: Go's names; unknown ones are named, with the accepted list.
  const unknown = problems({
    KEDA_HTTP_PROXY_TLS_CIPHER_SUITES: `${allTls12},TLS_RSA_WITH_RC4_128_SHA`,
  });
  assert.match(
    unknown,
    /KEDA_HTTP_PROXY_TLS_CIPHER_SUITES=.*unknown cipher suite TLS_RSA_WITH_RC4_128_SHA: use Go's names, one of TLS_AES_128_GCM_SHA256, /,
  );
  assert.match(unknown, /TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256/);
  // A restriction Deno would not apply is refused, naming what is left out.
  const narrow = problems({
    KEDA_HTTP_PROXY_TLS_CIPHER_SUITES: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
  });
  assert.match(narrow, /Deno's TLS cannot be restricted to these cipher suites/);
  assert.match(narrow, /leaves out TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, /);
  // Allowing all Deno negotiates (extra CBC and TLS 1.3 names change nothing, as in Go): accepted.
  assert.equal(
    problems({
      KEDA_HTTP_PROXY_TLS_CIPHER_SUITES:
        `${allTls12},TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,TLS_AES_128_GCM_SHA256`,
    }),
    "",
  );
  // With TLS 1.3 only no TLS 1.2 suite is ever negotiated: any of Go's names will do.
  assert.equal(
    problems({
      KEDA_HTTP_PROXY_TLS_MIN_VERSION: "1.3",
      KEDA_HTTP_PROXY_TLS_CIPHER_SUITES: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    }),
    "",
  );
  // Curves: Go's constant and standard names; X25519MLKEM768 needed only while TLS 1.3 is allowed.
  assert.match(
    problems({ KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES: "X25519,secp256r1" }),
    /unknown curve secp256r1: use one of CurveP256, CurveP384, CurveP521, X25519, X25519MLKEM768, P-256/,
  );
  assert.match(
    problems({ KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES: "X25519,CurveP256" }),
    /Deno's TLS cannot be restricted to these curves .* leaves out CurveP384, X25519MLKEM768/,
  );
  assert.equal(
    problems({ KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES: "X25519MLKEM768,X25519,P-256,P-384,P-521" }),
    "",
  );
  assert.equal(
    problems({
      KEDA_HTTP_PROXY_TLS_MAX_VERSION: "1.2",
      KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES: "X25519,CurveP256,CurveP384",
    }),
    "",
  );
});

Deno.test("TLS certificate paths: Go's /certs defaults, the store alone, and clear start errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // (No /certs here: the defaults are missing.)
    const none = problems({ KEDA_HTTP_PROXY_TLS_ENABLED: "true" });
    assert.match(none, /KEDA_HTTP_PROXY_TLS_ENABLED="true": TLS is enabled but no certificate/);
    assert.match(none, /the default \/certs\/tls\.crt and \/certs\/tls\.key are missing/);
    // The cert store alone still works: no default certificate then.
    const storeOnly = parse({
      KEDA_HTTP_PROXY_TLS_ENABLED: "true",
      KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS: dir,
    });
    assert.deepEqual([storeOnly.tls.certPath, storeOnly.tls.keyPath], ["", ""]);
    // A path that is set must exist.
    assert.match(
      problems({
        KEDA_HTTP_PROXY_TLS_ENABLED: "true",
        KEDA_HTTP_PROXY_TLS_CERT_PATH: `${dir}/nope.crt`,
        KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS: dir,
      }),
      /KEDA_HTTP_PROXY_TLS_CERT_PATH=".*nope\.crt": cannot read .*nope\.crt[\s\S]*KEDA_HTTP_PROXY_TLS_KEY_PATH: cannot read \/certs\/tls\.key/,
    );
    await Deno.writeTextFile(`${dir}/c.crt`, "x");
    await Deno.writeTextFile(`${dir}/c.key`, "x");
    const set = parse({
      KEDA_HTTP_PROXY_TLS_ENABLED: "true",
      KEDA_HTTP_PROXY_TLS_CERT_PATH: `${dir}/c.crt`,
      KEDA_HTTP_PROXY_TLS_KEY_PATH: `${dir}/c.key`,
    });
    assert.deepEqual([set.tls.certPath, set.tls.keyPath], [`${dir}/c.crt`, `${dir}/c.key`]);
    // TLS off: nothing is checked.
    assert.equal(parse({}).tls.certPath, "");
    // The upstream CA directory must be a directory.
    assert.match(
      problems({ KEDA_HTTP_UPSTREAM_CA_DIR: `${dir}/c.crt` }),
      /KEDA_HTTP_UPSTREAM_CA_DIR=.*: is not a directory; set it to a directory of PEM CA certificates/,
    );
    assert.equal(parse({ KEDA_HTTP_PROXY_TLS_SKIP_VERIFY: "true" }).upstreamTls.skipVerify, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cert store pairs as Go HEAD: <id>.crt|.pem with <id>.key or <id>-key.pem", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ca = await makeCa(dir, "ca");
    await Deno.mkdir(`${dir}/store`);
    const s = `${dir}/store`;
    await makeLeaf(s, "p", { ca, sans: ["DNS:p.test"], certExt: ".pem", keyExt: "-key.pem" });
    await makeLeaf(s, "c", { ca, sans: ["DNS:c.test"], keyExt: "-key.pem" });
    await makeLeaf(s, "k", { ca, sans: ["DNS:k.test"], certExt: ".pem" });
    // Both key spellings: <id>.key wins (Go's walk order gives the same).
    await makeLeaf(s, "both", { ca, sans: ["DNS:both.test"] });
    await Deno.copyFile(`${s}/both.key`, `${s}/both-key.pem`);
    // A CA bundle without a key is no pair (Go would refuse to start on it).
    await Deno.copyFile(ca.cert, `${s}/ca.crt`);
    const { pairs, problems } = loadCertStore([s]);
    assert.deepEqual(problems, []);
    const got = pairs.map((p) => [p.certFile.slice(s.length + 1), p.keyFile.slice(s.length + 1)])
      .sort();
    assert.deepEqual(got, [
      ["both.crt", "both.key"],
      ["c.crt", "c-key.pem"],
      ["k.pem", "k.key"],
      ["p.pem", "p-key.pem"],
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "IP and URI SANs are indexed beside DNS ones, for an SNI equal to them, as Go",
  ...noLeaks,
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ca = await makeCa(dir, "ca");
    const leaf = await makeLeaf(dir, "ip", {
      ca,
      sans: [
        "DNS:ip.test",
        "IP:127.0.0.1",
        "IP:fe80:0:0:0:0:0:0:1",
        "URI:spiffe://cluster.local/ns/a",
      ],
    });
    assert.deepEqual(certNames(leaf.certPem), [
      "ip.test",
      "127.0.0.1",
      "fe80::1",
      "spiffe://cluster.local/ns/a",
    ]);
    const sel = new CertSelector<string>("default");
    sel.add(certNames(leaf.certPem), "ip");
    assert.equal(sel.select("127.0.0.1"), "ip");
    assert.equal(sel.select("fe80::1"), "ip");
    assert.equal(sel.select("spiffe://cluster.local/ns/a"), "ip");
    assert.equal(sel.select("127.0.0.2"), "default");
    // Through a real listener: Deno's TLS (rustls) drops an IP sent as SNI (RFC 6066 forbids it),
    // so such a client gets the default certificate; Go would match the IP SAN.
    const other = await makeLeaf(dir, "other", { ca, sans: ["DNS:other.test"] });
    await Deno.mkdir(`${dir}/store`);
    await Deno.copyFile(leaf.cert, `${dir}/store/ip.crt`);
    await Deno.copyFile(leaf.key, `${dir}/store/ip.key`);
    const server = await listener(other, { certStorePaths: [`${dir}/store`] });
    try {
      const subject = async (sni: string) => {
        const out = await new Deno.Command("openssl", {
          args: ["s_client", "-connect", `127.0.0.1:${server.port}`, "-servername", sni],
          stdin: "null",
          stdout: "piped",
          stderr: "null",
        }).output();
        return /subject=.*CN\s*=\s*(\S+)/.exec(new TextDecoder().decode(out.stdout))?.[1];
      };
      assert.equal(await subject("127.0.0.1"), "other");
      assert.equal(await subject("ip.test"), "ip");
      assert.equal(await subject("other.test"), "other");
    } finally {
      server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
