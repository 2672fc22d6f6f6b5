/**
 * etcd, kube-apiserver, kube-controller-manager and kube-scheduler as local
 * processes of one cluster, on free ports, with state under <stateDir>.
 */

import type { Logger } from "../../shared/log.ts";
import { sleep } from "../../shared/lifetime.ts";
import type { Binaries } from "./binaries.ts";
import { KubeClient } from "./kube_client.ts";
import { generatePki, kubeconfigText, type Pki } from "./pki.ts";
import { freePort, type ManagedProcess, startProcess } from "./processes.ts";
import { KUBERNETES_SERVICE_IP, POD_CIDR, SERVICE_CIDR } from "./paths.ts";

export interface ControlPlaneOptions {
  stateDir: string;
  binaries: Partial<Binaries>;
  /** Address the apiserver binds to and advertises (the bridge IP with a node). */
  apiAddress: string;
  /** Run kube-controller-manager and kube-scheduler (default true). */
  controllers: boolean;
  log: Logger;
  signal?: AbortSignal;
}

export interface ControlPlane {
  server: string;
  kubeconfigPath: string;
  pki: Pki;
  client: KubeClient;
  processes: ManagedProcess[];
  stop(): Promise<void>;
}

function need(binaries: Partial<Binaries>, name: keyof Binaries): string {
  const path = binaries[name];
  if (!path) throw new Error(`internal: binary ${name} was not resolved`);
  return path;
}

/**
 * Rejects when the process exits, with its log tail; for racing against
 * start-up. Marked handled, so a later (intended) exit is not an unhandled
 * rejection.
 */
function exitedEarly(p: ManagedProcess): Promise<never> {
  const promise = exitedEarlyInner(p);
  promise.catch(() => {});
  return promise;
}

async function exitedEarlyInner(p: ManagedProcess): Promise<never> {
  const status = await p.status;
  let tail = "";
  try {
    tail = (await Deno.readTextFile(p.logPath)).split("\n").slice(-25).join("\n");
  } catch {
    // No log yet.
  }
  throw new Error(
    `${p.name} exited with code ${status.code} during start-up; log ${p.logPath}:\n${tail}`,
  );
}

async function pollUntil(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    signal?.throwIfAborted();
    try {
      if (await check()) return;
    } catch {
      // Not up yet.
    }
    await sleep(100, signal);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const { stateDir, binaries, log } = options;
  const logs = `${stateDir}/logs`;
  const pids = `${stateDir}/pids`;
  await Deno.mkdir(logs, { recursive: true });
  await Deno.mkdir(pids, { recursive: true });
  const processes: ManagedProcess[] = [];
  const stop = async () => {
    // Reverse start order: clients before the apiserver, etcd last.
    for (const p of [...processes].reverse()) await p.stop(5_000);
  };

  try {
    const t0 = Date.now();
    const pki = await generatePki(`${stateDir}/pki`, {
      ips: [options.apiAddress, "127.0.0.1", KUBERNETES_SERVICE_IP],
    });
    log.debug("certificates generated", { ms: Date.now() - t0 });

    // etcd on loopback only.
    const etcdClient = freePort();
    const etcdPeer = freePort();
    const etcd = startProcess({
      name: "etcd",
      command: need(binaries, "etcd"),
      args: [
        `--name=default`,
        `--data-dir=${stateDir}/etcd`,
        `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
        // Test data is disposable; skipping fsync makes start-up and writes fast.
        `--unsafe-no-fsync=true`,
        `--log-level=warn`,
      ],
      logPath: `${logs}/etcd.log`,
      pidDir: pids,
    });
    processes.push(etcd);
    const etcdEarly = exitedEarly(etcd);
    await Promise.race([
      etcdEarly,
      pollUntil("etcd /health", 20_000, async () => {
        const res = await fetch(`http://127.0.0.1:${etcdClient}/health`);
        await res.body?.cancel();
        return res.ok;
      }, options.signal),
    ]);
    log.debug("etcd ready", { ms: Date.now() - t0, port: etcdClient });

    const apiPort = freePort(options.apiAddress);
    const server = `https://${options.apiAddress}:${apiPort}`;
    const apiserver = startProcess({
      name: "kube-apiserver",
      command: need(binaries, "kube-apiserver"),
      args: [
        `--etcd-servers=http://127.0.0.1:${etcdClient}`,
        `--bind-address=${options.apiAddress}`,
        `--advertise-address=${options.apiAddress}`,
        `--secure-port=${apiPort}`,
        `--cert-dir=${stateDir}/apiserver`,
        `--tls-cert-file=${pki.servingCert}`,
        `--tls-private-key-file=${pki.servingKey}`,
        `--client-ca-file=${pki.caCert}`,
        `--service-account-key-file=${pki.saPub}`,
        `--service-account-signing-key-file=${pki.saKey}`,
        `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
        `--api-audiences=https://kubernetes.default.svc.cluster.local`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        `--authorization-mode=Node,RBAC`,
        `--allow-privileged=true`,
        // Aggregation layer (KEDA's metrics API server registers an APIService).
        `--requestheader-client-ca-file=${pki.frontProxyCaCert}`,
        `--requestheader-allowed-names=front-proxy-client`,
        `--requestheader-extra-headers-prefix=X-Remote-Extra-`,
        `--requestheader-group-headers=X-Remote-Group`,
        `--requestheader-username-headers=X-Remote-User`,
        `--proxy-client-cert-file=${pki.frontProxyClientCert}`,
        `--proxy-client-key-file=${pki.frontProxyClientKey}`,
        // Reach aggregated API servers at their pod IPs (routable from the host).
        `--enable-aggregator-routing=true`,
        // `kubectl logs` reaches the node agent at the node's InternalIP.
        `--kubelet-preferred-address-types=InternalIP`,
        // Without a pod network the loopback address cannot be an endpoint of
        // the kubernetes Service; with one, the bridge IP is.
        ...(options.apiAddress.startsWith("127.") ? ["--endpoint-reconciler-type=none"] : []),
        `--profiling=false`,
        `--v=1`,
      ],
      logPath: `${logs}/kube-apiserver.log`,
      pidDir: pids,
    });
    processes.push(apiserver);

    const kubeconfigPath = `${stateDir}/kubeconfig`;
    await Deno.writeTextFile(kubeconfigPath, await kubeconfigText(pki, server), { mode: 0o600 });
    const client = await KubeClient.fromKubeconfig(kubeconfigPath);
    await Promise.race([
      exitedEarly(apiserver),
      etcdEarly,
      pollUntil("kube-apiserver /readyz", 60_000, async () => {
        await client.request("GET", "/readyz");
        return true;
      }, options.signal),
    ]);
    log.info("apiserver ready", { ms: Date.now() - t0, server });

    if (options.controllers) {
      const common = [
        `--kubeconfig=${kubeconfigPath}`,
        `--authentication-kubeconfig=${kubeconfigPath}`,
        `--authorization-kubeconfig=${kubeconfigPath}`,
        `--bind-address=127.0.0.1`,
        `--leader-elect=false`,
        `--profiling=false`,
      ];
      processes.push(startProcess({
        name: "kube-controller-manager",
        command: need(binaries, "kube-controller-manager"),
        args: [
          ...common,
          `--secure-port=${freePort()}`,
          `--cert-dir=${stateDir}/kcm`,
          `--controllers=*`,
          `--use-service-account-credentials=true`,
          `--service-account-private-key-file=${pki.saKey}`,
          `--root-ca-file=${pki.caCert}`,
          `--cluster-signing-cert-file=${pki.caCert}`,
          `--cluster-signing-key-file=${pki.caKey}`,
          `--cluster-cidr=${POD_CIDR}`,
          `--service-cluster-ip-range=${SERVICE_CIDR}`,
          `--allocate-node-cidrs=false`,
          // Tests want HPA decisions quickly; the default is 15s.
          `--horizontal-pod-autoscaler-sync-period=5s`,
          `--v=1`,
        ],
        logPath: `${logs}/kube-controller-manager.log`,
        pidDir: pids,
      }));
      processes.push(startProcess({
        name: "kube-scheduler",
        command: need(binaries, "kube-scheduler"),
        args: [
          ...common,
          `--secure-port=${freePort()}`,
          `--cert-dir=${stateDir}/scheduler`,
          `--v=1`,
        ],
        logPath: `${logs}/kube-scheduler.log`,
        pidDir: pids,
      }));
    }
    return { server, kubeconfigPath, pki, client, processes, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
