import assert from "node:assert/strict";
import { Registry } from "./prometheus.ts";

Deno.test("Registry renders the text format with escaped labels", () => {
  const r = new Registry();
  const c = r.counter("x_total", "Things.");
  c.inc({ route: 'ns/a"b' });
  c.inc({ route: 'ns/a"b' }, 2);
  const g = r.gauge("y", "A gauge.");
  g.set(1.5);
  r.collect("z", "Computed.", () => [[{ pod: "p\\1" }, 0]]);
  r.collect("broken", "Throws.", () => {
    throw new Error("boom");
  });
  assert.equal(
    r.render(),
    [
      "# HELP x_total Things.",
      "# TYPE x_total counter",
      'x_total{route="ns/a\\"b"} 3',
      "# HELP y A gauge.",
      "# TYPE y gauge",
      "y 1.5",
      "# HELP z Computed.",
      "# TYPE z gauge",
      'z{pod="p\\\\1"} 0',
      "",
    ].join("\n"),
  );
});
