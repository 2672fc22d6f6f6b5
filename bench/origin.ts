/**
 * The app the benchmark proxies to: a small fixed answer, as cheap as Deno
 * can serve it. Env: PORT, HOST. Prints "listening <port>" when ready.
 */
const body = new TextEncoder().encode("hello from the origin\n");
Deno.serve({
  port: Number(Deno.env.get("PORT") ?? "8080"),
  hostname: Deno.env.get("HOST") ?? "0.0.0.0",
  onListen: (a) => Deno.stdout.writeSync(new TextEncoder().encode(`listening ${a.port}\n`)),
}, () => new Response(body, { headers: { "content-type": "text/plain" } }));
