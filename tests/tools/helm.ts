/**
 * Helm, built from its Go module (helm.sh/helm/v4, the version that
 * tests/tools/helm/go.mod pins with its `tool` directive) into
 * ~/.cache/keda-http-deno/helm when that go.mod or go.sum changes, never into
 * the checkout. To move to another version: in tests/tools/helm run
 * `go get -tool helm.sh/helm/v4/cmd/helm@vX.Y.Z`.
 *
 * HELM_BIN, when set, names a helm binary to use instead (no build).
 */

import { buildGoTool } from "./go_tool.ts";

const SRC_DIR = new URL("./helm/", import.meta.url).pathname;
export const HELM_PKG = "helm.sh/helm/v4/cmd/helm";

let built: Promise<string> | undefined;

/** Helm's config, cache and data under `home`: a run leaves nothing in $HOME. */
export function helmEnv(home: string): Record<string, string> {
  return {
    HELM_CACHE_HOME: `${home}/cache`,
    HELM_CONFIG_HOME: `${home}/config`,
    HELM_DATA_HOME: `${home}/data`,
  };
}

/** The helm binary's path: built on first use (once per process), cached after that. */
export function helmBinary(): Promise<string> {
  return built ??= build();
}

async function build(): Promise<string> {
  const given = Deno.env.get("HELM_BIN");
  if (given) return given;
  const version = (await Deno.readTextFile(SRC_DIR + "go.mod"))
    .match(/^\s*helm\.sh\/helm\/v4 (v\S+)/m)?.[1] ?? "(see tests/tools/helm/go.mod)";
  try {
    return await buildGoTool({
      name: "helm",
      srcDir: SRC_DIR,
      pkg: HELM_PKG,
      // What Helm's own release build stamps in, so `helm version` says the pinned version.
      ldflags: version.startsWith("v")
        ? [`-X helm.sh/helm/v4/internal/version.version=${version}`]
        : [],
      what: `helm ${version} (${HELM_PKG}, pinned by tests/tools/helm/go.mod)`,
      needs: `Go >= 1.26 and helm.sh/helm/v4@${version} with its dependencies (~0.5 GB;` +
        ` \`go mod download\` in tests/tools/helm fetches them ahead)`,
    });
  } catch (e) {
    throw new Error(
      `${(e as Error).message}\nOr set HELM_BIN to an installed helm v4 binary to skip the build.`,
    );
  }
}
