/**
 * Certificate files on disk, without parsing them: the cert store's
 * cert/key pairs (the TLS listener serves them; HTTPS apps are verified
 * against them too, as in Go) and PEM certificate blocks. No node: imports,
 * so the main isolate can use it without loading node:tls.
 */

/** Go HEAD's cert suffixes, and ours (.cert) besides. */
const CERT_EXT = [".crt", ".pem", ".cert"];
/** Go HEAD's key suffixes for "<id><suffix>": "x.key", or "x-key.pem" (which is never a cert). */
const KEY_EXT = [".key", "-key.pem"];

export interface PairFiles {
  certFile: string;
  keyFile: string;
}

/** Files under `dir`, `depth` directory levels down; Secret volumes' links followed, "..x" skipped. */
export function walkFiles(dir: string, depth: number, out: string[]): void {
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
    else if (isDir && depth > 0 && !e.name.startsWith("..")) walkFiles(path, depth - 1, out);
  }
}

/**
 * Cert/key pairs in the store: "<id>.crt|.pem|.cert" with "<id>.key", else
 * "<id>-key.pem" (Go HEAD's pairing). A cert without a key is skipped
 * (a CA bundle often sits beside the pairs; Go refuses to start on one).
 */
export function certStoreFiles(paths: string[]): { pairs: PairFiles[]; problems: string[] } {
  const pairs: PairFiles[] = [];
  const problems: string[] = [];
  for (const root of paths) {
    const files: string[] = [];
    try {
      const st = Deno.statSync(root);
      if (st.isDirectory) walkFiles(root, 3, files);
      else files.push(root);
    } catch (e) {
      problems.push(`${root}: ${(e as Error).message}`);
      continue;
    }
    const set = new Set(files);
    for (const f of files) {
      if (f.endsWith("-key.pem")) continue;
      const ext = CERT_EXT.find((x) => f.endsWith(x));
      if (!ext) continue;
      const id = f.slice(0, -ext.length);
      const keyFile = KEY_EXT.map((k) => id + k).find((k) => set.has(k));
      if (keyFile !== undefined) pairs.push({ certFile: f, keyFile });
    }
  }
  return { pairs, problems };
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END CERTIFICATE-----/g;

/** The certificates in a PEM text, each as its own PEM block; a block that is not base64 is left out. */
export function pemCertificates(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(PEM_CERT)) {
    try {
      if (atob(m[1]!.replace(/\s+/g, "")).length === 0) continue;
    } catch {
      continue;
    }
    out.push(m[0]);
  }
  return out;
}
