/**
 * Worker entry of a data-plane isolate: waits for the init message, then
 * hands every message to the DataPlaneIsolate.
 */
import type { FromIsolate, ToIsolate } from "./dataplane_protocol.ts";
import { DataPlaneIsolate } from "./isolate.ts";

declare const self: {
  postMessage(m: FromIsolate): void;
  onmessage: ((e: MessageEvent<ToIsolate>) => void) | null;
  close(): void;
};

let isolate: DataPlaneIsolate | null = null;

// A stray rejection must not take the isolate (and its connections) down.
globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  isolate?.log.error("unhandled rejection in the data plane", { error: e.reason });
});

self.onmessage = (e: MessageEvent<ToIsolate>) => {
  const msg = e.data;
  if (msg.type === "init") {
    isolate = new DataPlaneIsolate(msg, (m) => self.postMessage(m));
    isolate.start();
    return;
  }
  if (!isolate) return;
  isolate.handle(msg).then(() => {
    if (msg.type === "stop") self.close();
  }, (err) => isolate?.log.error("data plane message failed", { type: msg.type, error: err }));
};
