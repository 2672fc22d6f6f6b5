import assert from "node:assert/strict";
import { FlagError } from "../shared/go_flags.ts";
import { interceptorIgnoredEnv, parseInterceptorFlags, withChartAliases } from "./startup.ts";

Deno.test("interceptor flags: the Go chart's zap flags set our level and format", () => {
  const f = parseInterceptorFlags([
    "--zap-log-level=debug",
    "--zap-encoder=console",
    "--zap-time-encoding=rfc3339",
    "--zap-stacktrace-level=error",
  ]);
  assert.equal(f.log.level, "debug");
  assert.equal(f.log.format, "console");
  assert.equal(f.log.timeEncoding, "rfc3339");
  assert.deepEqual(parseInterceptorFlags([]).log, {});
});

Deno.test("interceptor flags: an unknown flag or a bad value names itself", () => {
  assert.throws(() => parseInterceptorFlags(["--leader-elect"]), (e: unknown) => {
    assert.ok(e instanceof FlagError);
    assert.match(e.message, /--leader-elect/);
    return true;
  });
  assert.throws(() => parseInterceptorFlags(["--zap-encoder=xml"]), /--zap-encoder: "xml"/);
});

Deno.test("interceptor env: what the Go chart sets and we do not use is logged, warn when it asks", () => {
  const lines = interceptorIgnoredEnv({
    KEDA_HTTP_MAX_IDLE_CONNS: "1000",
    KEDA_HTTP_TLS_SKIP_VERIFY: "false",
    KEDA_HTTP_TLS_MIN_VERSION: "1.3",
    PROFILING_BIND_ADDRESS: "127.0.0.1:6060",
    KEDA_HTTP_PROXY_PORT: "8080",
  });
  assert.deepEqual(lines.map((l) => [l.level, l.msg.split("=")[0]]), [
    ["info", "KEDA_HTTP_MAX_IDLE_CONNS"],
    ["warn", "KEDA_HTTP_TLS_MIN_VERSION"],
    ["info", "KEDA_HTTP_TLS_SKIP_VERIFY"],
    ["warn", "PROFILING_BIND_ADDRESS"],
  ]);
  assert.match(lines[1]!.msg, /set KEDA_HTTP_PROXY_TLS_MIN_VERSION/);
});

Deno.test("interceptor env: the chart's max pending requests is our held-request cap", () => {
  assert.equal(
    withChartAliases({ KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS: "50" }).env
      .KEDA_HTTP_MAX_HELD_REQUESTS,
    "50",
  );
  const zero = withChartAliases({ KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS: "0" });
  assert.equal(zero.env.KEDA_HTTP_MAX_HELD_REQUESTS, undefined, "0 keeps our bound");
  assert.match(zero.notes[0]!, /keeps the bound/);
  const both = withChartAliases({
    KEDA_HTTP_COLD_START_MAX_PENDING_REQUESTS: "50",
    KEDA_HTTP_MAX_HELD_REQUESTS: "7",
  });
  assert.equal(both.env.KEDA_HTTP_MAX_HELD_REQUESTS, "7");
  assert.match(both.notes[0]!, /wins/);
  assert.deepEqual(withChartAliases({}).notes, []);
});
