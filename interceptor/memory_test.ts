import assert from "node:assert/strict";
import { createLogger } from "../shared/log.ts";
import { type GcFunction, QuietDetector, reduceMemoryWhenQuiet } from "./memory.ts";

Deno.test("QuietDetector: one collection after startup and after each load, none during one", () => {
  const cases: Array<{ name: string; samples: number[]; due: number[] }> = [
    {
      name: "startup, then quiet: due at the second quiet sample",
      samples: [0, 0, 0, 0],
      due: [1],
    },
    {
      name: "a steady 1000 rps (~0.03 cores) is never quiet",
      samples: [0.03, 0.02, 0.03],
      due: [],
    },
    {
      name: "load, then quiet: due again; quiet for long: not again",
      samples: [0, 0, 0.8, 0.9, 0, 0, 0, 0, 0],
      due: [1, 5],
    },
    {
      name: "one quiet sample between loads is not the end of a load",
      samples: [0, 0, 0.5, 0.01, 0.5, 0.01, 0.01],
      due: [1, 6],
    },
    {
      name: "light work (a timer tick) does not re-arm it",
      samples: [0, 0, 0.01, 0.04, 0, 0, 0],
      due: [1],
    },
  ];
  for (const c of cases) {
    const d = new QuietDetector();
    const due = c.samples.flatMap((s, i) => (d.observe(s) ? [i] : []));
    assert.deepEqual(due, c.due, c.name);
  }
});

const quietLog = createLogger({ level: "error", sink: () => {} });

/**
 * Runs the member on an idle process (no CPU used) for `ticks` of 5 ms;
 * returns the ticks at which it ran gc().
 */
async function runIdle(
  ticks: number,
  opts: { ready?: (tick: number) => boolean; gc?: "exposed" | "absent" } = {},
): Promise<number[]> {
  let tick = 0;
  const calls: number[] = [];
  const stop = new AbortController();
  const gc: GcFunction = (o) => {
    assert.deepEqual(o, { type: "major", execution: "sync", flavor: "last-resort" });
    calls.push(tick);
  };
  const done = reduceMemoryWhenQuiet({
    signal: stop.signal,
    log: quietLog,
    ready: () => opts.ready?.(tick) ?? true,
    gc: opts.gc === "absent" ? null : gc,
    intervalMs: 5,
    cpuSeconds: () => 1.5,
  });
  for (; tick < ticks; tick++) await new Promise((r) => setTimeout(r, 5));
  stop.abort();
  await done;
  return calls;
}

Deno.test("reduceMemoryWhenQuiet: collects once quiet after startup, not before ready", async () => {
  const calls = await runIdle(14, { ready: (tick) => tick >= 6 });
  assert.equal(calls.length, 1, `one collection, got ${calls.length}`);
  assert.ok(calls[0]! >= 6, `not before ready (sample ${calls[0]})`);
});

Deno.test("reduceMemoryWhenQuiet: without gc() it waits for the end of its lifetime", async () => {
  const calls = await runIdle(4, { gc: "absent" });
  assert.deepEqual(calls, []);
});
