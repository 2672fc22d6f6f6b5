/**
 * Finds the Kubernetes binaries the local cluster runs. Order, per binary:
 *  1. envtest conventions: TEST_ASSET_<NAME> (e.g. TEST_ASSET_KUBE_APISERVER,
 *     TEST_ASSET_ETCD, TEST_ASSET_KUBE_CONTROLLER_MANAGER), then the
 *     KUBEBUILDER_ASSETS directory;
 *  2. the cache that tests/cluster/build_binaries.sh fills;
 *  3. otherwise runs build_binaries.sh for what is missing, streaming its
 *     progress to stderr (the first build takes a while, see README.md).
 */

import { cacheDir, CLUSTER_DIR, ETCD_VERSION, K8S_VERSION } from "./paths.ts";

export type BinaryName =
  | "etcd"
  | "kube-apiserver"
  | "kube-controller-manager"
  | "kube-scheduler"
  | "kube-proxy"
  | "kubectl";

export type Binaries = Record<BinaryName, string>;

function envName(name: BinaryName): string {
  return `TEST_ASSET_${name.toUpperCase().replaceAll("-", "_")}`;
}

/** A regular file with an execute bit (any regular file where the platform reports no mode). */
export function isExecutable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Where the cache (build_binaries.sh) keeps a binary. */
export function cachedPath(name: BinaryName): string {
  return name === "etcd"
    ? `${cacheDir()}/etcd-${ETCD_VERSION}/bin/etcd`
    : `${cacheDir()}/k8s-${K8S_VERSION}/bin/${name}`;
}

/** The path of a binary if one is already available, without building. */
export function findBinary(name: BinaryName): string | undefined {
  const explicit = Deno.env.get(envName(name));
  if (explicit) {
    if (!isExecutable(explicit)) {
      throw new Error(
        `${envName(name)}=${explicit} is not an executable file; fix or unset it`,
      );
    }
    return explicit;
  }
  const assets = Deno.env.get("KUBEBUILDER_ASSETS");
  if (assets && isExecutable(`${assets}/${name}`)) return `${assets}/${name}`;
  const cached = cachedPath(name);
  return isExecutable(cached) ? cached : undefined;
}

/**
 * Returns paths for the given binaries, building the missing ones with
 * build_binaries.sh (progress goes to stderr; concurrent callers wait for one
 * build through the script's lock).
 */
export async function ensureBinaries(
  names: BinaryName[],
  options: { signal?: AbortSignal } = {},
): Promise<Partial<Binaries>> {
  const found: Partial<Binaries> = {};
  const missing: BinaryName[] = [];
  for (const name of names) {
    const path = findBinary(name);
    if (path) found[name] = path;
    else missing.push(name);
  }
  if (missing.length === 0) return found;

  const child = new Deno.Command("bash", {
    args: [`${CLUSTER_DIR}/build_binaries.sh`, ...missing],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
    signal: options.signal,
  }).spawn();
  const status = await child.status;
  if (!status.success) {
    throw new Error(
      `building ${missing.join(", ")} with tests/cluster/build_binaries.sh failed ` +
        `(exit ${status.code}); see its output above. Needs Go and the Go module proxy; ` +
        `or point KUBEBUILDER_ASSETS / TEST_ASSET_* at prebuilt binaries`,
    );
  }
  for (const name of missing) {
    const path = findBinary(name);
    if (!path) {
      throw new Error(`build_binaries.sh succeeded but ${cachedPath(name)} is missing`);
    }
    found[name] = path;
  }
  return found;
}
