import assert from "node:assert/strict";
import { generateKedaCerts, kedaDnsNames } from "./certs.ts";

Deno.test("kedaDnsNames: KEDA's four spellings per Service", () => {
  assert.deepEqual(kedaDnsNames("keda", "cluster.local", ["keda-operator"]), [
    "keda-operator",
    "keda-operator.keda",
    "keda-operator.keda.svc",
    "keda-operator.keda.svc.cluster.local",
  ]);
});

async function tlsHandshake(
  certs: { caPem: string; certPem: string; keyPem: string },
  serverName: string,
): Promise<void> {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: certs.certPem,
    key: certs.keyPem,
  });
  const accepted = (async () => {
    const conn = await listener.accept();
    try {
      await conn.handshake();
    } catch {
      // The client's verdict is what the test checks.
    } finally {
      conn.close();
    }
  })();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  try {
    const tls = await Deno.startTls(tcp, { hostname: serverName, caCerts: [certs.caPem] });
    try {
      await tls.handshake();
    } finally {
      tls.close();
    }
  } finally {
    listener.close();
    await accepted;
  }
}

Deno.test("generateKedaCerts: the leaf verifies for the aggregator's and the adapter's server names", async () => {
  const certs = await generateKedaCerts({ namespace: "keda" });
  // The aggregation layer dials <svc>.<ns>.svc; KEDA's adapter dials the FQDN.
  await tlsHandshake(certs, "keda-metrics-apiserver.keda.svc");
  await tlsHandshake(certs, "keda-operator.keda.svc.cluster.local");
  await assert.rejects(tlsHandshake(certs, "keda-operator.other.svc"));
});

Deno.test("generateKedaCerts: the leaf is good for both TLS server and client auth (KEDA's mTLS)", async () => {
  const certs = await generateKedaCerts({ namespace: "keda" });
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/ca.crt`, certs.caPem);
    await Deno.writeTextFile(`${dir}/tls.crt`, certs.certPem);
    for (const purpose of ["sslserver", "sslclient"]) {
      const out = await new Deno.Command("openssl", {
        args: ["verify", "-purpose", purpose, "-CAfile", `${dir}/ca.crt`, `${dir}/tls.crt`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(
        out.success,
        `openssl verify -purpose ${purpose}: ${new TextDecoder().decode(out.stderr)}`,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
