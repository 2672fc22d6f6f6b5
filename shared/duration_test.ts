import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "./duration.ts";

Deno.test("parseDuration reads Go durations", () => {
  const cases: Array<[string, number]> = [
    ["0", 0],
    ["0s", 0],
    ["500ms", 500],
    ["1s", 1000],
    ["1m30s", 90_000],
    ["1.5h", 5_400_000],
    ["2h45m", 9_900_000],
    ["250us", 0.25],
    ["100ns", 0.0001],
    ["-2s", -2000],
  ];
  for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
});

Deno.test("parseDuration rejects malformed input with an example", () => {
  for (const bad of ["", "10", "5 s", "1d", "s", "1m30"]) {
    assert.throws(() => parseDuration(bad), /is not a duration: use a number with a unit/, bad);
  }
});

Deno.test("formatDuration round-trips", () => {
  for (const ms of [0, 500, 1000, 90_000, 5_400_000, 61_500]) {
    assert.equal(parseDuration(formatDuration(ms)), ms, String(ms));
  }
  assert.equal(formatDuration(90_000), "1m30s");
});
