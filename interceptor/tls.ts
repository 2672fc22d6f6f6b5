/**
 * TLS termination for the proxy port: certificates from
 * KEDA_HTTP_PROXY_TLS_CERT_PATH/KEY_PATH (the default) and from the
 * directories in KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS, picked per connection
 * by SNI: an exact SAN first, then a wildcard SAN ("*.example.com" covers one
 * label, as RFC 6125 says), then the default. Deno.listenTls has no SNI
 * hook, so this uses node:tls and adapts its sockets to the data plane's
 * ByteConn. Files are re-read every minute so rotated certificates apply.
 */
import tls from "node:tls";
import { X509Certificate } from "node:crypto";
import type { Logger } from "../shared/log.ts";
import type { ByteConn } from "./conn_io.ts";
import type { TlsSettings } from "./dataplane_protocol.ts";

export interface CertPair {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
  /** Lower-case DNS names from the SANs (or the CN when there are none). */
  names: string[];
}

const CERT_EXT = [".crt", ".pem", ".cert"];

/** DNS names a certificate is valid for. */
export function certNames(pem: string): string[] {
  const x = new X509Certificate(pem);
  const names: string[] = [];
  for (const part of (x.subjectAltName ?? "").split(",")) {
    const t = part.trim();
    if (t.startsWith("DNS:")) names.push(t.slice(4).toLowerCase());
  }
  if (names.length === 0) {
    const cn = /(?:^|\n|,\s*)CN=([^\n,]+)/.exec(x.subject ?? "");
    if (cn) names.push(cn[1]!.trim().toLowerCase());
  }
  return names;
}

function walk(dir: string, depth: number, out: string[]): void {
  for (const e of Deno.readDirSync(dir)) {
    const path = `${dir}/${e.name}`;
    // Kubernetes Secret volumes link files through "..data"; follow links to files.
    let isDir = e.isDirectory;
    let isFile = e.isFile;
    if (e.isSymlink) {
      try {
        const st = Deno.statSync(path);
        isDir = st.isDirectory;
        isFile = st.isFile;
      } catch {
        continue;
      }
    }
    if (isFile) out.push(path);
    else if (isDir && depth > 0 && !e.name.startsWith("..")) walk(path, depth - 1, out);
  }
}

/** Finds cert/key pairs: "<name>.crt|.pem|.cert" next to "<name>.key". */
export function loadCertStore(paths: string[]): { pairs: CertPair[]; problems: string[] } {
  const pairs: CertPair[] = [];
  const problems: string[] = [];
  for (const root of paths) {
    const files: string[] = [];
    try {
      const st = Deno.statSync(root);
      if (st.isDirectory) walk(root, 3, files);
      else files.push(root);
    } catch (e) {
      problems.push(`${root}: ${(e as Error).message}`);
      continue;
    }
    const set = new Set(files);
    for (const f of files) {
      const ext = CERT_EXT.find((x) => f.endsWith(x));
      if (!ext) continue;
      const keyFile = f.slice(0, -ext.length) + ".key";
      if (!set.has(keyFile)) continue;
      try {
        const cert = Deno.readTextFileSync(f);
        const key = Deno.readTextFileSync(keyFile);
        pairs.push({ certFile: f, keyFile, cert, key, names: certNames(cert) });
      } catch (e) {
        problems.push(`${f}: ${(e as Error).message}`);
      }
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
    fallback = tls.createSecureContext({ cert, key });
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
    fallback = tls.createSecureContext({ cert: pairs[0].cert, key: pairs[0].key });
    fallbackPem = { cert: pairs[0].cert, key: pairs[0].key };
  }
  if (!fallback || !fallbackPem) {
    throw new Error(
      "TLS is enabled but no certificate was found: set KEDA_HTTP_PROXY_TLS_CERT_PATH and KEDA_HTTP_PROXY_TLS_KEY_PATH, or put <name>.crt and <name>.key files in KEDA_HTTP_PROXY_TLS_CERT_STORE_PATHS",
    );
  }
  const sel = new CertSelector<Ctx>(fallback);
  for (const p of [...fallbackPair, ...pairs]) {
    sel.add(p.names, tls.createSecureContext({ cert: p.cert, key: p.key }));
  }
  return { selector: sel, fallbackPem };
}

/** A node:tls socket as a ByteConn. */
class TlsSocketConn implements ByteConn {
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
      server.setSecureContext(loaded.fallbackPem);
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
