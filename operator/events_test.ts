import assert from "node:assert/strict";
import { KubeApiError, type KubeClient, type KubeObject } from "../shared/kube.ts";
import { createLogger } from "../shared/log.ts";
import { EventRecorder } from "./events.ts";

function fakeClient(existing: Set<string>) {
  const created: KubeObject[] = [];
  const client = {
    create(_path: string, body: KubeObject) {
      const name = body.metadata!.name!;
      if (existing.has(name)) {
        return Promise.reject(new KubeApiError(409, "AlreadyExists", `${name} already exists`));
      }
      existing.add(name);
      created.push(body);
      return Promise.resolve(body);
    },
  } as unknown as KubeClient;
  return { client, created };
}

Deno.test("events: warningOnce names the Event after the uid, so a second create is no write", async () => {
  const names = new Set<string>();
  const lines: string[] = [];
  const log = createLogger({ level: "info", sink: (l) => lines.push(l) });
  let writes = 0;
  const obj: KubeObject = {
    apiVersion: "http.keda.sh/v1alpha1",
    kind: "HTTPScaledObject",
    metadata: { name: "web", namespace: "shop", uid: "1234-abcd" },
  };
  for (let process = 0; process < 2; process++) {
    // Two recorders stand for a restart: the second finds the Event there.
    const { client, created } = fakeClient(names);
    const rec = new EventRecorder({
      client,
      log,
      component: "c",
      instance: `i${process}`,
      onWrite: () => writes++,
    });
    rec.warningOnce(obj, "Deprecated", "move on");
    await rec.flush();
    if (process === 0) {
      assert.equal(created.length, 1);
      assert.equal(created[0]!.metadata!.name, "web.deprecated.1234-abcd");
      assert.equal(created[0]!.type, "Warning");
      assert.equal(created[0]!.reason, "Deprecated");
      assert.deepEqual(created[0]!.involvedObject, {
        apiVersion: "http.keda.sh/v1alpha1",
        kind: "HTTPScaledObject",
        name: "web",
        namespace: "shop",
        uid: "1234-abcd",
        resourceVersion: undefined,
      });
    } else {
      assert.equal(created.length, 0);
    }
  }
  assert.equal(writes, 1);
  assert.deepEqual(lines.filter((l) => l.includes('"warn"')), [], "AlreadyExists is no warning");

  // A name at the 253-character limit still yields a valid Event name.
  const { client, created } = fakeClient(new Set());
  const rec = new EventRecorder({ client, log, component: "c", instance: "i" });
  rec.warningOnce(
    {
      metadata: {
        name: `${"a".repeat(200)}-${"b".repeat(52)}`,
        namespace: "x",
        uid: "u".repeat(36),
      },
    },
    "Deprecated",
    "m",
  );
  await rec.flush();
  const name = created[0]!.metadata!.name!;
  assert.ok(name.length <= 253, `${name.length}`);
  assert.match(name, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
});
