import assert from "node:assert/strict";
import { createLogger } from "../shared/log.ts";
import { aborted } from "../shared/lifetime.ts";
import { NotLeaderError, processKeys, runTogether } from "./worker.ts";
import { WorkQueue } from "./work_queue.ts";

const log = createLogger({ level: "error" });

Deno.test("processKeys: results, requeue-after, backoff on failure, pause on NotLeaderError", async () => {
  const queue = new WorkQueue({ baseDelayMs: 1, maxDelayMs: 1 });
  const stop = new AbortController();
  const seen: string[] = [];
  const results: string[] = [];
  let failOnce = true;
  const done = processKeys({
    queue,
    log,
    reconcile: (key) => {
      seen.push(key);
      if (key === "b" && failOnce) {
        failOnce = false;
        return Promise.reject(new Error("boom"));
      }
      if (key === "stop") return Promise.reject(new NotLeaderError());
      return Promise.resolve(key === "a" && seen.length === 1 ? { requeueAfterMs: 1 } : {});
    },
    onResult: (r) => results.push(r),
  }, stop.signal);
  queue.add("a");
  queue.add("b");
  while (seen.filter((k) => k === "a").length < 2 || seen.filter((k) => k === "b").length < 2) {
    await new Promise((r) => setTimeout(r, 2));
  }
  assert.deepEqual(results.filter((r) => r === "error"), ["error"]);
  queue.add("stop");
  while (!seen.includes("stop")) await new Promise((r) => setTimeout(r, 2));
  // Paused: the key is back in the queue for the next leader, not retried here.
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(seen.filter((k) => k === "stop").length, 1);
  assert.equal(queue.length, 1);
  stop.abort();
  await done;
  queue.shutDown();
});

Deno.test("runTogether: the first failure stops the others and is rethrown", async () => {
  let otherStopped = false;
  await assert.rejects(
    runTogether(new AbortController().signal, [
      () => Promise.reject(new Error("first")),
      async (s) => {
        await aborted(s);
        otherStopped = true;
      },
    ]),
    /first/,
  );
  assert.ok(otherStopped);
  const stop = new AbortController();
  const both = runTogether(stop.signal, [(s) => aborted(s), (s) => aborted(s)]);
  stop.abort();
  await both;
});
