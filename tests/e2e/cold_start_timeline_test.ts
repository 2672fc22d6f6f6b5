import assert from "node:assert/strict";
import { decompose, formatReport, p50Of, summarize } from "./cold_start_timeline.ts";

// Without probing: the response waits for the kubelet and the EndpointSlice.
const marks = {
  sent: 1000,
  held: 1002,
  active: 1005,
  scaled: 1120,
  podStarted: 1500,
  listening: 1700,
  podReady: 2400,
  endpointReady: 2450,
  response: 2470,
};

Deno.test("decompose: stage durations between the marks that cause each other, and the total", () => {
  const d = decompose(marks);
  assert.deepEqual(d.stages, {
    "request received": 2,
    "KEDA told": 3,
    "Deployment scaled": 115,
    "pod started": 380,
    "app start (pod started to listening)": 200,
    "response (app listening to answered)": 770,
    "kubelet Ready (app listening to Ready)": 700,
    "EndpointSlice seen (Ready to listed)": 50,
  });
  assert.equal(d.totalMs, 1470);
  assert.equal(d.untilListeningMs, 700);
  assert.deepEqual(d.outOfOrder, []);
});

Deno.test("decompose: an answer before the kubelet's Ready is in order (probe-driven forwarding)", () => {
  const d = decompose({ ...marks, response: 1730 });
  assert.equal(d.stages["response (app listening to answered)"], 30);
  assert.equal(d.totalMs, 730);
  assert.deepEqual(d.outOfOrder, []);
});

Deno.test("decompose: a missing mark leaves its stages undefined; lagging watches are reported", () => {
  const { scaled: _, ...rest } = marks;
  const d = decompose({ ...rest, podReady: 1690 });
  assert.equal(d.stages["Deployment scaled"], undefined);
  assert.equal(d.stages["pod started"], undefined);
  assert.equal(d.stages["kubelet Ready (app listening to Ready)"], -10);
  assert.deepEqual(d.outOfOrder, ["podReady before listening"]);
  assert.equal(d.totalMs, 1470);
  const { listening: __, ...noListen } = marks;
  assert.equal(decompose(noListen).untilListeningMs, undefined);
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
  assert.equal(p50Of(trials, (d) => d.totalMs), 1570);
  assert.equal(p50Of(trials, (d) => d.untilListeningMs), 700);
  assert.ok(Number.isNaN(p50Of([], (d) => d.totalMs)));
  const report = formatReport(trials);
  const lines = report.split("\n");
  assert.equal(lines.at(-1), "cold start p50: 1570 ms, p99: 1770 ms");
  assert.match(report, /kubelet Ready \(app listening to Ready\)\s+4\s+800\s+1000/);
  assert.match(report, /until the app listens \(sent to listening\)\s+4\s+700\s+700/);
  assert.match(formatReport([]), /cold start p50: - ms, p99: - ms$/);
});
