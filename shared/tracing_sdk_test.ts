/**
 * Sampling decided before the SDK is called (shared/tracing_sdk.ts): new
 * traces at the root ratio, children of a sampled span always recorded, a
 * malformed traceparent is a new trace (a client cannot force sampling), and
 * parent-based samplers follow the client's flag. Spans are counted as the
 * real SDK exports them (the console exporter, through our logger).
 */
import assert from "node:assert/strict";
import type { TracingConfig } from "./config.ts";
import { createLogger } from "./log.ts";
import { startTracing } from "./tracing.ts";

const hex = (n: number) =>
  [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, "0"))
    .join("");

async function withTracing(
  sampler: TracingConfig["sampler"],
  ratio: number,
  fn: (t: NonNullable<Awaited<ReturnType<typeof startTracing>>>) => void,
): Promise<Array<{ traceId: string; name: string }>> {
  const spans: Array<{ traceId: string; name: string }> = [];
  const log = createLogger({
    level: "info",
    sink: (line) => {
      const o = JSON.parse(line);
      if (o.msg === "span") spans.push({ traceId: o.traceId, name: o.name });
    },
  });
  const t = await startTracing(
    { enabled: true, protocol: "console", sampler, ratio, serviceName: "t", batchDelayMs: 10 },
    log,
    "test",
  );
  assert.ok(t);
  fn(t);
  await t.shutdown();
  return spans;
}

Deno.test("traceidratio: new traces at the ratio, every child of a sampled one recorded", async () => {
  let sampled = 0;
  const spans = await withTracing("traceidratio", 0.5, (t) => {
    for (let i = 0; i < 200; i++) {
      const s = t.server("req", {});
      if (s.sampled) sampled++;
      const c = s.child("hold");
      assert.equal(c.sampled, s.sampled, "a child follows its parent");
      c.end();
      s.end();
    }
  });
  // Binomial(200, 0.5) outside 40..160 is below 1e-17.
  assert.ok(sampled > 40 && sampled < 160, `sampled ${sampled} of 200 at 0.5`);
  assert.equal(spans.length, 2 * sampled, "the sampled ones and their children, nothing else");
  const byTrace = new Map<string, number>();
  for (const s of spans) byTrace.set(s.traceId, (byTrace.get(s.traceId) ?? 0) + 1);
  assert.ok([...byTrace.values()].every((n) => n === 2), "whole traces");
});

Deno.test("ratio 0: a malformed or absent traceparent records nothing; roots neither", async () => {
  const spans = await withTracing("parentbased_traceidratio", 0, (t) => {
    for (const traceparent of [undefined, "garbage", `00-${"0".repeat(32)}-${hex(8)}-01`]) {
      const s = t.server("req", { traceparent });
      assert.equal(s.sampled, false, String(traceparent));
      assert.deepEqual(s.context(), [], "no context of ours for the app");
      s.child("connect").end();
      s.end();
    }
    const r = t.root("poll");
    assert.equal(r.sampled, false);
    r.end();
  });
  assert.deepEqual(spans, []);
});

Deno.test("parent-based: the client's sampled flag decides, whatever the ratio", async () => {
  const yes = hex(16);
  const no = hex(16);
  const spans = await withTracing("parentbased_traceidratio", 0, (t) => {
    const a = t.server("req", { traceparent: `00-${yes}-${hex(8)}-01` });
    assert.equal(a.sampled, true);
    assert.equal(a.traceId, yes);
    assert.match(a.context()[0]?.[1] ?? "", new RegExp(`^00-${yes}-[0-9a-f]{16}-01$`));
    a.end();
    const b = t.server("req", { traceparent: `00-${no}-${hex(8)}-00` });
    assert.equal(b.sampled, false);
    b.end();
  });
  assert.deepEqual(spans.map((s) => s.traceId), [yes]);
});

Deno.test("always_on records every span; always_off none", async () => {
  const on = await withTracing("always_on", 1, (t) => {
    for (let i = 0; i < 5; i++) {
      t.server("req", { traceparent: `00-${hex(16)}-${hex(8)}-00` }).end();
    }
  });
  assert.equal(on.length, 5, "always_on ignores the parent's flag");
  const off = await withTracing("always_off", 1, (t) => {
    for (let i = 0; i < 5; i++) {
      t.server("req", { traceparent: `00-${hex(16)}-${hex(8)}-01` }).end();
    }
  });
  assert.equal(off.length, 0);
});
