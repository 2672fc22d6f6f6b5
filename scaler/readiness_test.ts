import assert from "node:assert/strict";
import { Readiness } from "./readiness.ts";

Deno.test("Readiness: start conditions gate started; live checks gate ready only", () => {
  const r = new Readiness(["listed"]);
  let answering = false;
  r.addCheck("an interceptor answering", () => answering);
  const changes: boolean[] = [];
  const off = r.onChange(() => changes.push(r.ready));
  assert.equal(r.started, false);
  assert.equal(r.reason(), "waiting for: listed, an interceptor answering");
  r.done("listed");
  assert.equal(r.started, true);
  assert.equal(r.ready, false);
  assert.equal(r.reason(), "waiting for: an interceptor answering");
  answering = true;
  assert.equal(r.ready, true);
  assert.equal(r.reason(), "ready");
  off();
  r.stopping();
  assert.equal(r.ready, false);
  assert.equal(r.reason(), "shutting down");
  assert.deepEqual(changes, [false]);
});

Deno.test("Readiness: wait resolves on the start conditions, not the live checks", async () => {
  const r = new Readiness(["listed"]);
  r.addCheck("never", () => false);
  const waiting = r.wait(1_000);
  r.done("listed");
  assert.equal(await waiting, true);
});
