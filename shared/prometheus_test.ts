import assert from "node:assert/strict";
import {
  escapeLabelValue,
  familyLines,
  formatValue,
  histogramLines,
  labelPairs,
  Registry,
  sampleLine,
} from "./prometheus.ts";

Deno.test("Registry renders its families in order, with escaped labels", () => {
  const r = new Registry();
  const c = r.counter("x_total", "Things.");
  c.inc({ route: 'ns/a"b' });
  c.inc({ route: 'ns/a"b' }, 2);
  c.inc({ route: "ns/c" });
  const g = r.gauge("y", "A gauge.");
  g.set(1.5);
  const s = r.summary("d_seconds", "Durations.");
  s.observe(0.25);
  s.observe(0.5);
  r.collect("z", "Computed.", () => [[{ pod: "p\\1" }, 0]]);
  r.collect("broken", "Throws.", () => {
    throw new Error("boom");
  });
  assert.equal(c.get({ route: 'ns/a"b' }), 3);
  assert.equal(c.total(), 4);
  assert.equal(
    r.render(),
    [
      "# HELP x_total Things.",
      "# TYPE x_total counter",
      'x_total{route="ns/a\\"b"} 3',
      'x_total{route="ns/c"} 1',
      "# HELP y A gauge.",
      "# TYPE y gauge",
      "y 1.5",
      "# HELP d_seconds Durations.",
      "# TYPE d_seconds summary",
      "d_seconds_sum 0.75",
      "d_seconds_count 2",
      "# HELP z Computed.",
      "# TYPE z gauge",
      'z{pod="p\\\\1"} 0',
      "",
    ].join("\n"),
  );
});

Deno.test("label values escape backslash, quote and line feed; pairs keep their order", () => {
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(labelPairs({ z: "1", a: 'x"' }), 'z="1",a="x\\""');
  assert.equal(labelPairs({}), "");
});

Deno.test("sample lines: braces only with labels; infinities spelled as the format wants", () => {
  assert.equal(sampleLine("up", "", 1), "up 1");
  assert.equal(sampleLine("up", 'pod="a"', 0.5), 'up{pod="a"} 0.5');
  assert.equal(formatValue(Infinity), "+Inf");
  assert.equal(formatValue(-Infinity), "-Inf");
  assert.equal(formatValue(NaN), "NaN");
  assert.deepEqual(familyLines("g", "A\ngauge.", "gauge", [["", 2]]), [
    // The format's escape: a line feed in HELP text is written as \n.
    "# HELP g A\\ngauge.",
    "# TYPE g gauge",
    "g 2",
  ]);
});

Deno.test("histogramLines: cumulative buckets, +Inf last, then _sum and _count", () => {
  assert.deepEqual(histogramLines("h", 'r="a"', [0.1, 1], [2, 0, 1], 3.5, 3), [
    'h_bucket{r="a",le="0.1"} 2',
    'h_bucket{r="a",le="1"} 2',
    'h_bucket{r="a",le="+Inf"} 3',
    'h_sum{r="a"} 3.5',
    'h_count{r="a"} 3',
  ]);
  assert.deepEqual(histogramLines("h", "", [1], [0, 0], 0, 0), [
    'h_bucket{le="1"} 0',
    'h_bucket{le="+Inf"} 0',
    "h_sum 0",
    "h_count 0",
  ]);
});
