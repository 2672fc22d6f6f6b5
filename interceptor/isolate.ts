/**
 * One data-plane isolate: listens on the proxy port (SO_REUSEPORT, so the
 * kernel spreads connections over the isolates), serves them with an HttpProxy,
 * and applies the routes and endpoints the main isolate sends. Runs inside a
 * Worker in production and directly in tests.
 */
import { createLogger, type Logger } from "../shared/log.ts";
import type { Tracing } from "../shared/tracing.ts";
import { SharedCounters } from "./counters.ts";
import {
  type FromIsolate,
  type InitMessage,
  reusePortAvailable,
  type ToIsolate,
} from "./dataplane_protocol.ts";
import { RequestMetrics } from "./metrics.ts";
import { HttpProxy } from "./proxy.ts";
import type { TlsServer } from "./tls.ts";
import { backoffMs, sleep } from "../shared/lifetime.ts";

export class DataPlaneIsolate {
  readonly proxy: HttpProxy;
  readonly metrics = new RequestMetrics();
  readonly log: Logger;
  #listener: Deno.TcpListener | null = null;
  #tls: TlsServer | null = null;
  #accepting: Promise<void> | null = null;
  #tracing: Tracing | null = null;

  constructor(readonly init: InitMessage, readonly post: (m: FromIsolate) => void) {
    this.log = createLogger({
      level: init.logLevel,
      ...(init.logSettings?.format ? { format: init.logSettings.format } : {}),
      ...(init.logSettings?.timeEncoding ? { timeEncoding: init.logSettings.timeEncoding } : {}),
      fields: { component: "interceptor", isolate: init.index },
    });
    const counters = new SharedCounters(init.counters.buffer, init.counters.layout);
    this.proxy = new HttpProxy({
      config: init.config,
      counters,
      metrics: this.metrics,
      log: this.log,
      onActivity: (slot, active) => post({ type: "activity", slot, active }),
    });
  }

  /** Opens the listeners and starts accepting; reports listening or failed. */
  async start(): Promise<void> {
    const { index } = this.init;
    const up = this.init.config.upstreamTls;
    if (index === 0 && up) {
      // Once per process: the first isolate says how HTTPS apps are verified.
      if (up.skipVerify) {
        this.log.warn(
          "KEDA_HTTP_PROXY_TLS_SKIP_VERIFY=true: certificates of HTTPS apps are not verified",
        );
      }
      for (const note of up.notes) this.log.info("trusted for HTTPS apps", { source: note });
    }
    try {
      if (this.init.tracing) {
        const { startTracing } = await import("../shared/tracing.ts");
        this.#tracing = await startTracing(this.init.tracing, this.log, "keda-http-interceptor");
        this.proxy.tracing = this.#tracing;
      }
      this.#listener = Deno.listen({
        hostname: this.init.listen.hostname,
        port: this.init.listen.port,
        ...(reusePortAvailable() ? { reusePort: true } : {}),
      });
      let tlsPort: number | undefined;
      if (this.init.tls) {
        // node:tls costs memory in every isolate that loads it (README Measured): only where TLS is on.
        const { startTlsServer } = await import("./tls.ts");
        this.#tls = await startTlsServer({
          hostname: this.init.listen.hostname,
          settings: this.init.tls,
          log: this.log,
          onConnection: (conn, remoteIp, h2) => this.proxy.serve(conn, remoteIp, "https", h2),
        });
        tlsPort = this.#tls.port;
      }
      this.#accepting = this.#accept(this.#listener);
      this.post({
        type: "listening",
        index,
        port: (this.#listener.addr as Deno.NetAddr).port,
        ...(tlsPort !== undefined ? { tlsPort } : {}),
      });
    } catch (e) {
      this.post({ type: "failed", index, message: (e as Error).message });
    }
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    let failures = 0;
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
        failures = 0;
      } catch (e) {
        if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
        // E.g. too many open files: wait instead of spinning.
        this.log.warn("accept failed; retrying", { error: e });
        await sleep(backoffMs(failures++, 10, 1000));
        continue;
      }
      try {
        conn.setNoDelay(true);
        conn.setKeepAlive(true);
      } catch {
        // The connection may already be gone.
      }
      this.proxy.serve(conn, (conn.remoteAddr as Deno.NetAddr).hostname, "http");
    }
  }

  #stopAccepting(): void {
    try {
      this.#listener?.close();
    } catch {
      // Already closed.
    }
    this.#listener = null;
    this.#tls?.close();
    this.#tls = null;
  }

  async handle(msg: ToIsolate): Promise<void> {
    switch (msg.type) {
      case "routes":
        this.proxy.setRoutes(msg.routes);
        this.post({ type: "ack", index: this.init.index, version: msg.version });
        break;
      case "targets":
        this.proxy.setTargets(msg.updates);
        this.post({ type: "ack", index: this.init.index, version: msg.version });
        break;
      case "metrics":
        this.post({
          type: "metrics",
          id: msg.id,
          index: this.init.index,
          snapshot: this.metrics.snapshot(),
          connections: this.proxy.connections,
        });
        break;
      case "drain":
        this.#stopAccepting();
        // Until the accept loop has ended the listening socket may still be
        // open, and the kernel would keep handing it new connections.
        await this.#accepting;
        await this.proxy.drain(msg.timeoutMs);
        this.post({ type: "drained", index: this.init.index });
        break;
      case "recycle":
        this.proxy.recycle();
        break;
      case "stop":
        this.#stopAccepting();
        this.proxy.close();
        await this.#accepting;
        // What is still batched goes out before the isolate ends.
        await this.#tracing?.shutdown().catch((e) =>
          this.log.warn("could not export the last spans", { error: e })
        );
        break;
      case "init":
        break;
    }
  }
}
