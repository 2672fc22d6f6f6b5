/**
 * Certificates for the local cluster, made with the openssl CLI (fast ECDSA
 * P-256 keys, PKCS#8 so both Go and rustls read them):
 *  - ca: signs the apiserver serving cert and all client certs (also the
 *    controller-manager's cluster-signing CA);
 *  - apiserver serving cert with the SANs pods and the host use;
 *  - admin client cert (O=system:masters) for the kubeconfig;
 *  - service-account signing key pair;
 *  - front-proxy CA and client cert for the aggregation layer.
 */

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  servingCert: string;
  servingKey: string;
  adminCert: string;
  adminKey: string;
  saKey: string;
  saPub: string;
  frontProxyCaCert: string;
  frontProxyCaKey: string;
  frontProxyClientCert: string;
  frontProxyClientKey: string;
}

async function openssl(args: string[], what: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(
      `openssl failed to ${what}: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
}

async function genKey(path: string): Promise<void> {
  await openssl(
    ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path],
    `generate key ${path}`,
  );
}

interface CertSpec {
  cn: string;
  o?: string;
  ca?: boolean;
  server?: boolean;
  client?: boolean;
  dns?: string[];
  ips?: string[];
}

function configFor(spec: CertSpec): string {
  const ext: string[] = [];
  if (spec.ca) {
    ext.push("basicConstraints = critical,CA:TRUE", "keyUsage = critical,keyCertSign,cRLSign");
  } else {
    ext.push(
      "basicConstraints = critical,CA:FALSE",
      "keyUsage = critical,digitalSignature,keyEncipherment",
    );
    const eku = [spec.server ? "serverAuth" : "", spec.client ? "clientAuth" : ""].filter(
      Boolean,
    );
    if (eku.length) ext.push(`extendedKeyUsage = ${eku.join(",")}`);
    const sans = [
      ...(spec.dns ?? []).map((d) => `DNS:${d}`),
      ...(spec.ips ?? []).map((i) => `IP:${i}`),
    ];
    if (sans.length) ext.push(`subjectAltName = ${sans.join(",")}`);
    ext.push("authorityKeyIdentifier = keyid");
  }
  ext.push("subjectKeyIdentifier = hash");
  return [
    "[req]",
    "distinguished_name = dn",
    "prompt = no",
    "x509_extensions = ext",
    "[dn]",
    `CN = ${spec.cn}`,
    ...(spec.o ? [`O = ${spec.o}`] : []),
    "[ext]",
    ...ext,
    "",
  ].join("\n");
}

async function makeCert(
  dir: string,
  name: string,
  spec: CertSpec,
  issuer?: { cert: string; key: string },
): Promise<{ cert: string; key: string }> {
  const key = `${dir}/${name}.key`;
  const cert = `${dir}/${name}.crt`;
  const cnf = `${dir}/${name}.cnf`;
  await genKey(key);
  await Deno.writeTextFile(cnf, configFor(spec));
  const args = ["req", "-x509", "-new", "-config", cnf, "-key", key, "-days", "3650", "-out", cert];
  if (issuer) args.push("-CA", issuer.cert, "-CAkey", issuer.key);
  await openssl(args, `issue certificate ${name}`);
  await Deno.remove(cnf);
  return { cert, key };
}

export async function generatePki(dir: string, serving: { ips: string[] }): Promise<Pki> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const [ca, frontCa] = await Promise.all([
    makeCert(dir, "ca", { cn: "keda-http-deno-ca", ca: true }),
    makeCert(dir, "front-proxy-ca", { cn: "keda-http-deno-front-proxy-ca", ca: true }),
  ]);
  const saKey = `${dir}/sa.key`;
  const saPub = `${dir}/sa.pub`;
  const [servingPair, admin, frontClient] = await Promise.all([
    makeCert(dir, "apiserver", {
      cn: "kube-apiserver",
      server: true,
      dns: [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
      ],
      ips: serving.ips,
    }, ca),
    makeCert(dir, "admin", { cn: "kubernetes-admin", o: "system:masters", client: true }, ca),
    makeCert(dir, "front-proxy-client", { cn: "front-proxy-client", client: true }, frontCa),
    genKey(saKey).then(() =>
      openssl(["pkey", "-in", saKey, "-pubout", "-out", saPub], "write the SA public key")
    ),
  ]);
  return {
    dir,
    caCert: ca.cert,
    caKey: ca.key,
    servingCert: servingPair.cert,
    servingKey: servingPair.key,
    adminCert: admin.cert,
    adminKey: admin.key,
    saKey,
    saPub,
    frontProxyCaCert: frontCa.cert,
    frontProxyCaKey: frontCa.key,
    frontProxyClientCert: frontClient.cert,
    frontProxyClientKey: frontClient.key,
  };
}

function b64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** A kubeconfig with the certificates embedded, so it can be copied anywhere. */
export async function kubeconfigText(
  pki: Pki,
  server: string,
  name = "keda-http-deno",
): Promise<string> {
  const [ca, cert, key] = await Promise.all([
    Deno.readTextFile(pki.caCert),
    Deno.readTextFile(pki.adminCert),
    Deno.readTextFile(pki.adminKey),
  ]);
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: ${name}`,
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(ca)}`,
    "users:",
    `- name: ${name}-admin`,
    "  user:",
    `    client-certificate-data: ${b64(cert)}`,
    `    client-key-data: ${b64(key)}`,
    "contexts:",
    `- name: ${name}`,
    "  context:",
    `    cluster: ${name}`,
    `    user: ${name}-admin`,
    "    namespace: default",
    `current-context: ${name}`,
    "",
  ].join("\n");
}
