/**
 * TLS termination for the proxy port: certificates from
 * KEDA_HTTP_PROXY_TLS_CERT_PATH/KEY_PATH (the default) and from the
 * directories in KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS, picked per connection
 * by SNI: an exact SAN first, then a wildcard SAN ("*.example.com" covers one
 * label, as RFC 6125 says), then the default. IP and URI SANs are indexed
 * as names too, as Go does: they match an SNI equal to their text (Go does
 * not look at the local address; RFC 6066 SNI never carries an IP, so in
 * practice only non-conforming clients hit them). Deno.listenTls has no SNI
 * hook, so this uses node:tls and adapts its sockets to the data plane's
 * ByteConn. Files are re-read every minute so rotated certificates apply.
 * ALPN offers h2 then http/1.1, as Go's server does.
 */
import tls from "node:tls";
import { X509Certificate } from "node:crypto";
import type { Logger } from "../shared/log.ts";
import { certStoreFiles } from "./cert_files.ts";
import type { ByteConn } from "./conn_io.ts";
import type { TlsSettings } from "./dataplane_protocol.ts";

export interface CertPair {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
  /** Lower-case DNS names, IPs and URIs from the SANs (or the CN when there are none). */
  names: string[];
}

/** node:crypto's subjectAltName: "DNS:a, IP Address:1.2.3.4, URI:x"; values with ", " are JSON-quoted. */
const SAN_ENTRY = /(DNS|IP Address|URI|[A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;

/** An IP as Go's net.IP.String() prints it (IPv6 compressed, lower case). */
function ipText(raw: string): string {
  if (!raw.includes(":")) return raw;
  try {
    return new URL(`http://[${raw}]/`).hostname.slice(1, -1);
  } catch {
    return raw.toLowerCase();
  }
}

/** Names a certificate is indexed under: DNS SANs, then IP SANs, then URI SANs (Go's addCert). */
export function certNames(pem: string): string[] {
  const x = new X509Certificate(pem);
  const dns: string[] = [];
  const ips: string[] = [];
  const uris: string[] = [];
  for (const m of (x.subjectAltName ?? "").matchAll(SAN_ENTRY)) {
    let v = m[2]!;
    if (v.startsWith('"')) {
      try {
        v = JSON.parse(v) as string;
      } catch {
        continue;
      }
    }
    if (m[1] === "DNS") dns.push(v.toLowerCase());
    else if (m[1] === "IP Address") ips.push(ipText(v));
    else if (m[1] === "URI") uris.push(v);
  }
  const names = [...dns, ...ips, ...uris];
  if (names.length === 0) {
    const cn = /(?:^|\n|,\s*)CN=([^\n,]+)/.exec(x.subject ?? "");
    if (cn) names.push(cn[1]!.trim().toLowerCase());
  }
  return names;
}

/**
 * Finds cert/key pairs: "<name>.crt|.pem|.cert" next to "<name>.key" or
 * "<name>-key.pem" (cert_files.ts).
 */
export function loadCertStore(paths: string[]): { pairs: CertPair[]; problems: string[] } {
  const pairs: CertPair[] = [];
  const { pairs: files, problems } = certStoreFiles(paths);
  for (const { certFile, keyFile } of files) {
    try {
      const cert = Deno.readTextFileSync(certFile);
      const key = Deno.readTextFileSync(keyFile);
      pairs.push({ certFile, keyFile, cert, key, names: certNames(cert) });
    } catch (e) {
      problems.push(`${certFile}: ${(e as Error).message}`);
    }
  }
  return { pairs, problems };
}

/** Picks the certificate for a server name: exact, then wildcard, then default. */
export class CertSelector<T> {
  readonly #exact = new Map<string, T>();
  readonly #wildcard = new Map<string, T>();

  constructor(readonly fallback: T | undefined) {}

  add(names: string[], value: T): void {
    for (const n of names) {
      if (n.startsWith("*.")) {
        if (!this.#wildcard.has(n.slice(2))) this.#wildcard.set(n.slice(2), value);
      } else if (!this.#exact.has(n)) this.#exact.set(n, value);
    }
  }

  select(serverName: string | undefined): T | undefined {
    if (!serverName) return this.fallback;
    const name = serverName.toLowerCase().replace(/\.$/, "");
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf(".");
    if (dot > 0) {
      const w = this.#wildcard.get(name.slice(dot + 1));
      if (w !== undefined) return w;
    }
    return this.fallback;
  }
}

type Ctx = ReturnType<typeof tls.createSecureContext>;

/** The versions go in every context: the one SNICallback picks replaces the server's (tls_test.ts). */
function contextOf(settings: TlsSettings, cert: string, key: string): Ctx {
  return tls.createSecureContext({ cert, key, ...versionsOf(settings) });
}

function versionsOf(s: TlsSettings): Pick<tls.SecureContextOptions, "minVersion" | "maxVersion"> {
  return {
    ...(s.minVersion ? { minVersion: s.minVersion } : {}),
    ...(s.maxVersion ? { maxVersion: s.maxVersion } : {}),
  };
}

interface Loaded {
  selector: CertSelector<Ctx>;
  /** The default certificate, for clients that send no SNI. */
  fallbackPem: { cert: string; key: string };
}

function buildSelector(settings: TlsSettings, log: Logger): Loaded {
  let fallback: Ctx | undefined;
  let fallbackPem: { cert: string; key: string } | undefined;
  const fallbackPair: CertPair[] = [];
  if (settings.certPath && settings.keyPath) {
    const cert = Deno.readTextFileSync(settings.certPath);
    const key = Deno.readTextFileSync(settings.keyPath);
    fallback = contextOf(settings, cert, key);
    fallbackPem = { cert, key };
    fallbackPair.push({
      certFile: settings.certPath,
      keyFile: settings.keyPath,
      cert,
      key,
      names: certNames(cert),
    });
  }
  const { pairs, problems } = loadCertStore(settings.certStorePaths);
  for (const p of problems) log.warn("TLS certificate not loaded", { problem: p });
  if (!fallback && pairs[0]) {
    fallback = contextOf(settings, pairs[0].cert, pairs[0].key);
    fallbackPem = { cert: pairs[0].cert, key: pairs[0].key };
  }
  if (!fallback || !fallbackPem) {
    throw new Error(
      "TLS is enabled but no certificate was found: set KEDA_HTTP_PROXY_TLS_CERT_PATH and KEDA_HTTP_PROXY_TLS_KEY_PATH, or put <name>.crt and <name>.key files in KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS",
    );
  }
  const sel = new CertSelector<Ctx>(fallback);
  for (const p of [...fallbackPair, ...pairs]) {
    sel.add(p.names, contextOf(settings, p.cert, p.key));
  }
  return { selector: sel, fallbackPem };
}

/** A node:tls socket as a ByteConn. */
export class TlsSocketConn implements ByteConn {
  readonly #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #wake: (() => void) | null = null;

  constructor(readonly socket: tls.TLSSocket) {
    socket.on("data", (d: Uint8Array) => {
      this.#chunks.push(d);
      this.#queued += d.length;
      // Backpressure: stop reading from the network while we are behind.
      if (this.#queued > 256 * 1024) socket.pause();
      this.#notify();
    });
    const end = () => {
      this.#ended = true;
      this.#notify();
    };
    socket.on("end", end);
    socket.on("close", end);
    socket.on("error", end);
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    let n = 0;
    while (n < p.length && this.#chunks.length > 0) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.length, p.length - n);
      p.set(c.subarray(0, k), n);
      n += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    this.#queued -= n;
    if (this.#queued < 64 * 1024 && this.socket.isPaused()) this.socket.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.socket.destroyed) {
        reject(new Error("connection closed"));
        return;
      }
      this.socket.write(p, (err?: Error | null) => (err ? reject(err) : resolve(p.length)));
    });
  }

  close(): void {
    this.socket.destroy();
    this.#ended = true;
    this.#notify();
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.socket.end(() => resolve()));
  }
}

/**
 * A TLS connection to an app without verifying its certificate
 * (KEDA_HTTP_PROXY_TLS_SKIP_VERIFY): Deno.startTls always checks the chain,
 * node:tls can skip it. SNI is still `servername`.
 */
export function connectUnverified(opts: {
  ip: string;
  port: number;
  servername: string;
  alpn: string[];
  timeoutMs: number;
}): Promise<ByteConn> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: opts.ip,
      port: opts.port,
      servername: opts.servername,
      rejectUnauthorized: false,
      ALPNProtocols: opts.alpn,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no TLS handshake within ${opts.timeoutMs}ms`));
    }, opts.timeoutMs);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      resolve(new TlsSocketConn(socket));
    });
    socket.once("error", (e: Error) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

export interface TlsServer {
  port: number;
  close(): void;
}

export async function startTlsServer(opts: {
  hostname: string;
  settings: TlsSettings;
  log: Logger;
  /** `h2`: the client chose HTTP/2 by ALPN. */
  onConnection: (conn: ByteConn, remoteIp: string, h2: boolean) => void;
}): Promise<TlsServer> {
  let loaded = buildSelector(opts.settings, opts.log);
  const server = tls.createServer({
    ...loaded.fallbackPem,
    // Honoured by Deno (tls_test.ts); ciphers and ecdhCurve are not (shared/tls_options.ts).
    ...versionsOf(opts.settings),
    SNICallback: (name: string, cb: (err: Error | null, ctx?: Ctx) => void) =>
      cb(null, loaded.selector.select(name)),
    // HTTP/2 first, as Go's server offers them.
    ALPNProtocols: ["h2", "http/1.1"],
  }, (socket: tls.TLSSocket) => {
    socket.setNoDelay(true);
    opts.onConnection(
      new TlsSocketConn(socket),
      socket.remoteAddress ?? "",
      socket.alpnProtocol === "h2",
    );
  });
  server.on("tlsClientError", (e: Error) => opts.log.debug("TLS handshake failed", { error: e }));
  const reload = setInterval(() => {
    try {
      loaded = buildSelector(opts.settings, opts.log);
      server.setSecureContext({ ...loaded.fallbackPem, ...versionsOf(opts.settings) });
    } catch (e) {
      opts.log.warn("TLS certificates not reloaded; keeping the previous ones", { error: e });
    }
  }, 60_000);
  Deno.unrefTimer(reload as unknown as number);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.settings.port, opts.hostname, () => resolve());
  });
  const addr = server.address();
  return {
    port: typeof addr === "object" && addr ? addr.port : opts.settings.port,
    close() {
      clearInterval(reload);
      server.close();
    },
  };
}
