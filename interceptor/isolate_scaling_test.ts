import assert from "node:assert/strict";
import { createLogger } from "../shared/log.ts";
import {
  DEFAULT_POLICY,
  IsolateScaler,
  processCpuSeconds,
  scaleIsolates,
} from "./isolate_scaling.ts";

const policy = { max: 3, growAbove: 0.5, growAfter: 2, shrinkBelow: 0.2, shrinkAfter: 3 };

Deno.test("isolate scaling: decisions over CPU samples", async (t) => {
  const cases: Array<
    { name: string; samples: Array<[number, number]>; want: Array<string | null> }
  > = [
    {
      name: "grows after consecutive busy samples only",
      samples: [[0.9, 1], [0.3, 1], [0.9, 1], [0.9, 1]],
      want: [null, null, null, "grow"],
    },
    {
      name: "busy per isolate, not in total",
      samples: [[0.9, 2], [0.9, 2], [1.2, 2], [1.2, 2]],
      want: [null, null, null, "grow"],
    },
    {
      name: "never past the maximum",
      samples: [[3, 3], [3, 3], [3, 3]],
      want: [null, null, null],
    },
    {
      name: "shrinks when the rest would stay lightly loaded, after enough samples",
      samples: [[0.1, 2], [0.1, 2], [0.3, 2], [0.1, 2], [0.1, 2], [0.1, 2]],
      want: [null, null, null, null, null, "shrink"],
    },
    {
      name: "never below one isolate",
      samples: [[0, 1], [0, 1], [0, 1], [0, 1]],
      want: [null, null, null, null],
    },
    {
      name: "between the thresholds nothing changes",
      samples: [[0.5, 2], [0.5, 2], [0.5, 2], [0.5, 2]],
      want: [null, null, null, null],
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const s = new IsolateScaler(policy);
      assert.deepEqual(c.samples.map(([cores, n]) => s.observe(cores, n)), c.want);
    });
  }
});

Deno.test("isolate scaling: the default policy has a gap between growing and shrinking", () => {
  // One isolate at exactly the grow threshold split over two must not shrink back.
  assert.ok(DEFAULT_POLICY.growAbove > 2 * DEFAULT_POLICY.shrinkBelow);
});

Deno.test("isolate scaling: process CPU time comes from /proc and grows with work", () => {
  const a = processCpuSeconds();
  assert.notEqual(a, null);
  const until = performance.now() + 150;
  let x = 0;
  while (performance.now() < until) x += Math.sqrt(x + 1);
  const b = processCpuSeconds()!;
  assert.ok(b - a! >= 0.05, `${b - a!} s of CPU after 150 ms of work`);
});

Deno.test("isolate scaling: the loop resizes the plane from measured CPU and stops on abort", async () => {
  const calls: string[] = [];
  const plane = {
    isolates: 1,
    grow() {
      calls.push("grow");
      this.isolates++;
      return Promise.resolve();
    },
    shrink(ms: number) {
      calls.push(`shrink ${ms}`);
      this.isolates--;
      return Promise.resolve();
    },
  };
  // A CPU clock that reads 1 core busy for 3 intervals, then idle.
  let cpu = 0;
  let reads = 0;
  const cpuSeconds = () => {
    reads++;
    if (reads <= 4) cpu += 0.01; // 10 ms per 10 ms interval: one core
    return cpu;
  };
  const ac = new AbortController();
  const done = scaleIsolates(plane, policy, {
    signal: ac.signal,
    log: createLogger({ level: "error", sink: () => {} }),
    drainTimeoutMs: 7,
    intervalMs: 10,
    cpuSeconds,
  });
  const deadline = Date.now() + 5000;
  while (calls.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  ac.abort();
  await done;
  assert.deepEqual(calls, ["grow", "shrink 7"]);
  assert.equal(plane.isolates, 1);
});
