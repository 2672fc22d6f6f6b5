/**
 * The pod network of the single local node: a Linux bridge (khd0,
 * 10.244.0.1/16) on the host; every pod gets a network namespace `khd-<n>`
 * with a veth pair whose host end is a bridge port (hairpin on, so a pod can
 * reach itself through a ClusterIP) and an address from 10.244.0.0/16.
 *
 * Traffic stays on this machine: pods have no NAT to the outside and a
 * FORWARD rule drops anything leaving the bridge for another interface. The
 * service range is routed to the bridge so a ClusterIP without kube-proxy
 * rules never leaves through eth0 either.
 *
 * Only one cluster per machine can own this network (kube-proxy programs
 * global iptables chains); NODE_OWNER_FILE records which one does.
 */

import type { Logger } from "../../shared/log.ts";
import { sleep } from "../../shared/lifetime.ts";
import {
  BRIDGE,
  BRIDGE_IP,
  DEV_CLUSTER_ID,
  IPTABLES_COMMENT,
  NETNS_PREFIX,
  NODE_OWNER_FILE,
  SERVICE_CIDR,
  STATE_ROOT,
  stateDirFor,
  VETH_PREFIX,
} from "./paths.ts";
import { aliveWith, run } from "./processes.ts";

const SYSCTLS = {
  ipForward: "/proc/sys/net/ipv4/ip_forward",
  bridgeNf: "/proc/sys/net/bridge/bridge-nf-call-iptables",
};
const SAVED_SYSCTLS = `${STATE_ROOT}/node.sysctls.json`;
/** Directories we created on the host as mount points for pod volumes. */
const CREATED_DIRS = `${STATE_ROOT}/node.created-dirs`;

/**
 * Makes sure a directory exists on the host (bind mounts inside a pod need a
 * mount point, and pods share the host's file system). Directories we create
 * are recorded and removed again, when empty, by teardownHostNetwork.
 */
export async function ensureMountPoint(path: string, file = false): Promise<void> {
  const parts = path.split("/").filter(Boolean);
  let cur = "";
  for (let i = 0; i < parts.length; i++) {
    cur += `/${parts[i]}`;
    const last = i === parts.length - 1;
    try {
      await Deno.lstat(cur);
      continue;
    } catch {
      // Missing: create it below.
    }
    try {
      if (last && file) await Deno.writeTextFile(cur, "", { createNew: true });
      else await Deno.mkdir(cur);
    } catch (e) {
      // Two pods starting at once can race for the same mount point (KEDA's
      // two pods both mount /certs); the other one made it.
      if (e instanceof Deno.errors.AlreadyExists) continue;
      throw e;
    }
    await Deno.writeTextFile(CREATED_DIRS, cur + "\n", { append: true });
  }
}

async function removeCreatedMountPoints(): Promise<void> {
  let list: string[] = [];
  try {
    list = (await Deno.readTextFile(CREATED_DIRS)).split("\n").filter(Boolean);
  } catch {
    return;
  }
  // Deepest first; Deno.remove without recursive only removes empty dirs.
  for (const p of [...new Set(list)].sort((a, b) => b.length - a.length)) {
    try {
      const info = await Deno.lstat(p);
      if (info.isFile && info.size === 0) await Deno.remove(p);
      else if (info.isDirectory) await Deno.remove(p);
    } catch {
      // Not empty, in use or gone: leave it.
    }
  }
  await Deno.remove(CREATED_DIRS).catch(() => {});
}

async function have(cmd: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", `command -v ${cmd}`],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Checks for root and the host tools a node needs (ip, iptables, conntrack);
 * installs iptables and conntrack with apt-get when missing and possible.
 */
export async function ensureHostTools(log: Logger): Promise<void> {
  if (Deno.uid() !== 0) {
    throw new Error(
      "a cluster with a node needs root (network namespaces, bridge, iptables); " +
        "run as root or use startCluster({ node: false })",
    );
  }
  if (!await have("ip")) {
    throw new Error("the `ip` command (iproute2) is missing; install iproute2");
  }
  const missing: string[] = [];
  if (!await have("iptables") || !await have("iptables-restore")) missing.push("iptables");
  if (!await have("conntrack")) missing.push("conntrack");
  if (!missing.length) return;
  if (!await have("apt-get")) {
    throw new Error(`kube-proxy needs ${missing.join(" and ")}; install them and retry`);
  }
  log.info("installing host packages kube-proxy needs", { packages: missing });
  const env = { DEBIAN_FRONTEND: "noninteractive", PATH: Deno.env.get("PATH") ?? "" };
  let res = await run("apt-get", ["install", "-y", "-qq", ...missing], { allowFail: true, env });
  if (!res.success) {
    await run("apt-get", ["update", "-qq"], { allowFail: true, env });
    res = await run("apt-get", ["install", "-y", "-qq", ...missing], { allowFail: true, env });
  }
  if (!res.success) {
    throw new Error(
      `could not install ${missing.join(" ")} (apt-get: ${res.stderr.trim().slice(-300)}); ` +
        `run \`apt-get update && apt-get install -y iptables conntrack\` and retry`,
    );
  }
}

interface Owner {
  id: string;
  pid: number;
}

function readOwner(): Owner | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(NODE_OWNER_FILE)) as Owner;
  } catch {
    return undefined;
  }
}

function ownerAlive(o: Owner): boolean {
  return aliveWith(o.pid, `--id=${o.id} `);
}

/**
 * Claims the machine's pod network for cluster `id` (process `pid`). Waits
 * for another test cluster to finish (up to waitMs, default
 * $KEDAHTTP_NODE_WAIT_MS or 10 min); fails at once when the owner is the
 * long-running dev cluster. Cleans up after a dead owner.
 */
export async function acquireNodeNetwork(
  id: string,
  pid: number,
  log: Logger,
  options: {
    waitMs?: number;
    signal?: AbortSignal;
    kubeProxy?: string;
    /** Told when waiting for another cluster starts (true) and ends (false). */
    onWait?: (waiting: boolean) => void;
  } = {},
): Promise<void> {
  await Deno.mkdir(STATE_ROOT, { recursive: true });
  const waitMs = options.waitMs ?? Number(Deno.env.get("KEDAHTTP_NODE_WAIT_MS") ?? "600000");
  const deadline = Date.now() + waitMs;
  let warned = false;
  while (true) {
    options.signal?.throwIfAborted();
    try {
      const f = await Deno.open(NODE_OWNER_FILE, { createNew: true, write: true });
      await f.write(new TextEncoder().encode(JSON.stringify({ id, pid })));
      f.close();
      if (warned) options.onWait?.(false);
      break;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    const owner = readOwner();
    if (owner && ownerAlive(owner)) {
      if (owner.id === DEV_CLUSTER_ID || Date.now() > deadline) {
        throw new Error(
          `the pod network of this machine is in use by cluster "${owner.id}" (pid ${owner.pid}); ` +
            `only one cluster with a node can run at a time. Stop it (\`deno task cluster down\`) ` +
            `or attach to it: KEDAHTTP_TEST_KUBECONFIG=${stateDirFor(owner.id)}/kubeconfig`,
        );
      }
      if (!warned) {
        log.warn("waiting for another test cluster to release the pod network", { ...owner });
        options.onWait?.(true);
        warned = true;
      }
      await sleep(500, options.signal);
      continue;
    }
    // Owner dead (or file half-written by a crash): take over after cleanup.
    log.info("cleaning up the pod network of a dead cluster", { owner });
    await teardownHostNetwork(log, options.kubeProxy);
    await Deno.remove(NODE_OWNER_FILE).catch(() => {});
  }
}

/** Gives the pod network up (only when `id` still owns it). */
export async function releaseNodeNetwork(id: string): Promise<void> {
  if (readOwner()?.id === id) await Deno.remove(NODE_OWNER_FILE).catch(() => {});
}

/** If the recorded owner is dead, removes its network and the owner file. */
export async function cleanupDeadNodeNetwork(log: Logger, kubeProxy?: string): Promise<void> {
  const owner = readOwner();
  let exists = false;
  try {
    Deno.statSync(NODE_OWNER_FILE);
    exists = true;
  } catch {
    // No owner file.
  }
  if (exists && (!owner || !ownerAlive(owner))) {
    log.info("cleaning up the pod network of a dead cluster", { owner });
    await teardownHostNetwork(log, kubeProxy);
    await Deno.remove(NODE_OWNER_FILE).catch(() => {});
  }
}

async function sh(script: string, what: string): Promise<void> {
  await run("sh", ["-ec", script], { what });
}

/** Creates the bridge, sysctls, routes and our iptables rules (idempotent). */
export async function setupHostNetwork(log: Logger): Promise<void> {
  const saved: Record<string, string> = {};
  for (const [k, path] of Object.entries(SYSCTLS)) {
    try {
      saved[k] = Deno.readTextFileSync(path).trim();
    } catch {
      // Not available here.
    }
  }
  try {
    Deno.statSync(SAVED_SYSCTLS);
  } catch {
    Deno.writeTextFileSync(SAVED_SYSCTLS, JSON.stringify(saved));
  }
  Deno.writeTextFileSync(SYSCTLS.ipForward, "1");
  if (saved.bridgeNf === undefined) {
    // Without br_netfilter, replies between pods on the bridge skip conntrack
    // and ClusterIP traffic between pods breaks.
    await run("modprobe", ["br_netfilter"], { allowFail: true });
  }
  try {
    Deno.writeTextFileSync(SYSCTLS.bridgeNf, "1");
  } catch {
    throw new Error(
      "cannot enable net.bridge.bridge-nf-call-iptables (kernel module br_netfilter); " +
        "load it with `modprobe br_netfilter` and retry",
    );
  }
  const c = `-m comment --comment ${IPTABLES_COMMENT}`;
  await sh(
    `
ip link show ${BRIDGE} >/dev/null 2>&1 || ip link add ${BRIDGE} type bridge
ip addr replace ${BRIDGE_IP}/16 dev ${BRIDGE}
ip link set ${BRIDGE} up
ip route replace ${SERVICE_CIDR} dev ${BRIDGE} src ${BRIDGE_IP}
iptables -w -C FORWARD -i ${BRIDGE} -o ${BRIDGE} ${c} -j ACCEPT 2>/dev/null || iptables -w -I FORWARD 1 -i ${BRIDGE} -o ${BRIDGE} ${c} -j ACCEPT
iptables -w -C FORWARD -i ${BRIDGE} ! -o ${BRIDGE} ${c} -j DROP 2>/dev/null || iptables -w -I FORWARD 2 -i ${BRIDGE} ! -o ${BRIDGE} ${c} -j DROP
`,
    "set up the pod network bridge",
  );
  log.debug("host network ready", { bridge: BRIDGE, ip: BRIDGE_IP });
}

/** Names of our pod network namespaces (`ip netns list`). */
export async function listPodNetns(): Promise<string[]> {
  const out = await run("ip", ["netns", "list"], { allowFail: true });
  return out.stdout.split("\n").map((l) => l.split(" ")[0] ?? "").filter((n) =>
    n.startsWith(NETNS_PREFIX)
  );
}

/** Kills everything in a pod netns and deletes it (its veth pair goes with it). */
export async function deletePodNetns(ns: string): Promise<void> {
  for (let i = 0; i < 20; i++) {
    const pids = (await run("ip", ["netns", "pids", ns], { allowFail: true })).stdout
      .split("\n").map((s) => Number(s.trim())).filter((n) => n > 1);
    if (!pids.length) break;
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone already.
      }
    }
    await sleep(50);
  }
  await run("ip", ["netns", "del", ns], { allowFail: true });
  await Deno.remove(`/etc/netns/${ns}`, { recursive: true }).catch(() => {});
}

/**
 * Removes everything setupHostNetwork and the pods created: pod netns, veths,
 * bridge, route, our iptables rules, kube-proxy's chains; restores sysctls.
 */
export async function teardownHostNetwork(log: Logger, kubeProxy?: string): Promise<void> {
  for (const ns of await listPodNetns()) await deletePodNetns(ns);
  const links = (await run("ip", ["-o", "link", "show"], { allowFail: true })).stdout;
  for (const m of links.matchAll(/^\d+: ([^:@]+)/gm)) {
    const name = m[1]!;
    if (name.startsWith(VETH_PREFIX)) await run("ip", ["link", "del", name], { allowFail: true });
  }
  await run("ip", ["route", "del", SERVICE_CIDR, "dev", BRIDGE], { allowFail: true });
  await run("ip", ["link", "del", BRIDGE], { allowFail: true });
  await removeCreatedMountPoints();
  if (await have("iptables")) {
    // Our own rules carry a comment; delete them by rewriting `-A` into `-D`.
    for (const table of ["filter", "nat"]) {
      const rules = (await run("iptables", ["-w", "-t", table, "-S"], { allowFail: true })).stdout;
      for (const line of rules.split("\n")) {
        if (!line.startsWith("-A ") || !line.includes(IPTABLES_COMMENT)) continue;
        const args = line.replace(/^-A /, "-D ").match(/(?:[^\s"]+|"[^"]*")+/g) ?? [];
        await run("iptables", ["-w", "-t", table, ...args.map((a) => a.replace(/^"|"$/g, ""))], {
          allowFail: true,
        });
      }
    }
    if (kubeProxy) {
      // kube-proxy knows its own chains best (KUBE-SERVICES, KUBE-SEP-…).
      await run(kubeProxy, ["--cleanup", "--v=0"], { allowFail: true });
    }
    await removeKubeChains();
  }
  try {
    const saved = JSON.parse(Deno.readTextFileSync(SAVED_SYSCTLS)) as Record<string, string>;
    for (const [k, path] of Object.entries(SYSCTLS)) {
      const v = saved[k];
      if (v !== undefined) {
        try {
          Deno.writeTextFileSync(path, v);
        } catch {
          // Not writable here.
        }
      }
    }
    Deno.removeSync(SAVED_SYSCTLS);
  } catch {
    // Nothing saved.
  }
  log.debug("host network removed");
}

/** Deletes KUBE-* chains (and jumps to them) kube-proxy --cleanup missed. */
async function removeKubeChains(): Promise<void> {
  for (const table of ["nat", "filter", "mangle"]) {
    const rules = (await run("iptables", ["-w", "-t", table, "-S"], { allowFail: true })).stdout;
    const lines = rules.split("\n");
    for (const line of lines) {
      if (/^-A (PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) .*-j KUBE-/.test(line)) {
        const args = line.replace(/^-A /, "-D ").match(/(?:[^\s"]+|"[^"]*")+/g) ?? [];
        await run("iptables", ["-w", "-t", table, ...args.map((a) => a.replace(/^"|"$/g, ""))], {
          allowFail: true,
        });
      }
    }
    const chains = lines.filter((l) => l.startsWith("-N KUBE-")).map((l) => l.slice(3).trim());
    for (const ch of chains) {
      await run("iptables", ["-w", "-t", table, "-F", ch], { allowFail: true });
    }
    for (const ch of chains) {
      await run("iptables", ["-w", "-t", table, "-X", ch], { allowFail: true });
    }
  }
}
