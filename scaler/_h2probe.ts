import * as protoLoader from "@grpc/proto-loader";
const def = protoLoader.loadSync(
  decodeURIComponent(new URL("../proto/externalscaler.proto", import.meta.url).pathname),
  { keepCase: true, longs: Number, defaults: true },
);
const svc = def["externalscaler.ExternalScaler"] as Record<string, any>;
const addTrailers = (Deno as any)[(Deno as any).internal].addTrailers as (
  r: Response,
  h: [string, string][],
) => void;
function frame(msg: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + msg.length);
  new DataView(out.buffer).setUint32(1, msg.length);
  out.set(msg, 5);
  return out;
}
Deno.serve({
  port: Number(Deno.args[0] ?? 0),
  hostname: "127.0.0.1",
  onListen: ({ port }) => console.log("port", port),
}, async (req, info) => {
  const method = new URL(req.url).pathname.split("/").pop()!;
  const m = svc[method];
  const body = new Uint8Array(await req.arrayBuffer());
  const request = m.requestDeserialize(body.subarray(5));
  console.log("proto", req.headers.get("content-type"), method, JSON.stringify(request));
  if (method === "StreamIsActive") {
    let n = 0;
    let t: number;
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        t = setInterval(() => {
          c.enqueue(frame(m.responseSerialize({ result: n % 2 === 0 })));
          if (++n === 5) {
            clearInterval(t);
            c.close();
          }
        }, 20);
      },
      cancel() {
        console.log("cancelled by client");
        clearInterval(t);
      },
    });
    const res = new Response(stream, { headers: { "content-type": "application/grpc" } });
    addTrailers(res, [["grpc-status", "0"], ["grpc-message", ""]]);
    return res;
  }
  if (method === "GetMetrics") {
    return new Response(null, {
      headers: {
        "content-type": "application/grpc",
        "grpc-status": "5",
        "grpc-message": encodeURIComponent("not found: ns/x"),
      },
    });
  }
  const res = new Response(frame(m.responseSerialize({ result: true })), {
    headers: { "content-type": "application/grpc" },
  });
  addTrailers(res, [["grpc-status", "0"]]);
  return res;
});
