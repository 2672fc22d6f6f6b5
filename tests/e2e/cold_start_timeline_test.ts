import assert from "node:assert/strict";
import { decompose, formatReport, summarize } from "./cold_start_timeline.ts";

const marks = {
  sent: 1000,
  held: 1002,
  active: 1005,
  scaled: 1120,
  podStarted: 1500,
  podReady: 2400,
  endpointReady: 2450,
  response: 2470,
};

Deno.test("decompose: stage durations between consecutive marks and the total", () => {
  const d = decompose(marks);
  assert.deepEqual(d.stages, {
    "request received": 2,
    "KEDA told": 3,
    "Deployment scaled": 115,
    "pod started": 380,
    "pod ready": 900,
    "EndpointSlice seen": 50,
    "response": 20,
  });
  assert.equal(d.totalMs, 1470);
  assert.deepEqual(d.outOfOrder, []);
});

Deno.test("decompose: a missing mark leaves its stages undefined; lagging watches are reported", () => {
  const { scaled: _, ...rest } = marks;
  const d = decompose({ ...rest, endpointReady: 2480 });
  assert.equal(d.stages["Deployment scaled"], undefined);
  assert.equal(d.stages["pod started"], undefined);
  assert.equal(d.stages["pod ready"], 900);
  assert.equal(d.stages["response"], -10);
  assert.deepEqual(d.outOfOrder, ["response before endpointReady"]);
  assert.equal(d.totalMs, 1470);
});

Deno.test("summarize/formatReport: percentiles per stage; the last line is the contract", () => {
  const trials = [0, 100, 200, 300].map((shift) =>
    decompose({
      ...marks,
      podReady: marks.podReady + shift,
      endpointReady: marks.endpointReady + shift,
      response: marks.response + shift,
    })
  );
  const rows = summarize(trials);
  const total = rows.find((r) => r.name === "total")!;
  assert.equal(total.n, 4);
  assert.equal(total.p50, 1570);
  assert.equal(total.p99, 1770);
  assert.equal(total.min, 1470);
  const report = formatReport(trials);
  const lines = report.split("\n");
  assert.equal(lines.at(-1), "cold start p50: 1570 ms, p99: 1770 ms");
  assert.match(report, /pod ready\s+4\s+1000\s+1200/);
  assert.match(formatReport([]), /cold start p50: - ms, p99: - ms$/);
});
