import { ExternalScalerClient } from "./external_scaler.ts";
const c = new ExternalScalerClient(Deno.args[0]!);
const qs = Deno.args[1]!;
const ref = { name: "app", namespace: "ns", scalerMetadata: { httpScaledObject: "app" } };
const set = (n: number) =>
  fetch(`${qs}/_test/concurrency?route=ns/app&n=${n}`, { method: "POST" }).then((r) => r.text());
for (let i = 0; i < 100; i++) await c.getMetrics(ref, "");
await set(0);
const ctrl = new AbortController();
const stream = c.streamIsActive(ref, { signal: ctrl.signal });
while ((await stream.next()).value !== false) { /* idle */ }
await set(1);
let next = await stream.next();
while (next.value === false) next = await stream.next();
ctrl.abort();
await stream.return(undefined);
c.close();
Deno.stdout.writeSync(new TextEncoder().encode("closed\n"));
