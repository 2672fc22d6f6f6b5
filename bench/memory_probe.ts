/**
 * One process of `deno task bench:memory`: loads the part named by its
 * argument, lets the heap settle, and prints its resident set size in bytes.
 */
import { out } from "./bench_args.ts";

const mode = Deno.args[0] ?? "bare";
const gc = (globalThis as { gc?: () => void }).gc;

async function load(): Promise<() => void> {
  if (mode === "bare") return () => {};
  if (mode.startsWith("isolates:")) {
    const { startIsolates } = await import("./memory_isolates.ts");
    return await startIsolates(Number(mode.slice("isolates:".length)));
  }
  if (mode === "worker" || mode === "worker-tls") {
    // A worker isolate like a data-plane one, with or without node:tls loaded in it.
    const src = `${mode === "worker-tls" ? 'await import("node:tls");' : ""} postMessage("ready");`;
    const w = new Worker(`data:text/javascript,${encodeURIComponent(src)}`, { type: "module" });
    await new Promise((r) => (w.onmessage = r));
    return () => w.terminate();
  }
  if (mode === "tls") await import("node:tls");
  else if (mode === "client-node") await import("@kubernetes/client-node");
  else if (mode === "zod") await import("zod");
  else if (mode === "zod-mini") await import("zod/mini");
  else if (mode === "httpso") await import("../shared/httpso.ts");
  else if (mode === "compiled") {
    const { expectHTTPScaledObjects, compiledParsing } = await import("../shared/httpso.ts");
    expectHTTPScaledObjects(1_000_000);
    if (!compiledParsing()) throw new Error("the compiled fast path did not switch on");
  } else {throw new Error(
      `unknown mode "${mode}": bare, isolates:N, worker, worker-tls, tls, client-node, zod, zod-mini, httpso, compiled`,
    );}
  return () => {};
}

const stop = await load();
for (let i = 0; i < 3; i++) {
  gc?.();
  await new Promise((r) => setTimeout(r, 500));
}
out(String(Deno.memoryUsage().rss));
stop();
Deno.exit(0);
