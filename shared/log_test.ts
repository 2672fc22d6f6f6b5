import assert from "node:assert/strict";
import { createLogger, parseLevel } from "./log.ts";

Deno.test("logger writes one JSON object per line with component fields", () => {
  const lines: string[] = [];
  const log = createLogger({
    level: "info",
    sink: (l) => lines.push(l),
    fields: { component: "scaler" },
  });
  log.debug("hidden");
  log.info("started", { port: 9090 });
  log.with({ route: "default/app" }).error("failed", { error: new Error("boom") });
  assert.equal(lines.length, 2);
  const a = JSON.parse(lines[0]!);
  assert.equal(a.level, "info");
  assert.equal(a.msg, "started");
  assert.equal(a.component, "scaler");
  assert.equal(a.port, 9090);
  assert.match(a.ts, /^\d{4}-\d\d-\d\dT/);
  const b = JSON.parse(lines[1]!);
  assert.equal(b.route, "default/app");
  assert.deepEqual(b.error, { name: "Error", message: "boom" });
});

Deno.test("unserialisable fields never throw", () => {
  const lines: string[] = [];
  const log = createLogger({ sink: (l) => lines.push(l) });
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  log.info("x", { cyclic });
  assert.equal(JSON.parse(lines[0]!).note, "fields not serialisable");
});

Deno.test("parseLevel names the accepted levels", () => {
  assert.equal(parseLevel("WARN"), "warn");
  assert.throws(() => parseLevel("loud"), /not one of debug, info, warn, error/);
});
