import assert from "node:assert/strict";
import { aborted, backoffMs, LifetimeGroup, MemberExited, osSignals, sleep } from "./lifetime.ts";

Deno.test("the first member to exit stops the rest; run resolves with its name", async () => {
  const stopped: string[] = [];
  const g = new LifetimeGroup()
    .add("long-a", async (signal) => {
      await aborted(signal);
      stopped.push("a");
    })
    .add("short", async () => {
      await sleep(10);
    })
    .add("long-b", async (signal) => {
      await aborted(signal);
      await sleep(5);
      stopped.push("b");
    });
  const first = await g.run();
  assert.equal(first, "short");
  assert.deepEqual(stopped.sort(), ["a", "b"]);
  assert.ok(g.signal.reason instanceof MemberExited);
  assert.equal((g.signal.reason as MemberExited).member, "short");
});

Deno.test("an error of the first member propagates after the others stop", async () => {
  let otherDone = false;
  const g = new LifetimeGroup()
    .add("fails", () => Promise.reject(new Error("boom")))
    .add("waits", async (signal) => {
      await aborted(signal);
      otherDone = true;
    });
  await assert.rejects(g.run(), /boom/);
  assert.equal(otherDone, true);
});

Deno.test("later errors do not replace the first result", async () => {
  const g = new LifetimeGroup()
    .add("ok", () => sleep(5))
    .add("fails-on-stop", async (signal) => {
      await aborted(signal);
      throw new Error("late");
    });
  assert.equal(await g.run(), "ok");
});

Deno.test("an outer signal stops every member", async () => {
  const outer = new AbortController();
  const g = new LifetimeGroup().add("a", (s) => aborted(s)).add("b", (s) => aborted(s));
  const p = g.run({ signal: outer.signal });
  outer.abort();
  await p;
  assert.equal(g.signal.aborted, true);
});

Deno.test("osSignals member returns on SIGTERM and stops the group", async () => {
  let seen: string | undefined;
  let otherStopped = false;
  const g = new LifetimeGroup()
    .add(
      "signals",
      osSignals((s) => {
        seen = s;
      }),
    )
    .add("server", async (signal) => {
      await aborted(signal);
      otherStopped = true;
    });
  const p = g.run();
  // Signal listeners do not keep the event loop alive; a timer does.
  const keepAlive = setInterval(() => {}, 1000);
  await sleep(20);
  Deno.kill(Deno.pid, "SIGTERM");
  try {
    assert.equal(await p, "signals");
  } finally {
    clearInterval(keepAlive);
  }
  assert.equal(seen, "SIGTERM");
  assert.equal(otherStopped, true);
});

Deno.test("sleep ends early on abort; backoff is capped and jittered", async () => {
  const c = new AbortController();
  const t0 = performance.now();
  const p = sleep(10_000, c.signal);
  c.abort();
  await p;
  assert.ok(performance.now() - t0 < 1000);
  for (let i = 0; i < 50; i++) {
    const ms = backoffMs(i, 100, 5000);
    assert.ok(ms >= 50 && ms <= 5000, String(ms));
  }
  assert.ok(backoffMs(0, 100, 5000) <= 100);
});
