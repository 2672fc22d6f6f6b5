import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { SettableExternalScaler } from "./settable_scaler.ts";

// deno-lint-ignore no-explicit-any
type Client = any;

function client(address: string): Client {
  const def = protoLoader.loadSync(
    decodeURIComponent(new URL("../../proto/externalscaler.proto", import.meta.url).pathname),
    { keepCase: true, longs: Number, defaults: true },
  );
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    externalscaler: { ExternalScaler: grpc.ServiceClientConstructor };
  };
  return new pkg.externalscaler.ExternalScaler(address, grpc.credentials.createInsecure());
}

function unary<T>(c: Client, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) =>
    c[method](req, (err: Error | null, res: T) => (err ? reject(err) : resolve(res)))
  );
}

const ref = { name: "demo", namespace: "ns", scalerMetadata: {} };

Deno.test("SettableExternalScaler answers KEDA's four calls with the value the test sets", async () => {
  await using scaler = new SettableExternalScaler({ metricName: "load", target: 2 });
  const c = client(await scaler.listen({ hostname: "127.0.0.1" }));
  try {
    assert.deepEqual(await unary(c, "IsActive", ref), { result: false });
    assert.deepEqual(await unary(c, "GetMetricSpec", ref), {
      metricSpecs: [{ metricName: "load", targetSize: 2, targetSizeFloat: 2 }],
    });
    scaler.set(2.5);
    assert.deepEqual(await unary(c, "IsActive", ref), { result: true });
    assert.deepEqual(
      await unary(c, "GetMetrics", { scaledObjectRef: ref, metricName: "load" }),
      { metricValues: [{ metricName: "load", metricValue: 3, metricValueFloat: 2.5 }] },
    );
    assert.deepEqual(
      scaler.calls.map((x) => x.method),
      ["IsActive", "GetMetricSpec", "IsActive", "GetMetrics"],
    );
    assert.equal(scaler.calls[0]?.ref.name, "demo");
  } finally {
    c.close();
  }
});

Deno.test("SettableExternalScaler pushes a change of activity on open streams at once", async () => {
  await using scaler = new SettableExternalScaler();
  const c = client(await scaler.listen({ hostname: "127.0.0.1" }));
  const stream = c.StreamIsActive(ref);
  const got: boolean[] = [];
  const waitFor = (n: number) =>
    new Promise<void>((resolve, reject) => {
      const check = () => got.length >= n && resolve();
      stream.on("data", (m: { result: boolean }) => {
        got.push(m.result);
        check();
      });
      stream.on("error", (e: Error & { code?: number }) => {
        if (e.code !== grpc.status.CANCELLED) reject(e);
      });
      check();
    });
  try {
    const first = waitFor(1);
    await first;
    assert.deepEqual(got, [false], "the current state is sent when the stream opens");
    assert.equal(scaler.openStreams, 1);
    const more = new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (got.length >= 3) {
          clearInterval(t);
          resolve();
        }
      }, 10);
    });
    scaler.set(5);
    scaler.set(7); // still active: no message
    scaler.set(0);
    await more;
    assert.deepEqual(got, [false, true, false]);
  } finally {
    stream.cancel();
    c.close();
  }
});
