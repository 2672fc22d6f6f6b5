/**
 * The node agent: a tiny kubelet. It registers the Node, keeps its Lease and
 * Ready condition fresh, watches Pods bound to it and runs them:
 *
 *  - sandbox: a network namespace `khd-<n>` with a veth on the host bridge
 *    and an address from 10.244.0.0/16 (network.ts);
 *  - name resolution: /etc/netns/<netns>/hosts, which `ip netns exec`
 *    bind-mounts over /etc/hosts for every process of the pod. It lists
 *    every Service (`<ip> <svc>.<ns> <svc>.<ns>.svc <svc>.<ns>.svc.cluster.local`,
 *    plus the short name for the pod's own namespace) and is rewritten in
 *    place (same inode) when Services change, so running pods see updates.
 *    There is no DNS server; resolv.conf only carries the search path;
 *  - volumes: emptyDir, configMap, secret, downwardAPI, projected (with a
 *    real bound ServiceAccount token from the TokenRequest API), hostPath,
 *    materialised under the pod dir and bind-mounted in the container's mount
 *    namespace (mount points are created on the host if missing);
 *  - containers: local processes (images.ts) started through
 *    `setsid ip netns exec <ns> sh -c '<mounts>; exec "$@" >>log 2>&1'`, in
 *    their own process group; env incl. valueFrom/envFrom and
 *    KUBERNETES_SERVICE_HOST/PORT; restarts with backoff per restartPolicy;
 *  - probes: readiness, liveness and startup (httpGet, tcpSocket, exec, and
 *    grpc as the kubelet runs it: a grpc.health.v1.Health/Check call with the
 *    probe's `service`, passing on SERVING only);
 *  - deletion: SIGTERM, grace period, SIGKILL, sandbox removal, then the
 *    Pod object is deleted with gracePeriodSeconds=0 (as the kubelet does).
 *
 * Container output: <stateDir>/pods/<namespace>_<pod>/<container>.log.
 */

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { Logger } from "../../shared/log.ts";
import { sleep } from "../../shared/lifetime.ts";
import { containerCommand } from "./images.ts";
import { type KubeClient, KubeError } from "./kube_client.ts";
import { deletePodNetns, ensureMountPoint } from "./network.ts";
import {
  BRIDGE,
  BRIDGE_IP,
  K8S_VERSION,
  KUBERNETES_SERVICE_IP,
  NETNS_PREFIX,
  POD_CIDR,
  REPO_ROOT,
  VETH_PREFIX,
} from "./paths.ts";
import { run } from "./processes.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

/** Env var every container process carries: the cluster's state dir. */
export const POD_PROCESS_MARKER = "KEDAHTTP_CLUSTER_STATE_DIR";

export interface NodeAgentOptions {
  client: KubeClient;
  stateDir: string;
  log: Logger;
  caPem: string;
  nodeName: string;
  /** TLS cert/key for the kubelet API (port 10250: `kubectl logs`). */
  servingCertPem?: string;
  servingKeyPem?: string;
}

interface Probe {
  httpGet?: {
    path?: string;
    port: number | string;
    host?: string;
    scheme?: string;
    httpHeaders?: Array<{ name: string; value: string }>;
  };
  tcpSocket?: { port: number | string; host?: string };
  exec?: { command: string[] };
  grpc?: { port: number; service?: string };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

interface ContainerSpec {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: Json[];
  envFrom?: Json[];
  ports?: Array<{ name?: string; containerPort: number }>;
  volumeMounts?: Array<{ name: string; mountPath: string; subPath?: string; readOnly?: boolean }>;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  resources?: Json;
}

type ContainerState =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | {
    terminated: {
      exitCode: number;
      signal?: number;
      reason: string;
      startedAt?: string;
      finishedAt: string;
      message?: string;
    };
  };

interface ContainerRun {
  spec: ContainerSpec;
  init: boolean;
  pgid?: number;
  exited?: Promise<Deno.CommandStatus>;
  restartCount: number;
  ready: boolean;
  started: boolean;
  state: ContainerState;
  lastState?: ContainerState;
  startedAt?: string;
  /** Set while the agent itself kills the process (liveness, deletion). */
  killing?: boolean;
  env: Record<string, string>;
  logPath: string;
}

interface PodRun {
  uid: string;
  namespace: string;
  name: string;
  key: string;
  pod: Json;
  dir: string;
  netns?: string;
  ip?: string;
  startTime: string;
  containers: ContainerRun[];
  initContainers: ContainerRun[];
  initialized: boolean;
  stopping: boolean;
  abort: AbortController;
  conditionTimes: Map<string, { status: string; time: string }>;
  statusWriting?: Promise<void>;
  statusDirty: boolean;
  phase: string;
  started: Promise<void>;
  mounts: Map<string, Array<{ source: string; target: string; readOnly: boolean }>>;
}

const encoder = new TextEncoder();

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

function microNow(): string {
  return new Date().toISOString().replace(/Z$/, "000Z");
}

function shQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

function b64decode(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function ipFor(index: number): string {
  // 10.244.0.0/16 minus .0.0 (network), .0.1 (bridge) and .255.255.
  return `10.244.${(index >> 8) & 255}.${index & 255}`;
}

export class NodeAgent {
  readonly #client: KubeClient;
  readonly #log: Logger;
  readonly #opts: NodeAgentOptions;
  readonly #pods = new Map<string, PodRun>();
  readonly #services = new Map<string, { ns: string; name: string; ip: string }>();
  readonly #usedIps = new Set<number>();
  readonly #denoCached = new Map<string, Promise<void>>();
  readonly #grpcProbes = new GrpcProbeClients();
  #nextIndex = 2;
  #nextNetns = 1;
  #hostsTimer?: ReturnType<typeof setTimeout>;

  constructor(options: NodeAgentOptions) {
    this.#opts = options;
    this.#client = options.client;
    this.#log = options.log;
  }

  // ---------------------------------------------------------------- node --

  #nodeStatus(): Json {
    const t = now();
    const cond = (type: string, status: string, reason: string, message: string) => ({
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: t,
      lastTransitionTime: this.#registeredAt ?? t,
    });
    const resources = { cpu: "32", memory: "64Gi", pods: "250", "ephemeral-storage": "100Gi" };
    let kernel = "";
    try {
      kernel = Deno.readTextFileSync("/proc/sys/kernel/osrelease").trim();
    } catch {
      // Unknown.
    }
    return {
      capacity: resources,
      allocatable: resources,
      conditions: [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "local node"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "local node"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "local node"),
        cond("Ready", "True", "KubeletReady", "keda-http-deno node agent is posting ready status"),
      ],
      addresses: [
        { type: "InternalIP", address: BRIDGE_IP },
        { type: "Hostname", address: this.#opts.nodeName },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        machineID: "keda-http-deno",
        systemUUID: "keda-http-deno",
        bootID: "keda-http-deno",
        kernelVersion: kernel,
        osImage: "keda-http-deno local node",
        containerRuntimeVersion: "keda-http-deno://1",
        kubeletVersion: K8S_VERSION,
        kubeProxyVersion: K8S_VERSION,
        operatingSystem: "linux",
        architecture: Deno.build.arch === "aarch64" ? "arm64" : "amd64",
      },
    };
  }

  #registeredAt?: string;

  /** Creates (or refreshes) the Node object and its Lease. */
  async register(): Promise<void> {
    const name = this.#opts.nodeName;
    this.#registeredAt = now();
    const node = {
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name,
        labels: {
          "kubernetes.io/hostname": name,
          "kubernetes.io/os": "linux",
          "kubernetes.io/arch": Deno.build.arch === "aarch64" ? "arm64" : "amd64",
          "node-role.kubernetes.io/keda-http-deno": "",
        },
      },
      spec: { podCIDR: POD_CIDR, podCIDRs: [POD_CIDR] },
    };
    try {
      await this.#client.create("/api/v1/nodes", node);
    } catch (e) {
      if (!(e instanceof KubeError && e.status === 409)) throw e;
    }
    await this.#client.patch(`/api/v1/nodes/${name}/status`, { status: this.#nodeStatus() });
    await this.#renewLease();
    this.#log.info("node registered", { node: name });
  }

  async #renewLease(): Promise<void> {
    const name = this.#opts.nodeName;
    const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${name}`;
    const spec = { holderIdentity: name, leaseDurationSeconds: 40, renewTime: microNow() };
    try {
      await this.#client.patch(path, { spec });
    } catch (e) {
      if (!(e instanceof KubeError && e.status === 404)) throw e;
      await this.#client.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name, namespace: "kube-node-lease" },
        spec,
      });
    }
  }

  async #heartbeat(signal: AbortSignal): Promise<void> {
    let n = 0;
    while (!signal.aborted) {
      await sleep(10_000, signal);
      if (signal.aborted) return;
      try {
        await this.#renewLease();
        if (++n % 3 === 0) {
          await this.#client.patch(`/api/v1/nodes/${this.#opts.nodeName}/status`, {
            status: this.#nodeStatus(),
          });
        }
      } catch (e) {
        this.#log.warn("node heartbeat failed", { error: e });
      }
    }
  }

  // --------------------------------------------------------------- loops --

  /** Runs until the signal aborts: heartbeat, pod and service watches. */
  async run(signal: AbortSignal): Promise<void> {
    await Promise.all([
      this.#heartbeat(signal),
      this.#serveKubeletApiSafely(signal),
      this.#watchLoop(
        "/api/v1/pods",
        { fieldSelector: `spec.nodeName=${this.#opts.nodeName}` },
        signal,
        (items) => this.#resyncPods(items),
        (type, obj) => this.#onPod(type, obj),
      ),
      this.#watchLoop(
        "/api/v1/services",
        {},
        signal,
        (items) => {
          this.#services.clear();
          for (const s of items) this.#onService("ADDED", s);
        },
        (type, obj) => this.#onService(type, obj),
      ),
    ]);
  }

  async #watchLoop(
    path: string,
    query: Record<string, string>,
    signal: AbortSignal,
    onList: (items: Json[]) => void,
    onEvent: (type: string, obj: Json) => void,
  ): Promise<void> {
    let rv: string | undefined;
    let attempt = 0;
    while (!signal.aborted) {
      try {
        if (!rv) {
          const list = await this.#client.list<Json>(path, query);
          onList(list.items);
          rv = list.metadata.resourceVersion;
        }
        for await (
          const ev of this.#client.watch<Json>(path, { resourceVersion: rv, signal, query })
        ) {
          attempt = 0;
          if (ev.type === "ERROR") {
            // 410 Gone: our resourceVersion is too old; list again.
            rv = undefined;
            break;
          }
          rv = ev.object?.metadata?.resourceVersion ?? rv;
          if (ev.type !== "BOOKMARK") onEvent(ev.type, ev.object);
        }
      } catch (e) {
        if (signal.aborted) return;
        this.#log.warn("watch failed; retrying", { path, error: e });
        if (e instanceof KubeError && e.status === 410) rv = undefined;
        await sleep(Math.min(5_000, 200 * 2 ** attempt++), signal);
      }
    }
  }

  /**
   * The part of the kubelet API the apiserver needs for `kubectl logs`
   * (GET /containerLogs/<ns>/<pod>/<container>, with follow and tailLines).
   * The apiserver does not verify kubelet certificates unless told to.
   */
  async #serveKubeletApi(signal: AbortSignal): Promise<void> {
    const { servingCertPem: cert, servingKeyPem: key } = this.#opts;
    if (!cert || !key) return;
    const stateDir = this.#opts.stateDir;
    const server = Deno.serve({
      hostname: BRIDGE_IP,
      port: 10250,
      cert,
      key,
      signal,
      onListen: () => {},
      onError: (e) => {
        this.#log.warn("kubelet API request failed", { error: e });
        return new Response("internal error\n", { status: 500 });
      },
    }, async (req) => {
      const url = new URL(req.url);
      const m = url.pathname.match(/^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/);
      if (!m) {
        return new Response(
          `${url.pathname}: only container logs are served by the keda-http-deno node agent\n`,
          { status: 404 },
        );
      }
      const path = `${stateDir}/pods/${m[1]}_${m[2]}/${m[3]}.log`;
      let file: Deno.FsFile;
      try {
        file = await Deno.open(path);
      } catch {
        return new Response(`no log for container ${m[3]} of pod ${m[1]}/${m[2]}\n`, {
          status: 404,
        });
      }
      const tail = Number(url.searchParams.get("tailLines") ?? "-1");
      const follow = url.searchParams.get("follow") === "true";
      const whole = new TextDecoder().decode(await Deno.readFile(path));
      let start = whole;
      if (tail >= 0) {
        const lines = whole.split("\n");
        if (lines.at(-1) === "") lines.pop();
        start = lines.slice(Math.max(0, lines.length - tail)).join("\n") + (tail > 0 ? "\n" : "");
      }
      const offset = new TextEncoder().encode(whole).length;
      if (!follow) {
        file.close();
        return new Response(start, { headers: { "content-type": "text/plain" } });
      }
      await file.seek(offset, Deno.SeekMode.Start);
      const body = new ReadableStream<Uint8Array>({
        start: (c) => c.enqueue(new TextEncoder().encode(start)),
        pull: async (c) => {
          // Like tail -f: poll for appended bytes until the client goes away.
          const buf = new Uint8Array(64 * 1024);
          while (!req.signal.aborted && !signal.aborted) {
            const n = await file.read(buf);
            if (n) {
              c.enqueue(buf.slice(0, n));
              return;
            }
            await sleep(200, req.signal);
          }
          file.close();
          c.close();
        },
        cancel: () => file.close(),
      });
      return new Response(body, { headers: { "content-type": "text/plain" } });
    });
    await server.finished;
  }

  async #serveKubeletApiSafely(signal: AbortSignal): Promise<void> {
    try {
      await this.#serveKubeletApi(signal);
    } catch (e) {
      // Only `kubectl logs` needs it; the node works without.
      this.#log.warn("kubelet API (kubectl logs) not available", { error: e });
    }
  }

  // ------------------------------------------------------------ services --

  #onService(type: string, svc: Json): void {
    const key = `${svc.metadata.namespace}/${svc.metadata.name}`;
    const ip = svc.spec?.clusterIP;
    if (type === "DELETED" || !ip || ip === "None") this.#services.delete(key);
    else this.#services.set(key, { ns: svc.metadata.namespace, name: svc.metadata.name, ip });
    // Coalesce bursts of changes into one rewrite.
    if (this.#hostsTimer === undefined) {
      this.#hostsTimer = setTimeout(() => {
        this.#hostsTimer = undefined;
        for (const p of this.#pods.values()) this.#writeHosts(p).catch(() => {});
      }, 20);
    }
  }

  #hostsText(p: PodRun): string {
    const lines = [
      "# Written by the keda-http-deno node agent (tests/cluster/node_agent.ts).",
      "127.0.0.1\tlocalhost",
      "::1\tlocalhost ip6-localhost ip6-loopback",
    ];
    if (p.ip) lines.push(`${p.ip}\t${p.name}`);
    const services = [...this.#services.values()].sort((a, b) =>
      a.ns.localeCompare(b.ns) || a.name.localeCompare(b.name)
    );
    for (const s of services) {
      const names = [
        `${s.name}.${s.ns}`,
        `${s.name}.${s.ns}.svc`,
        `${s.name}.${s.ns}.svc.cluster.local`,
      ];
      if (s.ns === p.namespace) names.unshift(s.name);
      lines.push(`${s.ip}\t${names.join(" ")}`);
    }
    return lines.join("\n") + "\n";
  }

  async #writeHosts(p: PodRun): Promise<void> {
    if (!p.netns) return;
    // In place (truncate + write keeps the inode) so the bind mounts of
    // running processes see the new content.
    await Deno.writeTextFile(`/etc/netns/${p.netns}/hosts`, this.#hostsText(p));
  }

  // ---------------------------------------------------------------- pods --

  #resyncPods(items: Json[]): void {
    const seen = new Set(items.map((p) => p.metadata.uid as string));
    for (const [uid, p] of this.#pods) {
      if (!seen.has(uid)) this.#forget(p, "pod no longer exists");
    }
    for (const pod of items) this.#onPod("ADDED", pod);
  }

  #onPod(type: string, pod: Json): void {
    const uid = pod.metadata.uid as string;
    const known = this.#pods.get(uid);
    if (type === "DELETED") {
      if (known) this.#forget(known, "pod deleted");
      return;
    }
    if (known) {
      known.pod = pod;
      if (pod.metadata.deletionTimestamp && !known.stopping) {
        this.#terminate(known).catch((e) =>
          this.#log.error("pod termination failed", { pod: known.key, error: e })
        );
      }
      return;
    }
    const phase = pod.status?.phase;
    if (pod.metadata.deletionTimestamp) {
      // Never started here: nothing to stop, just finish the deletion.
      this.#finalDelete(pod).catch(() => {});
      return;
    }
    if (phase === "Succeeded" || phase === "Failed") return;
    const p = this.#newPodRun(pod);
    this.#pods.set(uid, p);
    p.started = this.#startPod(p).catch((e) => {
      this.#log.error("pod start failed", { pod: p.key, error: e });
    });
  }

  #newPodRun(pod: Json): PodRun {
    const namespace = pod.metadata.namespace as string;
    const name = pod.metadata.name as string;
    const dir = `${this.#opts.stateDir}/pods/${namespace}_${name}`;
    const mk = (spec: ContainerSpec, init: boolean): ContainerRun => ({
      spec,
      init,
      restartCount: 0,
      ready: false,
      started: false,
      state: { waiting: { reason: init ? "PodInitializing" : "ContainerCreating" } },
      env: {},
      logPath: `${dir}/${spec.name}.log`,
    });
    return {
      uid: pod.metadata.uid,
      namespace,
      name,
      key: `${namespace}/${name}`,
      pod,
      dir,
      startTime: now(),
      containers: (pod.spec.containers ?? []).map((c: ContainerSpec) => mk(c, false)),
      initContainers: (pod.spec.initContainers ?? []).map((c: ContainerSpec) => mk(c, true)),
      initialized: !(pod.spec.initContainers?.length),
      stopping: false,
      abort: new AbortController(),
      conditionTimes: new Map(),
      statusDirty: false,
      phase: "Pending",
      started: Promise.resolve(),
      mounts: new Map(),
    };
  }

  #allocateIp(): number {
    for (let i = 0; i < 65_000; i++) {
      const idx = this.#nextIndex;
      this.#nextIndex = this.#nextIndex >= 65_533 ? 2 : this.#nextIndex + 1;
      if (!this.#usedIps.has(idx)) {
        this.#usedIps.add(idx);
        return idx;
      }
    }
    throw new Error(`no free pod IP left in ${POD_CIDR}`);
  }

  async #createSandbox(p: PodRun): Promise<void> {
    const idx = this.#allocateIp();
    const n = this.#nextNetns++;
    const netns = `${NETNS_PREFIX}${n}`;
    const veth = `${VETH_PREFIX}${n}`;
    const ip = ipFor(idx);
    p.netns = netns;
    p.ip = ip;
    (p as { ipIndex?: number }).ipIndex = idx;
    // /etc/netns may not exist yet; record it so teardown removes it again.
    await ensureMountPoint("/etc/netns");
    await Deno.mkdir(`/etc/netns/${netns}`, { recursive: true });
    await Deno.writeTextFile(`/etc/netns/${netns}/hosts`, this.#hostsText(p));
    await Deno.writeTextFile(
      `/etc/netns/${netns}/resolv.conf`,
      `# No DNS server: Service names come from /etc/hosts (node agent).\n` +
        `search ${p.namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n`,
    );
    await run("sh", [
      "-ec",
      `
ip netns add ${netns}
ip link add ${veth} type veth peer name eth0 netns ${netns}
ip link set ${veth} master ${BRIDGE}
ip link set ${veth} type bridge_slave hairpin on
ip link set ${veth} up
ip -n ${netns} link set lo up
ip -n ${netns} addr add ${ip}/16 dev eth0
ip -n ${netns} link set eth0 up
ip -n ${netns} route add default via ${BRIDGE_IP}
`,
    ], { what: `create the network of pod ${p.key}` });
    await Deno.mkdir(p.dir, { recursive: true });
    await Deno.writeTextFile(`${p.dir}/netns`, netns);
  }

  async #startPod(p: PodRun): Promise<void> {
    this.#log.info("starting pod", { pod: p.key, uid: p.uid });
    await Deno.mkdir(p.dir, { recursive: true });
    if (p.pod.spec.hostNetwork) {
      // The host's network; only the mount namespace is the pod's own.
      p.ip = BRIDGE_IP;
    } else {
      await this.#createSandbox(p);
    }
    this.#markDirty(p);
    try {
      await this.#prepareVolumes(p);
    } catch (e) {
      if (p.stopping) return;
      for (const c of [...p.initContainers, ...p.containers]) {
        c.state = {
          waiting: { reason: "CreateContainerConfigError", message: (e as Error).message },
        };
      }
      this.#markDirty(p);
      throw e;
    }
    for (const c of p.initContainers) {
      if (p.stopping) return;
      const ok = await this.#runInit(p, c);
      if (!ok) return;
    }
    p.initialized = true;
    if (p.stopping) return;
    for (const c of p.containers) this.#supervise(p, c);
    this.#markDirty(p);
  }

  /** Runs one init container to completion (retrying per restartPolicy). */
  async #runInit(p: PodRun, c: ContainerRun): Promise<boolean> {
    let attempt = 0;
    while (!p.stopping) {
      const status = await this.#startContainer(p, c);
      if (!status) return false;
      if (status.success) {
        c.state = this.#terminatedState(c, status, "Completed");
        this.#markDirty(p);
        return true;
      }
      c.lastState = this.#terminatedState(c, status, "Error");
      if (p.pod.spec.restartPolicy === "Never") {
        c.state = c.lastState;
        p.phase = "Failed";
        this.#markDirty(p);
        return false;
      }
      c.restartCount++;
      c.state = {
        waiting: { reason: "CrashLoopBackOff", message: `back-off restarting ${c.spec.name}` },
      };
      this.#markDirty(p);
      await sleep(Math.min(20_000, 1_000 * 2 ** attempt++), p.abort.signal);
    }
    return false;
  }

  #terminatedState(c: ContainerRun, s: Deno.CommandStatus, reason?: string): ContainerState {
    return {
      terminated: {
        exitCode: s.code,
        ...(s.signal ? { signal: Deno.build.os === "linux" ? signalNumber(s.signal) : 0 } : {}),
        reason: reason ?? (s.success ? "Completed" : "Error"),
        startedAt: c.startedAt,
        finishedAt: now(),
      },
    };
  }

  /** Keeps a regular container running per the pod's restartPolicy. */
  #supervise(p: PodRun, c: ContainerRun): void {
    const policy = p.pod.spec.restartPolicy ?? "Always";
    (async () => {
      let attempt = 0;
      while (!p.stopping) {
        const began = Date.now();
        const status = await this.#startContainer(p, c);
        if (!status || p.stopping) return;
        const term = this.#terminatedState(c, status);
        c.ready = false;
        c.started = false;
        const restart = policy === "Always" || (policy === "OnFailure" && !status.success);
        if (!restart) {
          c.state = term;
          this.#updatePhase(p);
          this.#markDirty(p);
          return;
        }
        c.lastState = term;
        c.restartCount++;
        // A container that ran for a while starts its back-off afresh.
        if (Date.now() - began > 30_000) attempt = 0;
        const delay = Math.min(20_000, 1_000 * 2 ** attempt++);
        c.state = {
          waiting: {
            reason: "CrashLoopBackOff",
            message: `back-off ${
              Math.round(delay / 1000)
            }s restarting failed container=${c.spec.name} pod=${p.name}`,
          },
        };
        this.#log.info("container exited; restarting", {
          pod: p.key,
          container: c.spec.name,
          code: status.code,
          delayMs: delay,
          restartCount: c.restartCount,
        });
        this.#markDirty(p);
        await sleep(delay, p.abort.signal);
      }
    })().catch((e) => this.#log.error("container supervisor failed", { pod: p.key, error: e }));
  }

  #updatePhase(p: PodRun): void {
    const states = p.containers.map((c) => c.state);
    if (states.every((s) => "terminated" in s)) {
      p.phase = states.every((s) => "terminated" in s && s.terminated.exitCode === 0)
        ? "Succeeded"
        : "Failed";
    }
  }

  /**
   * Starts the container process and its probes; resolves with its exit
   * status (undefined when it could not start or the pod is stopping).
   */
  async #startContainer(p: PodRun, c: ContainerRun): Promise<Deno.CommandStatus | undefined> {
    let cmd;
    try {
      c.env = await this.#containerEnv(p, c.spec);
      cmd = containerCommand({
        image: c.spec.image,
        command: c.spec.command?.map((a) => expand(a, c.env)),
        args: c.spec.args?.map((a) => expand(a, c.env)),
      });
      await Promise.all(cmd.denoCache.map((m) => this.#denoCache(m)));
    } catch (e) {
      c.state = { waiting: { reason: "CreateContainerError", message: (e as Error).message } };
      this.#markDirty(p);
      this.#log.warn("cannot start container", { pod: p.key, container: c.spec.name, error: e });
      await sleep(5_000, p.abort.signal);
      return p.stopping ? undefined : { success: false, code: 128, signal: null };
    }
    if (p.stopping) return undefined;

    const mounts = p.mounts.get(c.spec.name) ?? [];
    for (const m of mounts) {
      let isFile = false;
      try {
        isFile = (await Deno.stat(m.source)).isFile;
      } catch {
        // Source vanished; mount fails and the log says so.
      }
      await ensureMountPoint(m.target, isFile);
    }
    // A mount whose target hides another mount's source (an emptyDir at /tmp
    // hides the pod dir under /tmp/keda-http-deno-cluster) must come last.
    const hides = (m: { target: string }) =>
      mounts.some((n) => n !== m && n.source.startsWith(m.target.replace(/\/$/, "") + "/"));
    mounts.sort((a, b) => Number(hides(a)) - Number(hides(b)));
    // What the program itself runs from (the repo, its binary) must stay
    // visible when a volume is mounted over an ancestor, e.g. an emptyDir at
    // /tmp while the repo is cloned under /tmp: bind those paths into the
    // volume's source first, then mount volumes recursively.
    const strictlyUnder = (path: string, dir: string) =>
      path.startsWith(dir.replace(/\/$/, "") + "/");
    const needed = [cmd.cwd, cmd.argv[0]?.replace(/\/[^/]*$/, "") ?? ""].filter((x) => x !== "");
    const keepVisible: string[] = [];
    for (const m of mounts) {
      for (const path of needed) {
        if (!strictlyUnder(path, m.target)) continue;
        const inside = m.source.replace(/\/$/, "") + path.slice(m.target.replace(/\/$/, "").length);
        keepVisible.push(
          `mkdir -p ${shQuote(inside)} && mount --bind ${shQuote(path)} ${shQuote(inside)}`,
        );
      }
    }
    const mountScript = [
      ...keepVisible,
      ...mounts.map((m) =>
        `mount --rbind ${shQuote(m.source)} ${shQuote(m.target)}` +
        (m.readOnly ? ` && mount -o remount,bind,ro ${shQuote(m.target)}` : "")
      ),
    ].join(" && ");
    // Open the log before mounting: a mount at /tmp would hide its path.
    const script = `exec >>${shQuote(c.logPath)} 2>&1; ` +
      `${mountScript ? `${mountScript} || exit 125; ` : ""}cd ${shQuote(cmd.cwd)} || exit 126; ` +
      `exec "$@"`;
    const env: Record<string, string> = {
      PATH: Deno.env.get("PATH") ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      HOME: Deno.env.get("HOME") ?? "/root",
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
      // Lets crash recovery recognise our container processes (cleanup.ts),
      // also those of hostNetwork pods, which no netns collects.
      [POD_PROCESS_MARKER]: this.#opts.stateDir,
      ...cmd.env,
      ...c.env,
    };
    await Deno.writeTextFile(
      c.logPath,
      `--- ${now()} keda-http-deno: starting ${c.spec.name} (${cmd.description}): ${
        cmd.argv.join(" ")
      }\n`,
      { append: true },
    );
    const enter = p.netns
      ? ["ip", "netns", "exec", p.netns]
      : ["unshare", "--mount", "--propagation", "slave"];
    const child = new Deno.Command("setsid", {
      args: [...enter, "sh", "-c", script, "sh", ...cmd.argv],
      env,
      clearEnv: true,
      cwd: "/",
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    c.pgid = child.pid;
    c.killing = false;
    c.exited = child.status;
    await Deno.writeTextFile(`${p.dir}/${c.spec.name}.pid`, `${child.pid}\n`);
    c.startedAt = now();
    c.state = { running: { startedAt: c.startedAt } };
    c.started = !c.spec.startupProbe;
    c.ready = !c.init && !c.spec.readinessProbe && c.started;
    this.#markDirty(p);
    this.#log.debug("container started", { pod: p.key, container: c.spec.name, pid: child.pid });

    const probeAbort = new AbortController();
    const onPodAbort = () => probeAbort.abort();
    p.abort.signal.addEventListener("abort", onPodAbort, { once: true });
    if (!c.init) this.#runProbes(p, c, probeAbort.signal);
    const status = await child.status;
    probeAbort.abort();
    p.abort.signal.removeEventListener("abort", onPodAbort);
    return p.stopping ? undefined : status;
  }

  async #denoCache(module: string): Promise<void> {
    let p = this.#denoCached.get(module);
    if (!p) {
      // Pods have no internet; fetch the program's dependencies on the host.
      p = run(Deno.execPath(), ["cache", "--quiet", `--config=${REPO_ROOT}/deno.json`, module], {
        what: `deno cache ${module}`,
      }).then(() => {});
      p.catch(() => this.#denoCached.delete(module));
      this.#denoCached.set(module, p);
    }
    await p;
  }

  // -------------------------------------------------------------- probes --

  #runProbes(p: PodRun, c: ContainerRun, signal: AbortSignal): void {
    const loop = async (probe: Probe, kind: "readiness" | "liveness" | "startup") => {
      await sleep((probe.initialDelaySeconds ?? 0) * 1000, signal);
      let successes = 0;
      let failures = 0;
      while (!signal.aborted) {
        if (kind !== "startup" && !c.started) {
          await sleep(100, signal);
          continue;
        }
        const ok = await this.#probe(p, c, probe);
        if (signal.aborted) return;
        if (ok) {
          successes++;
          failures = 0;
        } else {
          failures++;
          successes = 0;
        }
        if (kind === "readiness") {
          const threshold = probe.successThreshold ?? 1;
          if (ok && successes >= threshold && !c.ready) {
            c.ready = true;
            this.#markDirty(p);
          } else if (!ok && failures >= (probe.failureThreshold ?? 3) && c.ready) {
            c.ready = false;
            this.#markDirty(p);
          }
        } else if (kind === "startup") {
          if (ok) {
            c.started = true;
            if (!c.spec.readinessProbe) c.ready = true;
            this.#markDirty(p);
            return;
          }
          if (failures >= (probe.failureThreshold ?? 3)) {
            this.#log.info("startup probe failed; killing container", {
              pod: p.key,
              container: c.spec.name,
            });
            await this.#killContainer(p, c, this.#grace(p));
            return;
          }
        } else if (!ok && failures >= (probe.failureThreshold ?? 3)) {
          this.#log.info("liveness probe failed; killing container", {
            pod: p.key,
            container: c.spec.name,
          });
          await this.#killContainer(p, c, this.#grace(p));
          return;
        }
        await sleep((probe.periodSeconds ?? 10) * 1000, signal);
      }
    };
    const spec = c.spec;
    const fail = (e: unknown) => this.#log.warn("probe loop failed", { pod: p.key, error: e });
    if (spec.startupProbe) loop(spec.startupProbe, "startup").catch(fail);
    if (spec.readinessProbe) loop(spec.readinessProbe, "readiness").catch(fail);
    if (spec.livenessProbe) loop(spec.livenessProbe, "liveness").catch(fail);
  }

  #port(c: ContainerRun, port: number | string): number {
    if (typeof port === "number") return port;
    const named = c.spec.ports?.find((x) => x.name === port);
    if (named) return named.containerPort;
    const n = Number(port);
    if (Number.isInteger(n)) return n;
    throw new Error(`probe port "${port}" is not a port of container ${c.spec.name}`);
  }

  async #probe(p: PodRun, c: ContainerRun, probe: Probe): Promise<boolean> {
    const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
    try {
      if (probe.httpGet) {
        const g = probe.httpGet;
        const host = g.host ?? p.ip!;
        const port = this.#port(c, g.port);
        if ((g.scheme ?? "HTTP").toUpperCase() === "HTTPS") {
          // No certificate checks are possible here; a TCP connect has to do.
          return await tcpProbe(host, port, timeoutMs);
        }
        const headers: Record<string, string> = { "user-agent": "kube-probe/1.34" };
        for (const h of g.httpHeaders ?? []) headers[h.name] = h.value;
        const res = await fetch(`http://${host}:${port}${g.path ?? "/"}`, {
          headers,
          signal: AbortSignal.timeout(timeoutMs),
          redirect: "manual",
        });
        await res.body?.cancel();
        return res.status >= 200 && res.status < 400;
      }
      if (probe.tcpSocket) {
        return await tcpProbe(
          probe.tcpSocket.host ?? p.ip!,
          this.#port(c, probe.tcpSocket.port),
          timeoutMs,
        );
      }
      if (probe.grpc) {
        return await this.#grpcProbes.check(
          p.uid,
          p.ip!,
          probe.grpc.port,
          probe.grpc.service ?? "",
          timeoutMs,
        );
      }
      if (probe.exec) {
        const argv = c.pgid
          ? ["nsenter", `--target=${c.pgid}`, "--mount", "--net", "--", ...probe.exec.command]
          : probe.exec.command;
        const child = new Deno.Command(argv[0]!, {
          args: argv.slice(1),
          clearEnv: true,
          env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", ...c.env },
          stdin: "null",
          stdout: "null",
          stderr: "null",
          signal: AbortSignal.timeout(timeoutMs),
        }).spawn();
        return (await child.status).success;
      }
    } catch {
      return false;
    }
    return true;
  }

  // --------------------------------------------------------- termination --

  #grace(p: PodRun): number {
    const g = p.pod.metadata.deletionGracePeriodSeconds ??
      p.pod.spec.terminationGracePeriodSeconds ?? 30;
    return Math.max(0, Number(g)) * 1000;
  }

  async #killContainer(_p: PodRun, c: ContainerRun, graceMs: number): Promise<void> {
    if (!c.pgid || !c.exited) return;
    c.killing = true;
    let done = false;
    const exited = c.exited.then(() => (done = true));
    const signalGroup = (sig: Deno.Signal) => {
      try {
        Deno.kill(-c.pgid!, sig);
      } catch {
        // Group already gone.
      }
    };
    signalGroup("SIGTERM");
    const deadline = Date.now() + graceMs;
    while (!done && Date.now() < deadline) await sleep(50);
    signalGroup("SIGKILL");
    await exited;
  }

  async #terminate(p: PodRun, graceOverrideMs?: number): Promise<void> {
    if (p.stopping) return;
    p.stopping = true;
    p.abort.abort();
    const grace = graceOverrideMs ?? this.#grace(p);
    this.#log.info("stopping pod", { pod: p.key, graceMs: grace });
    await p.started.catch(() => {});
    await Promise.all(
      [...p.initContainers, ...p.containers].map((c) => this.#killContainer(p, c, grace)),
    );
    // After the processes are gone (see GrpcProbeClients).
    this.#grpcProbes.close(p.uid);
    await this.#removeSandbox(p);
    this.#pods.delete(p.uid);
    if (graceOverrideMs === undefined) await this.#finalDelete(p.pod);
  }

  async #removeSandbox(p: PodRun): Promise<void> {
    if (p.netns) await deletePodNetns(p.netns);
    const idx = (p as { ipIndex?: number }).ipIndex;
    if (idx !== undefined) this.#usedIps.delete(idx);
    await Deno.remove(`${p.dir}/volumes`, { recursive: true }).catch(() => {});
  }

  /** Deletes the Pod object for good (the kubelet's last step). */
  async #finalDelete(pod: Json): Promise<void> {
    try {
      await this.#client.delete(
        `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`,
        {
          apiVersion: "v1",
          kind: "DeleteOptions",
          gracePeriodSeconds: 0,
          preconditions: { uid: pod.metadata.uid },
        },
      );
    } catch (e) {
      // 409: a newer pod with the same name exists; ours is gone already.
      if (!(e instanceof KubeError && e.status === 409)) throw e;
    }
  }

  #forget(p: PodRun, why: string): void {
    this.#log.info("pod gone; stopping its processes", { pod: p.key, why });
    this.#terminate(p, 0).catch(() => {});
  }

  /** Stops every pod at once (cluster shutdown); leaves the API objects alone. */
  async stopAllPods(): Promise<void> {
    await Promise.all(
      [...this.#pods.values()].map((p) => this.#terminate(p, 1_000).catch(() => {})),
    );
    this.#grpcProbes.closeAll();
  }

  // ---------------------------------------------------------------- status --

  #markDirty(p: PodRun): void {
    p.statusDirty = true;
    if (p.statusWriting) return;
    p.statusWriting = (async () => {
      await sleep(20);
      while (p.statusDirty && !p.stopping) {
        p.statusDirty = false;
        try {
          await this.#client.patch(
            `/api/v1/namespaces/${p.namespace}/pods/${p.name}/status`,
            { status: this.#podStatus(p) },
          );
        } catch (e) {
          if (e instanceof KubeError && e.status === 404) return;
          this.#log.warn("pod status update failed; retrying", { pod: p.key, error: e });
          p.statusDirty = true;
          await sleep(500);
        }
      }
    })().finally(() => {
      p.statusWriting = undefined;
      if (p.statusDirty && !p.stopping) this.#markDirty(p);
    });
  }

  #condition(p: PodRun, type: string, ok: boolean): Json {
    const status = ok ? "True" : "False";
    const prev = p.conditionTimes.get(type);
    if (!prev || prev.status !== status) p.conditionTimes.set(type, { status, time: now() });
    return {
      type,
      status,
      lastProbeTime: null,
      lastTransitionTime: p.conditionTimes.get(type)!.time,
    };
  }

  #podStatus(p: PodRun): Json {
    const running = p.containers.some((c) => "running" in c.state);
    if (p.phase === "Pending" && running && p.initialized) p.phase = "Running";
    const containersReady = p.containers.every((c) => c.ready);
    const cs = (c: ContainerRun) => ({
      name: c.spec.name,
      image: c.spec.image,
      imageID: `local://${c.spec.image}`,
      ...(c.pgid ? { containerID: `khd://${p.uid}/${c.spec.name}/${c.restartCount}` } : {}),
      ready: c.ready,
      started: c.started,
      restartCount: c.restartCount,
      state: c.state,
      lastState: c.lastState ?? {},
    });
    return {
      phase: p.phase,
      hostIP: BRIDGE_IP,
      hostIPs: [{ ip: BRIDGE_IP }],
      ...(p.ip ? { podIP: p.ip, podIPs: [{ ip: p.ip }] } : {}),
      startTime: p.startTime,
      conditions: [
        this.#condition(p, "PodReadyToStartContainers", Boolean(p.ip)),
        this.#condition(p, "Initialized", p.initialized),
        this.#condition(p, "Ready", containersReady && p.phase === "Running"),
        this.#condition(p, "ContainersReady", containersReady),
        this.#condition(p, "PodScheduled", true),
      ],
      containerStatuses: p.containers.map(cs),
      ...(p.initContainers.length ? { initContainerStatuses: p.initContainers.map(cs) } : {}),
    };
  }

  // ------------------------------------------------------------ env/vols --

  async #getObject(
    kind: "configmaps" | "secrets",
    ns: string,
    name: string,
  ): Promise<Json | undefined> {
    return await this.#client.getOrUndefined<Json>(`/api/v1/namespaces/${ns}/${kind}/${name}`);
  }

  #fieldRef(p: PodRun, fieldPath: string): string {
    const pod = p.pod;
    const m = fieldPath.match(/^metadata\.(labels|annotations)\['(.+)'\]$/);
    if (m) return pod.metadata[m[1]!]?.[m[2]!] ?? "";
    switch (fieldPath) {
      case "metadata.name":
        return p.name;
      case "metadata.namespace":
        return p.namespace;
      case "metadata.uid":
        return p.uid;
      case "status.podIP":
      case "status.podIPs":
        return p.ip ?? "";
      case "status.hostIP":
      case "status.hostIPs":
        return BRIDGE_IP;
      case "spec.nodeName":
        return this.#opts.nodeName;
      case "spec.serviceAccountName":
        return pod.spec.serviceAccountName ?? "default";
      default:
        throw new Error(`fieldRef ${fieldPath} is not supported by the node agent`);
    }
  }

  #resourceField(c: ContainerSpec, resource: string, divisor?: string): string {
    const [kind, what] = resource.split(".");
    const value = c.resources?.[kind === "requests" ? "requests" : "limits"]?.[what ?? ""];
    if (value !== undefined) return String(value);
    // Unlimited limits read as the node's allocatable, like the kubelet.
    if (what === "cpu") return divisor === "1m" ? "32000" : "32";
    if (what === "memory") return String(64 * 1024 ** 3);
    return "0";
  }

  async #containerEnv(p: PodRun, c: ContainerSpec): Promise<Record<string, string>> {
    const env: Record<string, string> = {
      HOSTNAME: p.name,
      KUBERNETES_SERVICE_HOST: KUBERNETES_SERVICE_IP,
      KUBERNETES_SERVICE_PORT: "443",
      KUBERNETES_SERVICE_PORT_HTTPS: "443",
      KUBERNETES_PORT: `tcp://${KUBERNETES_SERVICE_IP}:443`,
      KUBERNETES_PORT_443_TCP: `tcp://${KUBERNETES_SERVICE_IP}:443`,
      KUBERNETES_PORT_443_TCP_PROTO: "tcp",
      KUBERNETES_PORT_443_TCP_PORT: "443",
      KUBERNETES_PORT_443_TCP_ADDR: KUBERNETES_SERVICE_IP,
    };
    for (const from of c.envFrom ?? []) {
      const prefix = from.prefix ?? "";
      const ref = from.configMapRef ?? from.secretRef;
      const kind = from.configMapRef ? "configmaps" : "secrets";
      const obj = await this.#getObject(kind, p.namespace, ref.name);
      if (!obj) {
        if (ref.optional) continue;
        throw new Error(`envFrom: ${kind.slice(0, -1)} ${p.namespace}/${ref.name} not found`);
      }
      for (const [k, v] of Object.entries(obj.data ?? {})) {
        env[prefix + k] = kind === "secrets"
          ? new TextDecoder().decode(b64decode(String(v)))
          : String(v);
      }
    }
    for (const e of c.env ?? []) {
      if (e.value !== undefined) {
        env[e.name] = expand(String(e.value), env);
        continue;
      }
      const vf = e.valueFrom;
      if (!vf) {
        env[e.name] = "";
      } else if (vf.fieldRef) {
        env[e.name] = this.#fieldRef(p, vf.fieldRef.fieldPath);
      } else if (vf.resourceFieldRef) {
        env[e.name] = this.#resourceField(
          c,
          vf.resourceFieldRef.resource,
          vf.resourceFieldRef.divisor,
        );
      } else if (vf.configMapKeyRef || vf.secretKeyRef) {
        const ref = vf.configMapKeyRef ?? vf.secretKeyRef;
        const kind = vf.configMapKeyRef ? "configmaps" : "secrets";
        const obj = await this.#getObject(kind, p.namespace, ref.name);
        const raw = obj?.data?.[ref.key];
        if (raw === undefined) {
          if (ref.optional) continue;
          throw new Error(
            `env ${e.name}: key ${ref.key} of ${
              kind.slice(0, -1)
            } ${p.namespace}/${ref.name} not found`,
          );
        }
        env[e.name] = kind === "secrets"
          ? new TextDecoder().decode(b64decode(String(raw)))
          : String(raw);
      }
    }
    return env;
  }

  async #token(
    p: PodRun,
    audience: string | undefined,
    expirationSeconds: number,
  ): Promise<string> {
    const sa = p.pod.spec.serviceAccountName ?? "default";
    const res = await this.#client.create<Json>(
      `/api/v1/namespaces/${p.namespace}/serviceaccounts/${sa}/token`,
      {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: {
          ...(audience ? { audiences: [audience] } : {}),
          expirationSeconds,
          boundObjectRef: { kind: "Pod", apiVersion: "v1", name: p.name, uid: p.uid },
        },
      },
    );
    return res.status.token;
  }

  /** Writes files (path → bytes) into dir: written beside, then renamed in. */
  async #writeFiles(dir: string, files: Map<string, Uint8Array>): Promise<void> {
    await Deno.mkdir(dir, { recursive: true });
    for (const [rel, data] of files) {
      const path = `${dir}/${rel}`;
      await Deno.mkdir(path.replace(/\/[^/]*$/, ""), { recursive: true });
      await Deno.writeFile(`${path}.tmp`, data);
      await Deno.rename(`${path}.tmp`, path);
    }
  }

  async #keyedFiles(
    p: PodRun,
    kind: "configmaps" | "secrets",
    name: string,
    items: Array<{ key: string; path: string }> | undefined,
    optional: boolean | undefined,
  ): Promise<Map<string, Uint8Array>> {
    const files = new Map<string, Uint8Array>();
    const obj = await this.#getObject(kind, p.namespace, name);
    if (!obj) {
      if (optional) return files;
      throw new Error(`volume source ${kind.slice(0, -1)} ${p.namespace}/${name} not found`);
    }
    const data: Record<string, Uint8Array> = {};
    for (const [k, v] of Object.entries(obj.data ?? {})) {
      data[k] = kind === "secrets" ? b64decode(String(v)) : encoder.encode(String(v));
    }
    for (const [k, v] of Object.entries(obj.binaryData ?? {})) data[k] = b64decode(String(v));
    if (items?.length) {
      for (const it of items) {
        const v = data[it.key];
        if (v === undefined) {
          if (optional) continue;
          throw new Error(`key ${it.key} missing in ${kind.slice(0, -1)} ${p.namespace}/${name}`);
        }
        files.set(it.path, v);
      }
    } else {
      for (const [k, v] of Object.entries(data)) files.set(k, v);
    }
    return files;
  }

  async #volumeFiles(p: PodRun, vol: Json): Promise<Map<string, Uint8Array> | undefined> {
    if (vol.configMap) {
      return await this.#keyedFiles(
        p,
        "configmaps",
        vol.configMap.name,
        vol.configMap.items,
        vol.configMap.optional,
      );
    }
    if (vol.secret) {
      return await this.#keyedFiles(
        p,
        "secrets",
        vol.secret.secretName,
        vol.secret.items,
        vol.secret.optional,
      );
    }
    if (vol.downwardAPI) {
      const files = new Map<string, Uint8Array>();
      for (const it of vol.downwardAPI.items ?? []) {
        if (it.fieldRef) {
          files.set(it.path, encoder.encode(this.#fieldRef(p, it.fieldRef.fieldPath)));
        }
      }
      return files;
    }
    if (vol.projected) {
      const files = new Map<string, Uint8Array>();
      for (const src of vol.projected.sources ?? []) {
        let part: Map<string, Uint8Array> | undefined;
        if (src.serviceAccountToken) {
          const t = src.serviceAccountToken;
          part = new Map([[
            t.path,
            encoder.encode(await this.#token(p, t.audience, t.expirationSeconds ?? 3607)),
          ]]);
        } else if (src.configMap) {
          part = await this.#keyedFiles(
            p,
            "configmaps",
            src.configMap.name,
            src.configMap.items,
            src.configMap.optional,
          );
        } else if (src.secret) {
          part = await this.#keyedFiles(
            p,
            "secrets",
            src.secret.name,
            src.secret.items,
            src.secret.optional,
          );
        } else if (src.downwardAPI) {
          part = await this.#volumeFiles(p, { downwardAPI: src.downwardAPI });
        }
        for (const [k, v] of part ?? []) files.set(k, v);
      }
      return files;
    }
    return undefined;
  }

  /**
   * Materialises the pod's volumes under <pod dir>/volumes/ and records the
   * bind mounts each container needs. Sources that do not exist yet (e.g.
   * kube-root-ca.crt right after a namespace was created) are retried.
   */
  async #prepareVolumes(p: PodRun): Promise<void> {
    const volumes: Json[] = p.pod.spec.volumes ?? [];
    const paths = new Map<string, string>();
    for (const vol of volumes) {
      const dir = `${p.dir}/volumes/${vol.name}`;
      if (vol.hostPath) {
        paths.set(vol.name, vol.hostPath.path);
        continue;
      }
      if (vol.emptyDir) {
        await Deno.mkdir(dir, { recursive: true });
        paths.set(vol.name, dir);
        continue;
      }
      const deadline = Date.now() + 60_000;
      while (true) {
        try {
          const files = await this.#volumeFiles(p, vol);
          if (!files) {
            throw new Error(
              `volume ${vol.name}: unsupported volume type (${Object.keys(vol).join(",")})`,
            );
          }
          await this.#writeFiles(dir, files);
          break;
        } catch (e) {
          if (p.stopping || Date.now() > deadline || /unsupported/.test(String(e))) throw e;
          await sleep(500, p.abort.signal);
        }
      }
      paths.set(vol.name, dir);
      if (volumeHasToken(vol)) this.#refreshTokens(p, vol, dir);
    }
    for (const c of [...p.initContainers, ...p.containers]) {
      const list: Array<{ source: string; target: string; readOnly: boolean }> = [];
      for (const m of c.spec.volumeMounts ?? []) {
        const base = paths.get(m.name);
        if (!base) throw new Error(`container ${c.spec.name} mounts unknown volume ${m.name}`);
        const source = m.subPath ? `${base}/${m.subPath}` : base;
        if (m.subPath) {
          try {
            await Deno.stat(source);
          } catch {
            await Deno.mkdir(source, { recursive: true });
          }
        }
        list.push({ source, target: m.mountPath, readOnly: Boolean(m.readOnly) });
      }
      p.mounts.set(c.spec.name, list);
    }
  }

  /** Bound tokens expire; rewrite them at 80% of their lifetime like the kubelet. */
  #refreshTokens(p: PodRun, vol: Json, dir: string): void {
    const exp = Math.min(
      ...((vol.projected?.sources ?? []) as Json[]).filter((s) => s.serviceAccountToken).map((s) =>
        s.serviceAccountToken.expirationSeconds ?? 3607
      ),
    );
    (async () => {
      while (!p.stopping) {
        await sleep(exp * 800, p.abort.signal);
        if (p.stopping) return;
        try {
          const files = await this.#volumeFiles(p, vol);
          if (files) await this.#writeFiles(dir, files);
        } catch (e) {
          this.#log.warn("token refresh failed", { pod: p.key, error: e });
        }
      }
    })();
  }
}

function volumeHasToken(vol: Json): boolean {
  return Boolean(vol.projected?.sources?.some((s: Json) => s.serviceAccountToken));
}

/** Kubernetes $(VAR) expansion; $$(VAR) escapes, unknown names stay as is. */
export function expand(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name?: string) => {
    if (m === "$$") return "$";
    return name !== undefined && name in env ? env[name]! : m;
  });
}

/**
 * The kubelet's gRPC probe: grpc.health.v1.Health/Check with the probe's
 * `service` ("" when unset) within the probe's timeout; it passes only on
 * SERVING (any other status, an error status such as NOT_FOUND, a refused
 * connection or the deadline fail it).
 *
 * Unlike the kubelet (a Go client, a new connection per probe) the channel of
 * each pod address is kept open until the pod is stopped, and closed only
 * after its processes are gone: a grpc-js client on Deno that closes its
 * connection can abort a Deno gRPC server inside node:http2
 * (denoland/deno#36788, see scaler/README.md), which a Go kubelet never
 * does. Reconnects back off at most 1 s, so a restarted container is probed
 * again at once.
 */
export class GrpcProbeClients {
  static #health?: grpc.ServiceClientConstructor;
  readonly #clients = new Map<string, Map<string, grpc.Client>>();

  static #healthClass(): grpc.ServiceClientConstructor {
    if (GrpcProbeClients.#health) return GrpcProbeClients.#health;
    const def = protoLoader.loadSync(`${REPO_ROOT}/proto/health.proto`, {
      keepCase: true,
      enums: String,
      defaults: true,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    return (GrpcProbeClients.#health = pkg.grpc.health.v1.Health);
  }

  /** One probe of `host:port` for the pod `owner` (its uid). */
  check(
    owner: string,
    host: string,
    port: number,
    service: string,
    timeoutMs: number,
  ): Promise<boolean> {
    const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    let mine = this.#clients.get(owner);
    if (!mine) this.#clients.set(owner, mine = new Map());
    let client = mine.get(address);
    if (!client) {
      const Health = GrpcProbeClients.#healthClass();
      client = new Health(address, grpc.credentials.createInsecure(), {
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1_000,
        "grpc.user_agent": "kube-probe/1.34",
      });
      mine.set(address, client);
    }
    const check = (client as unknown as {
      Check(
        req: { service: string },
        metadata: grpc.Metadata,
        options: grpc.CallOptions,
        cb: (err: grpc.ServiceError | null, res?: { status?: string }) => void,
      ): void;
    }).Check.bind(client);
    return new Promise((resolve) => {
      try {
        check(
          { service },
          new grpc.Metadata(),
          { deadline: Date.now() + timeoutMs },
          (err, res) => resolve(!err && res?.status === "SERVING"),
        );
      } catch {
        resolve(false);
      }
    });
  }

  /** Closes the channels of pod `owner` (after its processes have exited). */
  close(owner: string): void {
    for (const c of this.#clients.get(owner)?.values() ?? []) c.close();
    this.#clients.delete(owner);
  }

  /** Closes every channel. */
  closeAll(): void {
    for (const owner of [...this.#clients.keys()]) this.close(owner);
  }
}

async function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  const conn = await Promise.race([
    Deno.connect({ hostname: host, port }),
    sleep(timeoutMs).then(() => undefined),
  ]).catch(() => undefined);
  if (!conn) return false;
  conn.close();
  return true;
}

function signalNumber(sig: Deno.Signal): number {
  const table: Partial<Record<Deno.Signal, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGABRT: 6,
    SIGKILL: 9,
    SIGSEGV: 11,
    SIGPIPE: 13,
    SIGTERM: 15,
  };
  return table[sig] ?? 0;
}
