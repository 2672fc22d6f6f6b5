/**
 * TLS to HTTPS apps: a target whose Service port has appProtocol https, and
 * (as in Go HEAD, whose TLS listener rewrites every upstream URL to https)
 * every request that came in over TLS, except to h2c ports, which declare
 * cleartext. The TCP connection goes to the pod (or cluster) IP while SNI
 * and verification use the Service host "<service>.<namespace>", as Go's
 * dialer does. Trusted: Deno's roots, the cluster CA from the service
 * account, every PEM in KEDA_HTTP_UPSTREAM_CA_DIR, and (as Go) the listener's
 * own certificates. KEDA_HTTP_PROXY_TLS_SKIP_VERIFY skips verification.
 */
import type { InterceptorConfig } from "../shared/config.ts";
import { certStoreFiles, pemCertificates } from "./cert_files.ts";
import type { ByteConn } from "./conn_io.ts";
import type { UpstreamTlsConfig } from "./proxy_contract.ts";

/** The cluster CA the kubelet mounts into every pod; trusted for HTTPS apps when present. */
export const SERVICE_ACCOUNT_CA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/** A TLS handshake with an app failed: not worth retrying until the connect deadline. */
export class UpstreamTlsError extends Error {
  constructor(message: string, readonly verification: boolean) {
    super(message);
    this.name = "UpstreamTlsError";
  }
}

function readPem(path: string, into: string[], notes: string[], what: string): void {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    notes.push(`${what} ${path} not read: ${(e as Error).message}`);
    return;
  }
  const certs = pemCertificates(text);
  if (certs.length === 0) {
    notes.push(`${what} ${path} skipped: no PEM certificate in it`);
    return;
  }
  into.push(...certs);
  notes.push(`${what} ${path}: ${certs.length} certificate${certs.length > 1 ? "s" : ""}`);
}

/** Files directly in `dir` (links followed; Secret volumes' "..data" entries skipped). */
function filesIn(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    if (e.name.startsWith(".")) continue;
    const path = `${dir}/${e.name}`;
    try {
      if (Deno.statSync(path).isFile) out.push(path);
    } catch {
      // A dangling link.
    }
  }
  return out.sort();
}

/** The trust for HTTPS apps, read once at start (config parsing checked the paths). */
export function upstreamTlsOf(
  c: Pick<InterceptorConfig, "tls" | "upstreamTls">,
  serviceAccountCa = SERVICE_ACCOUNT_CA_PATH,
): UpstreamTlsConfig {
  const caCerts: string[] = [];
  const notes: string[] = [];
  try {
    if (Deno.statSync(serviceAccountCa).isFile) {
      readPem(serviceAccountCa, caCerts, notes, "cluster CA");
    }
  } catch {
    // Not in a pod, or automountServiceAccountToken is off.
  }
  const dir = c.upstreamTls.caDir;
  if (dir !== "") {
    try {
      for (const f of filesIn(dir)) readPem(f, caCerts, notes, "CA file");
    } catch (e) {
      notes.push(`KEDA_HTTP_UPSTREAM_CA_DIR ${dir} not read: ${(e as Error).message}`);
    }
  }
  if (c.tls.enabled) {
    // Go adds the serving certificates to the roots it verifies apps with.
    if (c.tls.certPath !== "") readPem(c.tls.certPath, caCerts, notes, "serving certificate");
    for (const p of certStoreFiles(c.tls.certStorePaths).pairs) {
      readPem(p.certFile, caCerts, notes, "cert store certificate");
    }
  }
  return { caCerts, skipVerify: c.upstreamTls.skipVerify, notes };
}

function looksLikeVerification(message: string): boolean {
  return /certificate|UnknownIssuer|NotValidForName|CaUsedAsEndEntity|Expired/i.test(message);
}

/**
 * A TLS connection to an app at `ip`:`port`, verified as `serverName`
 * (Deno.startTls over a TCP connection to the IP: hostname there is only
 * SNI and the name checked). The handshake is complete when this resolves.
 */
export async function connectTls(opts: {
  ip: string;
  port: number;
  serverName: string;
  config: UpstreamTlsConfig | undefined;
  timeoutMs: number;
  alpn?: string[];
}): Promise<Deno.TlsConn | ByteConn> {
  const alpn = opts.alpn ?? ["http/1.1"];
  if (opts.config?.skipVerify) {
    // node:tls only here: it costs memory in every isolate that loads it (README Measured).
    const { connectUnverified } = await import("./tls.ts");
    try {
      return await connectUnverified({
        ip: opts.ip,
        port: opts.port,
        servername: opts.serverName,
        alpn,
        timeoutMs: opts.timeoutMs,
      });
    } catch (e) {
      throw new UpstreamTlsError((e as Error).message, false);
    }
  }
  const tcp = await Deno.connect({
    hostname: opts.ip,
    port: opts.port,
    signal: AbortSignal.timeout(opts.timeoutMs),
  });
  tcp.setNoDelay(true);
  let conn: Deno.TlsConn;
  try {
    conn = await Deno.startTls(tcp, {
      hostname: opts.serverName,
      caCerts: opts.config?.caCerts ?? [],
      alpnProtocols: alpn,
    });
  } catch (e) {
    try {
      tcp.close();
    } catch {
      // startTls took it.
    }
    throw new UpstreamTlsError((e as Error).message, looksLikeVerification((e as Error).message));
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      conn.handshake(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no TLS handshake within ${opts.timeoutMs}ms`)),
          opts.timeoutMs,
        );
      }),
    ]);
  } catch (e) {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
    const message = (e as Error).message;
    throw new UpstreamTlsError(message, looksLikeVerification(message));
  } finally {
    clearTimeout(timer);
  }
  return conn;
}

/** The 502 text for a failed handshake: what failed, and what to set. */
export function tlsFailureText(where: string, serverName: string, e: UpstreamTlsError): string {
  return e.verification
    ? `TLS verification of ${where} as ${serverName} failed: ${e.message}; give the app a certificate for ${serverName} from a CA the interceptor trusts (put the CA's PEM in KEDA_HTTP_UPSTREAM_CA_DIR), or set KEDA_HTTP_PROXY_TLS_SKIP_VERIFY=true`
    : `TLS handshake with ${where} as ${serverName} failed: ${e.message}; does the app serve TLS on this port? (requests that came in over TLS go to the app over TLS, as in Go, unless its Service port has appProtocol kubernetes.io/h2c)`;
}
