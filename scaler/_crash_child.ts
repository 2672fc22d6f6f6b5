import { startTestScaler, httpsoObject } from "./testing/harness.ts";
const s = await startTestScaler({ httpsos: [httpsoObject("ns", "app")] });
Deno.stdout.writeSync(new TextEncoder().encode(`port ${s.grpcAddress}\n`));
Deno.addSignalListener("SIGTERM", async () => { await s.parts.grpc.close(2000); Deno.exit(0); });
