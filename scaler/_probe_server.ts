import { httpsoObject, startTestScaler } from "./testing/harness.ts";
const [ns, ...urls] = Deno.args;
const s = await startTestScaler({
  httpsos: [httpsoObject(ns!, "app")],
  env: { KEDA_HTTP_QUEUE_TICK_DURATION: "500ms" },
});
s.parts.fleet.setPods(urls.map((u, i) => ({ id: `u${i}`, name: `p${i}`, url: u, ready: true })));
Deno.stdout.writeSync(new TextEncoder().encode(`port ${s.grpcAddress} ${s.httpUrl}\n`));
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
