import assert from "node:assert/strict";
import { createLogger, encodeTime, parseFormat, parseLevel } from "./log.ts";

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

Deno.test("console format: ts, LEVEL, msg, then the fields as JSON", () => {
  const lines: string[] = [];
  const log = createLogger({
    format: "console",
    timeEncoding: "millis",
    sink: (l) => lines.push(l),
    fields: { component: "operator" },
  });
  log.warn("slow", { ms: 5 });
  const [ts, level, msg, fields] = lines[0]!.split("\t");
  assert.match(ts!, /^\d{13}$/);
  assert.equal(level, "WARN");
  assert.equal(msg, "slow");
  assert.deepEqual(JSON.parse(fields!), { component: "operator", ms: 5 });
});

Deno.test("time encodings as zap writes them", () => {
  const d = new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 120));
  assert.equal(encodeTime(d, "epoch"), 1767323045.12);
  assert.equal(encodeTime(d, "millis"), 1767323045120);
  assert.equal(encodeTime(d, "nano"), 1767323045120 * 1_000_000);
  assert.equal(encodeTime(d, "iso8601"), "2026-01-02T03:04:05.120Z");
  // rfc3339 is in local time with its offset; in UTC (the containers' zone) it ends in Z.
  assert.match(String(encodeTime(d, "rfc3339")), /^\d{4}-\d\d-\d\dT\d\d:\d\d:05(Z|[+-]\d\d:\d\d)$/);
  assert.match(String(encodeTime(d, "rfc3339nano")), /:05\.12(Z|[+-]\d\d:\d\d)$/);
  const lines: string[] = [];
  createLogger({ timeEncoding: "epoch", sink: (l) => lines.push(l) }).info("x");
  assert.equal(typeof JSON.parse(lines[0]!).ts, "number");
});

Deno.test("parseFormat names the accepted formats", () => {
  assert.equal(parseFormat("Console"), "console");
  assert.throws(() => parseFormat("text"), /not one of json, console/);
});
