/**
 * A QueueServer as its own process, for tests that need interceptor
 * replicas which can be killed, or that live in a network namespace:
 *   deno run --allow-net scaler/testing/queue_server_main.ts <hostname> <port> [route...]
 * Prints "listening <url>" on stdout once it serves; driven over HTTP with
 * POST /_test/concurrency and /_test/rate (see queue_server.ts).
 */
import { QueueServer } from "./queue_server.ts";

const [hostname = "127.0.0.1", port = "0", ...routes] = Deno.args;
const server = new QueueServer({ hostname, port: Number(port), control: true, heartbeatMs: 1000 });
for (const r of routes) server.addRoute(r);
await Deno.stdout.write(new TextEncoder().encode(`listening ${server.url}\n`));
Deno.addSignalListener("SIGTERM", () => {
  void server.close().then(() => Deno.exit(0));
});
