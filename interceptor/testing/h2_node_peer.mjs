// Node.js (nghttp2) as the reference HTTP/2 peer for interceptor tests.
//   node h2_node_peer.mjs server        h2c app; prints {"port": n}
//   node h2_node_peer.mjs client <url>  reads request specs (JSON lines) on stdin,
//                                       runs them on one connection, prints one result per line
import fs from "node:fs";
import http2 from "node:http2";
import readline from "node:readline";

const [mode, url] = process.argv.slice(2);

if (mode === "server") {
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    const path = headers[":path"];
    const chunks = [];
    stream.on("data", (d) => {
      if (path.startsWith("/bidi")) stream.write(d);
      else chunks.push(d);
    });
    stream.on("error", () => {});
    stream.on("end", () => {
      const body = Buffer.concat(chunks);
      if (path.startsWith("/trailers")) {
        // /trailers-cl: a content-length as well, which HTTP/2 allows beside trailers.
        const cl = path.startsWith("/trailers-cl") ? { "content-length": String(body.length) } : {};
        stream.respond({ ":status": 200, "content-type": "application/grpc", ...cl }, {
          waitForTrailers: true,
        });
        stream.on(
          "wantTrailers",
          () => stream.sendTrailers({ "grpc-status": "7", "grpc-message": "denied%20here" }),
        );
        stream.end(body);
      } else if (path.startsWith("/bidi")) {
        stream.end();
      } else if (path.startsWith("/big")) {
        const n = Number(new URL(path, "http://x").searchParams.get("n") ?? "1048576");
        stream.respond({ ":status": 200 });
        stream.end(Buffer.alloc(n, 97));
      } else {
        const seen = {};
        for (const [k, v] of Object.entries(headers)) seen[k] = v;
        stream.respond({ ":status": 200, "content-type": "application/json" });
        stream.end(JSON.stringify({ headers: seen, body: body.toString("latin1") }));
      }
    });
    if (path.startsWith("/bidi")) {
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
    }
  });
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
  });
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
} else if (mode === "client") {
  // TLS: H2_CA names a CA file, H2_SERVERNAME the SNI to send.
  const tlsOpts = process.env.H2_CA
    ? { ca: fs.readFileSync(process.env.H2_CA), servername: process.env.H2_SERVERNAME }
    : {};
  const session = http2.connect(url, tlsOpts);
  session.on("connect", () => {
    if (session.alpnProtocol) process.stderr.write(`alpn ${session.alpnProtocol}\n`);
  });
  session.on("error", (e) => {
    process.stdout.write(JSON.stringify({ sessionError: String(e) }) + "\n");
  });
  const rl = readline.createInterface({ input: process.stdin });
  const pending = [];
  rl.on("line", (line) => {
    if (line.trim() === "") return;
    const spec = JSON.parse(line);
    pending.push(
      new Promise((resolve) => {
        const req = session.request(spec.headers, { endStream: spec.body === undefined });
        const out = { id: spec.id, status: 0, headers: {}, trailers: {}, body: "" };
        const chunks = [];
        req.on("response", (h) => {
          out.status = h[":status"];
          out.headers = h;
        });
        req.on("trailers", (t) => (out.trailers = t));
        req.on("data", (d) => chunks.push(d));
        req.on("error", (e) => (out.error = String(e)));
        req.on("close", () => {
          out.rstCode = req.rstCode;
          out.body = Buffer.concat(chunks).toString("latin1");
          process.stdout.write(JSON.stringify(out) + "\n");
          resolve();
        });
        if (spec.body !== undefined) {
          const parts = Array.isArray(spec.body) ? spec.body : [spec.body];
          (async () => {
            for (const p of parts) {
              req.write(p);
              if (spec.gapMs) await new Promise((r) => setTimeout(r, spec.gapMs));
            }
            req.end();
          })();
        }
        if (spec.cancelAfterMs !== undefined) {
          setTimeout(() => req.close(http2.constants.NGHTTP2_CANCEL), spec.cancelAfterMs);
        }
      }),
    );
  });
  rl.on("close", async () => {
    await Promise.all(pending);
    session.close();
  });
}
