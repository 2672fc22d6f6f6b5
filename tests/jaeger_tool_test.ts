/**
 * tests/tools/jaeger.ts against a real Jaeger v2 (built from the Go module
 * that tests/tools/jaeger/go.mod pins, cached after the first build): one span
 * in over OTLP/HTTP JSON and one over OTLP/gRPC, each read back through the
 * api/v3 query API; two Jaegers at once get ports of their own.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { type Jaeger, type JaegerSpan, startJaeger } from "./tools/jaeger.ts";

function randomHex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g)!.map((h) => parseInt(h, 16)));
}

/** The spans of `traceId` among `service`'s traces, polled until some come back. */
async function waitForTrace(j: Jaeger, service: string, traceId: string): Promise<JaegerSpan[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const spans = (await j.traces(service)).filter((s) => s.traceId === traceId);
    if (spans.length > 0 || Date.now() > deadline) return spans;
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test("jaeger: a span sent over OTLP/HTTP JSON comes back from the query API", async () => {
  await using j = await startJaeger();
  const traceId = randomHex(16);
  const spanId = randomHex(8);
  const start = BigInt(Date.now()) * 1_000_000n;
  // A hand-written ExportTraceServiceRequest in OTLP's JSON encoding (ids in hex).
  const request = {
    resourceSpans: [{
      resource: {
        attributes: [{ key: "service.name", value: { stringValue: "probe-test" } }],
      },
      scopeSpans: [{
        scope: { name: "jaeger_tool_test" },
        spans: [{
          traceId,
          spanId,
          name: "probe-span",
          kind: 2,
          startTimeUnixNano: String(start),
          endTimeUnixNano: String(start + 5_000_000n),
          attributes: [{ key: "probe.attempt", value: { intValue: "1" } }],
        }],
      }],
    }],
  };
  const r = await fetch(`${j.otlpHttpEndpoint}/v1/traces`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request),
  });
  const answer = await r.text();
  assert.deepEqual(r.status, 200, answer);

  const spans = await waitForTrace(j, "probe-test", traceId);
  assert.deepEqual(spans.length, 1, `spans of ${traceId}: ${JSON.stringify(spans)}`);
  const [s] = spans as [JaegerSpan];
  assert.deepEqual(s.name, "probe-span");
  assert.deepEqual(s.spanId, spanId);
  assert.deepEqual(s.service, "probe-test");
  assert.deepEqual(s.kind, 2);
  assert.deepEqual(s.attributes["probe.attempt"], 1);
  assert.deepEqual(s.startTimeUnixNano, String(start));
  assert((await j.services()).includes("probe-test"));
  assert.deepEqual((await j.trace(traceId)).map((x) => x.name), ["probe-span"]);
  assert.deepEqual(await j.traces("no-such-service"), []);
});

// --- OTLP/gRPC: no .proto files are at hand, so the request is protobuf encoded by hand. ---

function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v ? b | 0x80 : b);
  } while (v);
  return out;
}

/** A length-delimited field (wire type 2): bytes, a string or a nested message. */
function lenField(field: number, body: Uint8Array | string): number[] {
  const b = typeof body === "string" ? new TextEncoder().encode(body) : body;
  return [...varint((field << 3) | 2), ...varint(b.length), ...b];
}

function varintField(field: number, n: number): number[] {
  return [...varint(field << 3), ...varint(n)];
}

function fixed64Field(field: number, n: bigint): number[] {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, true);
  return [...varint((field << 3) | 1), ...b];
}

const msg = (...fields: number[][]) => Uint8Array.from(fields.flat());

/**
 * opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest with one
 * resource (service.name) and one span, by the field numbers of OTLP's
 * trace.proto, common.proto and resource.proto.
 */
function exportRequest(
  p: { service: string; traceId: string; spanId: string; name: string; start: bigint },
): Uint8Array {
  const anyValue = msg(lenField(1, p.service)); // AnyValue.string_value = 1
  const keyValue = msg(lenField(1, "service.name"), lenField(2, anyValue)); // key = 1, value = 2
  const resource = msg(lenField(1, keyValue)); // Resource.attributes = 1
  const span = msg(
    lenField(1, hexBytes(p.traceId)), // trace_id = 1
    lenField(2, hexBytes(p.spanId)), // span_id = 2
    lenField(5, p.name), // name = 5
    varintField(6, 3), // kind = 6: SPAN_KIND_CLIENT
    fixed64Field(7, p.start), // start_time_unix_nano = 7
    fixed64Field(8, p.start + 2_000_000n), // end_time_unix_nano = 8
  );
  const scopeSpans = msg(lenField(2, span)); // ScopeSpans.spans = 2
  const resourceSpans = msg(lenField(1, resource), lenField(2, scopeSpans)); // resource = 1, scope_spans = 2
  return msg(lenField(1, resourceSpans)); // ExportTraceServiceRequest.resource_spans = 1
}

Deno.test("jaeger: a span sent over OTLP/gRPC comes back from the query API", async () => {
  await using j = await startJaeger();
  const traceId = randomHex(16);
  const spanId = randomHex(8);
  const client = new grpc.Client(j.otlpGrpcEndpoint, grpc.credentials.createInsecure());
  try {
    await new Promise<void>((resolve, reject) => {
      client.makeUnaryRequest(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        (b: Uint8Array) => Buffer.from(b),
        (b: Buffer) => b,
        exportRequest({
          service: "probe-grpc",
          traceId,
          spanId,
          name: "probe-grpc-span",
          start: BigInt(Date.now()) * 1_000_000n,
        }),
        { deadline: Date.now() + 10_000 },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  } finally {
    client.close();
  }
  const spans = await waitForTrace(j, "probe-grpc", traceId);
  assert.deepEqual(spans.map((s) => [s.name, s.spanId, s.kind]), [["probe-grpc-span", spanId, 3]]);
});

Deno.test("jaeger: two started at once each get their own ports and store", async () => {
  const [a, b] = await Promise.all([startJaeger(), startJaeger()]);
  await using _a = a;
  await using _b = b;
  const ports = [a, b].flatMap((j) =>
    [j.otlpHttpEndpoint, j.otlpGrpcEndpoint, j.queryUrl].map((u) => u.split(":").at(-1))
  );
  assert.deepEqual(new Set(ports).size, 6, `ports: ${ports}`);
  for (const u of [a.otlpHttpEndpoint, a.queryUrl, b.otlpHttpEndpoint, b.queryUrl]) {
    assert(u.startsWith("http://127.0.0.1:"), u);
  }
  // A span sent to one is in that one only.
  const traceId = randomHex(16);
  const start = BigInt(Date.now()) * 1_000_000n;
  const r = await fetch(`${a.otlpHttpEndpoint}/v1/traces`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      resourceSpans: [{
        resource: { attributes: [{ key: "service.name", value: { stringValue: "only-a" } }] },
        scopeSpans: [{
          spans: [{
            traceId,
            spanId: randomHex(8),
            name: "in-a",
            startTimeUnixNano: String(start),
            endTimeUnixNano: String(start + 1_000n),
          }],
        }],
      }],
    }),
  });
  await r.body?.cancel();
  assert.deepEqual(r.status, 200);
  assert.deepEqual((await waitForTrace(a, "only-a", traceId)).length, 1);
  assert.deepEqual(await b.services(), []);
});

Deno.test("jaeger: dispose stops the process and removes its temp dir", async () => {
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  const dirs = () =>
    [...Deno.readDirSync(tmp)].map((e) => e.name).filter((n) => n.startsWith("keda-http-jaeger-"));
  const before = new Set(dirs());
  const j = await startJaeger();
  const port = Number(j.queryUrl.split(":").at(-1));
  const mine = dirs().filter((n) => !before.has(n));
  assert.equal(mine.length, 1, `new jaeger temp dirs: ${mine}`);
  assert.match(await j.log(), /Everything is ready/);
  await j.stop();
  assert.deepEqual(dirs().filter((n) => mine.includes(n)), [], "temp dir left behind");
  const refused = await Deno.connect({ hostname: "127.0.0.1", port }).then(
    (c) => (c.close(), false),
    () => true,
  );
  assert(refused, `query port ${port} still answers after stop`);
  await j.stop(); // a second stop is a no-op
});
