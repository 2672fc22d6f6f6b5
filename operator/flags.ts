/**
 * The Go operator's command-line flags (operator/main.go of the Go add-on,
 * which its Helm chart passes), read with the same meaning and mapped onto
 * our configuration. Flags override the environment: each flag that has an
 * env counterpart is turned into that variable before the env schema parses
 * it, so one schema keeps every check (e.g. port clashes). Pure.
 */
import {
  describeFlags,
  FlagError,
  type FlagSpec,
  parseGoFlags,
  ZAP_FLAGS,
  zapSettings,
} from "../shared/go_flags.ts";
import type { LogSettings } from "../shared/log.ts";

export const OPERATOR_FLAGS: readonly FlagSpec[] = [
  {
    name: "metrics-bind-address",
    help:
      'where Prometheus metrics are served, [host]:port ("0" = off); sets OTEL_PROM_EXPORTER_PORT',
  },
  {
    name: "health-probe-bind-address",
    help: 'where /healthz and /readyz are served, [host]:port (default ":8081"; "0" = off)',
  },
  {
    name: "leader-elect",
    bool: true,
    help: "leader election; sets KEDA_HTTP_OPERATOR_LEADER_ELECTION",
  },
  { name: "metrics-secure", bool: true, help: "accepted; metrics are plain HTTP here" },
  { name: "metrics-auth", bool: true, help: "accepted; metrics need no authentication here" },
  { name: "metrics-cert-dir", help: "accepted; unused (metrics are plain HTTP here)" },
  { name: "profiling-bind-address", help: "accepted; no profiling endpoint here" },
  ...ZAP_FLAGS,
];

export interface BindAddress {
  /** "" = all interfaces. */
  hostname: string;
  port: number;
}

export interface OperatorFlags {
  /** Variables the flags set; they win over the process environment. */
  env: Record<string, string>;
  /** Which flag set each of those variables, for error messages. */
  origin: Record<string, string>;
  /** The probe server; null when disabled with "0". */
  probe: BindAddress | null;
  /**
   * --health-probe-bind-address was given. Without it the admin port answers
   * /healthz and /readyz and no second listener opens (two local replicas
   * would fight over :8081); the Go chart passes it, so there it listens.
   */
  probeExplicit: boolean;
  /** Interface the metrics listener binds to ("" = all). */
  metricsHostname: string;
  log: LogSettings;
  /** Things accepted but not done, each to log once at start. */
  notes: string[];
  /** -h / --help was given. */
  help: boolean;
}

export const DEFAULT_PROBE: BindAddress = { hostname: "", port: 8081 };

/** Go's net.Listen address: "host:port", ":port", "[v6]:port"; "0" = disabled. */
export function parseBindAddress(flag: string, raw: string): BindAddress | null {
  const v = raw.trim();
  if (v === "0") return null;
  const m = /^(\[[^\]]*\]|[^:]*):(\d+)$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) {
    throw new FlagError(
      `flag --${flag}: "${raw}" is not an address; use [host]:port with a port from 1 to 65535 (e.g. ":8081"), or "0" to turn it off`,
    );
  }
  return { hostname: m[1]!.replace(/^\[|\]$/g, ""), port };
}

/** Reads the operator's arguments; throws FlagError naming the flag (and value) at fault. */
export function parseOperatorFlags(args: readonly string[]): OperatorFlags {
  const raw = parseGoFlags(args, OPERATOR_FLAGS);
  const env: Record<string, string> = {};
  const origin: Record<string, string> = {};
  const set = (name: string, value: string, flag: string) => {
    env[name] = value;
    origin[name] = `--${flag}`;
  };
  let metricsHostname = "";
  if (raw["metrics-bind-address"] !== undefined) {
    const a = parseBindAddress("metrics-bind-address", raw["metrics-bind-address"]);
    set("OTEL_PROM_EXPORTER_ENABLED", a ? "true" : "false", "metrics-bind-address");
    if (a) {
      set("OTEL_PROM_EXPORTER_PORT", String(a.port), "metrics-bind-address");
      metricsHostname = a.hostname;
    }
  }
  const probe = raw["health-probe-bind-address"] === undefined
    ? DEFAULT_PROBE
    : parseBindAddress("health-probe-bind-address", raw["health-probe-bind-address"]);
  if (raw["leader-elect"] !== undefined) {
    set("KEDA_HTTP_OPERATOR_LEADER_ELECTION", raw["leader-elect"], "leader-elect");
  }
  const zap = zapSettings(raw);
  const notes = [...zap.notes];
  if (raw["metrics-secure"] === "true") {
    notes.push(
      "--metrics-secure ignored: metrics are served over plain HTTP; scrape them with http (in the Go chart: operator.metrics.secure=false)",
    );
  }
  if (raw["metrics-auth"] === "true") {
    notes.push(
      "--metrics-auth ignored: metrics need no token here; restrict the port with a NetworkPolicy if needed",
    );
  }
  if (raw["metrics-cert-dir"] !== undefined) {
    notes.push("--metrics-cert-dir ignored: metrics are served over plain HTTP");
  }
  if (raw["profiling-bind-address"] !== undefined) {
    notes.push("--profiling-bind-address ignored: there is no pprof endpoint in this operator");
  }
  return {
    env,
    origin,
    probe,
    probeExplicit: raw["health-probe-bind-address"] !== undefined,
    metricsHostname,
    log: zap.log,
    notes,
    help: raw.help === "true",
  };
}

/** The accepted flags, for --help. */
export function operatorUsage(): string {
  return `operator flags (each overrides its environment variable):\n${
    describeFlags(OPERATOR_FLAGS)
  }`;
}
