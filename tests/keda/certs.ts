/**
 * Certificates for KEDA when its own rotator is off (--enable-cert-rotation=
 * false): one CA and one key pair that the operator's gRPC metrics service
 * (9666), the metrics API server's gRPC client (mutual TLS) and the metrics
 * API server's HTTPS port (the aggregation layer) all use — the same layout
 * KEDA's rotator writes into the `kedaorg-certs` Secret (ca.crt, tls.crt,
 * tls.key), with the same DNS names (pkg/certificates: getDNSNames).
 */

export interface KedaCerts {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** The Services whose names the certificate covers (KEDA's defaults). */
export const KEDA_CERT_SERVICES = ["keda-operator", "keda-metrics-apiserver"] as const;

/** Every name KEDA's rotator puts in its certificate, for the given namespace. */
export function kedaDnsNames(
  namespace: string,
  clusterDomain = "cluster.local",
  services: readonly string[] = KEDA_CERT_SERVICES,
): string[] {
  return services.flatMap((s) => [
    s,
    `${s}.${namespace}`,
    `${s}.${namespace}.svc`,
    `${s}.${namespace}.svc.${clusterDomain}`,
  ]);
}

async function openssl(args: string[], what: string, signal?: AbortSignal): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped", signal })
      .output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error("the openssl command is needed to make KEDA's certificates; install it");
    }
    throw e;
  }
  if (!out.success) {
    throw new Error(`openssl failed to ${what}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/**
 * A fresh CA (CN KEDA, O KEDAORG, as KEDA's rotator names it) and a leaf
 * certificate for serverAuth and clientAuth with KEDA's DNS names. Keys are
 * ECDSA P-256 in PKCS#8, which Go's crypto/tls reads.
 */
export async function generateKedaCerts(
  options: { namespace: string; clusterDomain?: string; days?: number; signal?: AbortSignal },
): Promise<KedaCerts> {
  const dir = await Deno.makeTempDir({ prefix: "keda-certs-" });
  const days = String(options.days ?? 3650);
  const key = (name: string) =>
    openssl(
      [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        `${dir}/${name}`,
      ],
      `generate ${name}`,
      options.signal,
    );
  /**
   * `<name>.crt` for `<name>.key` (O KEDAORG, the given CN and x509v3
   * extensions), self-signed or signed by the CA.
   */
  const issue = async (
    cert: { name: string; cn: string; ext: string[]; signedByCa?: boolean; what: string },
  ) => {
    const file = (ending: string) => `${dir}/${cert.name}.${ending}`;
    await Deno.writeTextFile(
      file("cnf"),
      [
        "[req]",
        "distinguished_name = dn",
        "prompt = no",
        "x509_extensions = ext",
        "[dn]",
        `CN = ${cert.cn}`,
        "O = KEDAORG",
        "[ext]",
        ...cert.ext,
        "",
      ].join("\n"),
    );
    const signer = cert.signedByCa ? ["-CA", `${dir}/ca.crt`, "-CAkey", `${dir}/ca.key`] : [];
    await openssl(
      [
        "req",
        "-x509",
        "-new",
        "-config",
        file("cnf"),
        "-key",
        file("key"),
        ...signer,
        "-days",
        days,
        "-out",
        file("crt"),
      ],
      cert.what,
      options.signal,
    );
  };
  try {
    await Promise.all([key("ca.key"), key("tls.key")]);
    await issue({
      name: "ca",
      cn: "KEDA",
      ext: [
        "basicConstraints = critical,CA:TRUE",
        "keyUsage = critical,keyCertSign,cRLSign,digitalSignature",
        "subjectKeyIdentifier = hash",
      ],
      what: "issue the KEDA CA",
    });
    const names = kedaDnsNames(options.namespace, options.clusterDomain);
    await issue({
      name: "tls",
      cn: names[0]!,
      ext: [
        "basicConstraints = critical,CA:FALSE",
        "keyUsage = critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage = serverAuth,clientAuth",
        `subjectAltName = ${names.map((n) => `DNS:${n}`).join(",")}`,
        "subjectKeyIdentifier = hash",
        "authorityKeyIdentifier = keyid",
      ],
      signedByCa: true,
      what: "issue KEDA's serving/client certificate",
    });
    const [caPem, certPem, keyPem] = await Promise.all(
      ["ca.crt", "tls.crt", "tls.key"].map((f) => Deno.readTextFile(`${dir}/${f}`)),
    );
    return { caPem: caPem!, certPem: certPem!, keyPem: keyPem! };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
