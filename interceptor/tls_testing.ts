/**
 * Certificates made with openssl at test time (a CA and leaves it signs), an
 * HTTPS app that records the SNI and connections it saw, and an openssl
 * s_client probe for what a handshake negotiated.
 */
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type tls from "node:tls";

async function openssl(args: string[], stdin?: string): Promise<string> {
  const cmd = new Deno.Command("openssl", {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  });
  const child = cmd.spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success && args[0] !== "s_client") {
    throw new Error(`openssl ${args.join(" ")}: ${text}`);
  }
  return text;
}

export interface CertFiles {
  cert: string;
  key: string;
  /** The PEM texts. */
  certPem: string;
  keyPem: string;
}

function keyArgs(kind: "ec" | "rsa"): string[] {
  return kind === "ec"
    ? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    : ["-newkey", "rsa:2048"];
}

async function read(cert: string, key: string): Promise<CertFiles> {
  return {
    cert,
    key,
    certPem: await Deno.readTextFile(cert),
    keyPem: await Deno.readTextFile(key),
  };
}

/** A self-signed CA at `<dir>/<name>.crt|.key`. */
export async function makeCa(dir: string, name: string): Promise<CertFiles> {
  const cert = `${dir}/${name}.crt`;
  const key = `${dir}/${name}.key`;
  await openssl([
    "req",
    "-x509",
    ...keyArgs("ec"),
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return await read(cert, key);
}

/**
 * A leaf signed by `ca` with SANs like "DNS:app.ns", "IP:127.0.0.1" or
 * "URI:spiffe://x", at `<dir>/<name><certExt>` and `<dir>/<name><keyExt>`.
 */
export async function makeLeaf(dir: string, name: string, opts: {
  ca: CertFiles;
  sans: string[];
  kind?: "ec" | "rsa";
  certExt?: string;
  keyExt?: string;
}): Promise<CertFiles> {
  const cert = `${dir}/${name}${opts.certExt ?? ".crt"}`;
  const key = `${dir}/${name}${opts.keyExt ?? ".key"}`;
  const csr = `${dir}/${name}.csr`;
  const ext = `${dir}/${name}.ext`;
  await openssl([
    "req",
    ...keyArgs(opts.kind ?? "ec"),
    "-nodes",
    "-keyout",
    key,
    "-out",
    csr,
    "-subj",
    `/CN=${name}`,
  ]);
  await Deno.writeTextFile(
    ext,
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${
      opts.sans.join(",")
    }\n`,
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    opts.ca.cert,
    "-CAkey",
    opts.ca.key,
    "-CAcreateserial",
    "-out",
    cert,
    "-days",
    "2",
    "-extfile",
    ext,
  ]);
  await Deno.remove(csr);
  await Deno.remove(ext);
  return await read(cert, key);
}

export interface HttpsApp extends AsyncDisposable {
  port: number;
  /** SNI of each TLS connection, in order. */
  serverNames: Array<string | false>;
  /** TLS connections accepted. */
  connections: number;
}

/** An HTTPS app (node:https, which tells the SNI) answering `handler`'s text. */
export async function startHttpsApp(
  leaf: CertFiles,
  handler: (req: IncomingMessage) => string,
): Promise<HttpsApp> {
  const app: HttpsApp = {
    port: 0,
    serverNames: [],
    connections: 0,
    async [Symbol.asyncDispose]() {
      server.closeAllConnections?.();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = https.createServer(
    { cert: leaf.certPem, key: leaf.keyPem },
    (req: IncomingMessage, res: ServerResponse) => {
      let n = 0;
      req.on("data", (d: Uint8Array) => (n += d.length));
      req.on("end", () => {
        res.setHeader("content-type", "text/plain");
        res.end(handler(req));
      });
    },
  );
  server.on("secureConnection", (s: tls.TLSSocket) => {
    app.connections++;
    app.serverNames.push((s as unknown as { servername?: string | false }).servername ?? false);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  app.port = (server.address() as { port: number }).port;
  return app;
}

/** What an openssl s_client handshake with 127.0.0.1:`port` negotiated ("" each when it failed). */
export async function probe(port: number, args: string[]): Promise<{
  protocol: string;
  cipher: string;
  group: string;
}> {
  const out = await openssl(
    ["s_client", "-brief", "-connect", `127.0.0.1:${port}`, ...args],
    "",
  );
  const get = (re: RegExp) => re.exec(out)?.[1]?.trim() ?? "";
  return {
    protocol: get(/Protocol version: (\S+)/),
    cipher: get(/Ciphersuite: (\S+)/),
    group: get(/(?:Server Temp Key|Negotiated TLS1\.3 group): ([^\n]+)/),
  };
}
