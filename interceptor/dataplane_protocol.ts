/** Messages between the main isolate and the data-plane workers. */
import type { CounterLayout } from "./counters.ts";
import type { MetricsSnapshot } from "./metrics.ts";
import type { LiveRoute, ProxyConfig, TargetUpdate } from "./proxy_contract.ts";
import type { TracingConfig } from "../shared/config.ts";
import type { Level, LogSettings } from "../shared/log.ts";

export interface TlsSettings {
  port: number;
  /** The default certificate; "" for the cert store alone. */
  certPath: string;
  keyPath: string;
  certStorePaths: string[];
  /** KEDA_HTTP_PROXY_TLS_MIN_VERSION / _MAX_VERSION; absent = Deno's (1.2 to 1.3). */
  minVersion?: "TLSv1.2" | "TLSv1.3";
  maxVersion?: "TLSv1.2" | "TLSv1.3";
}

export interface InitMessage {
  type: "init";
  index: number;
  config: ProxyConfig;
  counters: { buffer: SharedArrayBuffer; layout: CounterLayout };
  listen: { hostname: string; port: number };
  /** Only one isolate terminates TLS (node:tls has no shared port). */
  tls: TlsSettings | null;
  logLevel: Level;
  /** Format and time encoding of the isolates' log lines (zap flags, LOG_FORMAT). */
  logSettings?: LogSettings;
  /** OpenTelemetry traces; each isolate starts its own SDK when enabled. */
  tracing?: TracingConfig;
}

export type ToIsolate =
  | InitMessage
  | { type: "routes"; version: number; routes: LiveRoute[] }
  | { type: "targets"; version: number; updates: TargetUpdate[] }
  | { type: "metrics"; id: number }
  | { type: "drain"; timeoutMs: number }
  /** Close open client connections after their next response (an isolate was added). */
  | { type: "recycle" }
  | { type: "stop" };

export type FromIsolate =
  | { type: "listening"; index: number; port: number; tlsPort?: number }
  | { type: "failed"; index: number; message: string }
  | { type: "ack"; index: number; version: number }
  | { type: "activity"; slot: number; active: boolean }
  | {
    type: "metrics";
    id: number;
    index: number;
    snapshot: MetricsSnapshot;
    connections: number;
  }
  | { type: "drained"; index: number };

/**
 * SO_REUSEPORT needs --unstable-net (or "unstable": ["net"] in deno.json);
 * without it Deno.listen({reusePort}) exits the process instead of throwing,
 * so look for another API behind the same flag first.
 */
export function reusePortAvailable(): boolean {
  return typeof (Deno as unknown as { listenDatagram?: unknown }).listenDatagram === "function";
}
