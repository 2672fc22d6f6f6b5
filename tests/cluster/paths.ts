/**
 * Well-known locations and versions of the local test cluster. Everything a
 * cluster creates on disk lives under STATE_ROOT/<id>/ so a later run can find
 * and remove what a crashed run left behind.
 */

export const K8S_VERSION = Deno.env.get("K8S_VERSION") ?? "v1.34.4";
export const ETCD_VERSION = Deno.env.get("ETCD_VERSION") ?? "v3.6.5";
export const KEDA_MODULE = "github.com/kedacore/keda/v2";
export const KEDA_VERSION = Deno.env.get("KEDA_VERSION") ?? "v2.20.2";

/** Root of all cluster state dirs; one subdirectory per cluster id. */
export const STATE_ROOT = Deno.env.get("KEDAHTTP_CLUSTER_STATE_ROOT") ??
  "/tmp/keda-http-deno-cluster";

/** The id `deno task cluster up` uses, so `down` and `status` can find it. */
export const DEV_CLUSTER_ID = "dev";

/** Binary cache shared with tests/cluster/build_binaries.sh. */
export function cacheDir(): string {
  const explicit = Deno.env.get("KEDAHTTP_CACHE_DIR");
  if (explicit) return explicit;
  const home = Deno.env.get("HOME") ?? "/root";
  return `${home}/.cache/keda-http-deno`;
}

/** The repository root (tests/cluster/ is two levels below it). */
export const REPO_ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
export const CLUSTER_DIR = new URL("./", import.meta.url).pathname.replace(/\/$/, "");

/** Pod network: one Linux bridge on the host, pods get addresses from it. */
export const BRIDGE = "khd0";
export const BRIDGE_IP = "10.244.0.1";
export const POD_CIDR = "10.244.0.0/16";
export const SERVICE_CIDR = "10.96.0.0/16";
export const KUBERNETES_SERVICE_IP = "10.96.0.1";
/** Prefix of every pod network namespace (`ip netns list`). */
export const NETNS_PREFIX = "khd-";
/** Prefix of the host side of every pod veth (interface names max 15 chars). */
export const VETH_PREFIX = "khdv";
/** Comment on every iptables rule we add ourselves, so cleanup can find them. */
export const IPTABLES_COMMENT = "keda-http-deno";
/** File that says which cluster owns the (single) pod network of this machine. */
export const NODE_OWNER_FILE = `${STATE_ROOT}/node.owner`;
/** The Node object the node agent registers. */
export const NODE_NAME = "khd-node";

export function stateDirFor(id: string): string {
  return `${STATE_ROOT}/${id}`;
}
