import assert from "node:assert/strict";
import { FlagError, type FlagSpec, parseGoFlags, ZAP_FLAGS, zapSettings } from "./go_flags.ts";

const SPECS: FlagSpec[] = [
  { name: "addr", help: "an address" },
  { name: "on", bool: true, help: "a switch" },
];

Deno.test("parseGoFlags: Go's spellings of values and bools", () => {
  assert.deepEqual(parseGoFlags(["--addr=:1", "--on"], SPECS), { addr: ":1", on: "true" });
  assert.deepEqual(parseGoFlags(["-addr", ":2", "-on=false"], SPECS), { addr: ":2", on: "false" });
  assert.deepEqual(parseGoFlags(["--on=F", "--on=1"], SPECS), { on: "true" });
  assert.deepEqual(parseGoFlags(["--addr=a", "--addr=b", "--"], SPECS), { addr: "b" });
  assert.deepEqual(parseGoFlags(["--addr="], SPECS), { addr: "" });
  assert.deepEqual(parseGoFlags(["-h"], SPECS), { help: "true" });
});

Deno.test("parseGoFlags: errors name the flag, the value and what is accepted", () => {
  assert.throws(
    () => parseGoFlags(["--nope=1"], SPECS),
    (e: Error) =>
      e instanceof FlagError && /unknown flag --nope/.test(e.message) &&
      /--addr=<value>/.test(e.message) && /--on\[=true\|false\]/.test(e.message),
  );
  assert.throws(() => parseGoFlags(["--on=maybe"], SPECS), /flag --on: "maybe" is not a boolean/);
  assert.throws(() => parseGoFlags(["--addr"], SPECS), /flag --addr needs a value/);
  // A bool never takes the next argument (as in Go): "false" is a stray argument.
  assert.throws(() => parseGoFlags(["--on", "false"], SPECS), /unexpected argument "false"/);
  assert.throws(() => parseGoFlags(["--", "x"], SPECS), /unexpected argument "x" after "--"/);
});

Deno.test("zapSettings: the Go chart's zap flags map onto our logger", () => {
  const parse = (...args: string[]) => zapSettings(parseGoFlags(args, ZAP_FLAGS));
  assert.deepEqual(
    parse("--zap-log-level=info", "--zap-encoder=console", "--zap-time-encoding=rfc3339").log,
    { level: "info", format: "console", timeEncoding: "rfc3339" },
  );
  assert.equal(parse("--zap-log-level=debug").log.level, "debug");
  assert.equal(parse("--zap-log-level=error").log.level, "error");
  assert.equal(parse("--zap-log-level=3").log.level, "debug");
  const panic = parse("--zap-log-level=panic");
  assert.equal(panic.log.level, "error");
  assert.match(panic.notes[0]!, /panic/);
  assert.deepEqual(parse("--zap-devel").log, { level: "debug", format: "console" });
  // Explicit flags beat --zap-devel's defaults, whatever their order.
  assert.deepEqual(parse("--zap-encoder=json", "--zap-devel").log, {
    level: "debug",
    format: "json",
  });
  const stack = parse("--zap-stacktrace-level=error");
  assert.deepEqual(stack.log, {});
  assert.match(stack.notes[0]!, /--zap-stacktrace-level=error ignored/);
  assert.deepEqual(parse().log, {});
});

Deno.test("zapSettings: a bad value names the flag and the value", () => {
  const parse = (...args: string[]) => zapSettings(parseGoFlags(args, ZAP_FLAGS));
  assert.throws(() => parse("--zap-log-level=loud"), /--zap-log-level: "loud" is not a level/);
  assert.throws(() => parse("--zap-log-level=0"), /--zap-log-level: "0"/);
  assert.throws(() => parse("--zap-log-level=warn"), /--zap-log-level: "warn"/);
  assert.throws(() => parse("--zap-encoder=text"), /--zap-encoder: "text" is not one of json/);
  assert.throws(() => parse("--zap-time-encoding=unix"), /--zap-time-encoding: "unix"/);
  assert.throws(() => parse("--zap-stacktrace-level=all"), /--zap-stacktrace-level: "all"/);
});
