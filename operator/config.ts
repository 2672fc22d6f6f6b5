/**
 * The operator's configuration: the Go operator's flags (flags.ts) over the
 * environment (shared/config.ts's operator schema, with the Go add-on's
 * deprecated and longer names applied). Pure given its inputs, so main.ts
 * stays wiring and tests need no process.
 */
import {
  ConfigError,
  type OperatorConfig,
  operatorEnvSchema,
  parseConfig,
  withDeprecatedEnv,
  withOperatorEnvAliases,
} from "../shared/config.ts";
import { type BindAddress, type OperatorFlags, parseOperatorFlags } from "./flags.ts";

export interface LoadedOperatorConfig {
  config: OperatorConfig;
  flags: OperatorFlags;
  /**
   * The probe server (/healthz, /readyz) when it needs a listener of its
   * own; null when it is off or shares the admin port (Go's default 8081 is
   * our admin port's default too, and the admin server answers both paths).
   */
  probe: BindAddress | null;
  /** Deprecated names used and flags accepted but ignored: log each once. */
  warnings: string[];
}

/**
 * Throws FlagError for a bad flag and ConfigError listing every bad
 * variable (naming the flag that set it, when one did).
 */
export function loadOperatorConfig(
  args: readonly string[],
  rawEnv: Record<string, string | undefined>,
): LoadedOperatorConfig {
  const flags = parseOperatorFlags(args);
  const deprecated = withDeprecatedEnv("operator", rawEnv);
  const env = { ...withOperatorEnvAliases(deprecated.env), ...flags.env };
  let config: OperatorConfig;
  try {
    config = parseConfig("operator", operatorEnvSchema(), env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    throw new ConfigError("operator", e.problems.map((p) => withOrigin(p, flags.origin)));
  }
  const probe = !flags.probeExplicit || (flags.probe && flags.probe.port === config.adminPort)
    ? null
    : flags.probe;
  if (probe && config.prometheus.enabled && probe.port === config.prometheus.port) {
    throw new ConfigError("operator", [
      `--health-probe-bind-address=":${probe.port}": must differ from the metrics port (${config.prometheus.port}, from ${
        flags.origin.OTEL_PROM_EXPORTER_PORT ?? "OTEL_PROM_EXPORTER_PORT"
      }); both would listen on it`,
    ]);
  }
  return {
    config,
    flags,
    probe,
    warnings: [...deprecated.warnings, ...flags.notes],
  };
}

/** `NAME="v": why` becomes `NAME="v" (set by --flag): why` when a flag set NAME. */
function withOrigin(problem: string, origin: Record<string, string>): string {
  const name = /^[A-Z0-9_]+/.exec(problem)?.[0];
  const flag = name ? origin[name] : undefined;
  if (!flag) return problem;
  const colon = problem.indexOf(": ");
  return colon < 0
    ? `${problem} (set by ${flag})`
    : `${problem.slice(0, colon)} (set by ${flag})${problem.slice(colon)}`;
}
