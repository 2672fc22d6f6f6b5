import { httpsoObject, startTestScaler } from "./testing/harness.ts";
import { QueueServer } from "./testing/queue_server.ts";
const qs = new QueueServer({ control: true });
qs.addRoute("ns/app");
const s = await startTestScaler({
  httpsos: [httpsoObject("ns", "app")],
  interceptors: [qs],
  env: { KEDA_HTTP_QUEUE_TICK_DURATION: "200ms" },
});
Deno.stdout.writeSync(new TextEncoder().encode(`port ${s.grpcAddress} ${qs.url}\n`));
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
