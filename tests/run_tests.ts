/**
 * `deno task test [deno test args…]`: runs `deno test -A` over the repo with
 * one shared local cluster.
 *
 * When any selected test file (or a local module it imports) uses
 * tests/cluster/mod.ts, a cluster is started once, exported to the tests as
 * KEDAHTTP_TEST_KUBECONFIG (startCluster() then attaches instead of starting
 * its own) and stopped afterwards, also when tests fail or the run is
 * interrupted. deno test's output passes through unchanged (CI parses its
 * summary line) and its exit code is ours.
 *
 * Env: KEDAHTTP_TEST_KUBECONFIG (use that cluster, start none),
 * KEDAHTTP_TEST_NO_CLUSTER=1 (never start one; cluster tests start their own),
 * KEDAHTTP_KEEP_CLUSTER_LOGS=<dir> (copy cluster and pod logs there on stop).
 */

import { createLogger, loggerFromEnv } from "../shared/log.ts";
import { type Cluster, launchCluster } from "./cluster/mod.ts";
import { REPO_ROOT } from "./cluster/paths.ts";

const log = Deno.env.get("LOG_LEVEL")
  ? loggerFromEnv("run-tests")
  : createLogger({ level: "info", fields: { component: "run-tests" } });
const args = Deno.args;

const SKIP_DIRS = new Set([".git", "node_modules", "dist", ".cache", ".scratch", "vendor"]);
const TEST_FILE = /(^|[/_.])test\.(ts|tsx|js|mjs|mts)$/;

function* walk(path: string): Generator<string> {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    return;
  }
  if (info.isFile) {
    yield path;
    return;
  }
  for (const e of Deno.readDirSync(path)) {
    if (e.name.startsWith(".") || SKIP_DIRS.has(e.name)) continue;
    const p = `${path}/${e.name}`;
    if (e.isDirectory) yield* walk(p);
    else if (e.isFile && TEST_FILE.test(e.name)) yield p;
  }
}

const IMPORT = /(?:from\s+|import\s*\(\s*|import\s+)["'](\.{1,2}\/[^"']+)["']/g;

/** True when the module (transitively, through relative imports) uses the cluster. */
function usesCluster(file: string, seen = new Set<string>()): boolean {
  if (seen.has(file)) return false;
  seen.add(file);
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch {
    return false;
  }
  const dir = file.replace(/\/[^/]*$/, "");
  for (const m of text.matchAll(IMPORT)) {
    const target = new URL(m[1]!, `file://${dir}/`).pathname;
    if (target === `${REPO_ROOT}/tests/cluster/mod.ts`) return true;
    if (usesCluster(target, seen)) return true;
  }
  return false;
}

/** deno test flags that take their value as the next argument. */
const VALUE_FLAGS = new Set([
  "--filter",
  "--reporter",
  "--junit-path",
  "--config",
  "-c",
  "--location",
  "--seed",
  "--import-map",
  "--lock",
  "--env-file",
]);

function selectedTestFiles(): string[] {
  // Positional args (not flags, not flag values, not after `--`) select
  // files/dirs, as for deno test.
  const paths: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") break;
    if (a.startsWith("-")) {
      if (VALUE_FLAGS.has(a)) i++;
      continue;
    }
    paths.push(a.startsWith("/") ? a : `${Deno.cwd()}/${a}`);
  }
  const roots = paths.length ? paths : [REPO_ROOT];
  return roots.flatMap((r) => [...walk(r)]);
}

let cluster: Cluster | undefined;
const env: Record<string, string> = {};
if (Deno.env.get("KEDAHTTP_TEST_KUBECONFIG")) {
  log.info("using the cluster from KEDAHTTP_TEST_KUBECONFIG", {
    kubeconfig: Deno.env.get("KEDAHTTP_TEST_KUBECONFIG"),
  });
} else if (Deno.env.get("KEDAHTTP_TEST_NO_CLUSTER") === "1") {
  log.info("KEDAHTTP_TEST_NO_CLUSTER=1: not starting a shared cluster");
} else {
  const files = selectedTestFiles();
  const needing = files.filter((f) => usesCluster(f));
  if (needing.length) {
    const node = Deno.uid() === 0;
    if (!node) log.warn("not root: starting a control-plane-only cluster (pods will not run)");
    const t0 = Date.now();
    try {
      cluster = await launchCluster({ node, log });
    } catch (e) {
      log.error("could not start the test cluster", { error: e });
      Deno.exit(1);
    }
    env.KEDAHTTP_TEST_KUBECONFIG = cluster.kubeconfigPath;
    log.info("test cluster ready", {
      ms: Date.now() - t0,
      server: cluster.server,
      logs: cluster.stateDir,
      files: needing.length,
    });
  }
}

const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", ...args],
  env,
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();

// Ctrl-C reaches deno test too (same process group); we stay alive to stop
// the cluster afterwards. SIGTERM is passed on.
const forward = (sig: Deno.Signal) => () => {
  try {
    child.kill(sig);
  } catch {
    // Already exited.
  }
};
const onInt = forward("SIGINT");
const onTerm = forward("SIGTERM");
Deno.addSignalListener("SIGINT", onInt);
Deno.addSignalListener("SIGTERM", onTerm);
const status = await child.status;
Deno.removeSignalListener("SIGINT", onInt);
Deno.removeSignalListener("SIGTERM", onTerm);

if (cluster) {
  if (!status.success && !Deno.env.get("KEDAHTTP_KEEP_CLUSTER_LOGS")) {
    log.info("tests failed; set KEDAHTTP_KEEP_CLUSTER_LOGS=<dir> to keep cluster and pod logs");
  }
  await cluster.stop();
}
Deno.exit(status.code);
