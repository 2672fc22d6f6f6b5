/**
 * The app behind the interceptor in its tests. Env: PORT, NAME, HOST (bind
 * address, default 0.0.0.0), H2C=1 to speak HTTP/2 without TLS only, TLS_CERT
 * and TLS_KEY (PEM files) to serve HTTPS only.
 *
 *   GET  /hello          → "hello from NAME"
 *   GET  /json           → {name, method, path, headers, httpVersion, scheme}
 *   POST|PUT anything    → the request body streamed back as it arrives
 *   GET  /bytes?n=N      → N bytes ("x"), streamed, no Content-Length
 *   GET  /slow?ms=N      → answers after N ms
 *   GET  /hang           → never answers (until the client goes away)
 *   GET  /ws             → WebSocket echo
 *   GET  /stats          → {total, inflight, aborted, proxied}
 *   GET  /ready          → 503 until READY_AFTER_MS after start (-1: never), then 200
 * Prints "listening <port>" on stdout when ready.
 */
import http2 from "node:http2";

const port = Number(Deno.env.get("PORT") ?? "0");
const name = Deno.env.get("NAME") ?? "app";
const hostname = Deno.env.get("HOST") ?? "0.0.0.0";
const stats = { total: 0, inflight: 0, aborted: 0, proxied: 0 };
// GET /ready answers 503 until this long after start (READY_AFTER_MS; -1 = never).
const readyAfterMs = Number(Deno.env.get("READY_AFTER_MS") ?? "0");
const startedAt = Date.now();
// The test harness waits for this line on stdout (not a log line, so no logger).
const announce = (p: number) => Deno.stdout.writeSync(new TextEncoder().encode(`listening ${p}\n`));

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json", "x-app": name },
  });
}

async function handle(req: Request): Promise<Response> {
  const url = new URL(req.url);
  const path = url.pathname;
  if (path === "/stats") return json(stats);
  if (path === "/ready") {
    const ready = readyAfterMs >= 0 && Date.now() - startedAt >= readyAfterMs;
    return new Response(ready ? "ready\n" : "starting\n", { status: ready ? 200 : 503 });
  }
  // Requests that came through a proxy (probes come straight from it, without X-Forwarded-For).
  if (req.headers.has("x-forwarded-for")) stats.proxied++;
  if (path === "/hello") return new Response(`hello from ${name}`, { headers: { "x-app": name } });
  if (path === "/json") {
    return json({
      name,
      method: req.method,
      path: path + url.search,
      headers: Object.fromEntries(req.headers),
      httpVersion: "1.1",
      scheme: url.protocol.slice(0, -1),
    });
  }
  if (path === "/ws") {
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onmessage = (e) => socket.send(typeof e.data === "string" ? `echo: ${e.data}` : e.data);
    return response;
  }
  if ((req.method === "POST" || req.method === "PUT") && req.body) {
    return new Response(req.body, { headers: { "x-app": name } });
  }
  if (path === "/bytes") {
    let left = Number(url.searchParams.get("n") ?? "0");
    const chunk = new Uint8Array(64 * 1024).fill(120);
    return new Response(
      new ReadableStream<Uint8Array>({
        pull(c) {
          if (left <= 0) return c.close();
          const n = Math.min(left, chunk.length);
          c.enqueue(n === chunk.length ? chunk.slice() : chunk.slice(0, n));
          left -= n;
        },
      }),
      { headers: { "x-app": name } },
    );
  }
  if (path === "/slow" || path === "/hang") {
    const ms = path === "/hang" ? 3_600_000 : Number(url.searchParams.get("ms") ?? "0");
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      req.signal.addEventListener("abort", () => {
        clearTimeout(t);
        resolve();
      }, { once: true });
    });
    if (req.signal.aborted) {
      stats.aborted++;
      return new Response(null, { status: 499 });
    }
    return new Response(`slow done after ${ms} ms`, { headers: { "x-app": name } });
  }
  return new Response(`hello from ${name} at ${path}`, { headers: { "x-app": name } });
}

if (Deno.env.get("H2C") === "1") {
  const server = http2.createServer((req, res) => {
    if (req.method === "POST" || req.method === "PUT") {
      res.writeHead(200, { "x-app": name });
      req.pipe(res);
      return;
    }
    res.writeHead(200, { "content-type": "application/json", "x-app": name });
    res.end(JSON.stringify({
      name,
      method: req.method,
      path: req.url,
      headers: req.headers,
      httpVersion: req.httpVersion,
    }));
  });
  server.listen(port, hostname, () => {
    const a = server.address();
    announce(typeof a === "object" && a ? a.port : port);
  });
} else {
  // TLS_CERT/TLS_KEY (PEM file paths): HTTPS only, as an app that serves TLS itself.
  const certFile = Deno.env.get("TLS_CERT");
  const keyFile = Deno.env.get("TLS_KEY");
  const tls = certFile && keyFile
    ? { cert: Deno.readTextFileSync(certFile), key: Deno.readTextFileSync(keyFile) }
    : {};
  Deno.serve({
    port,
    hostname,
    ...tls,
    onListen: (a) => announce(a.port),
  }, async (req) => {
    stats.total++;
    stats.inflight++;
    try {
      return await handle(req);
    } finally {
      stats.inflight--;
    }
  });
}
