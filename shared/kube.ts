/**
 * Kubernetes API access shared by the three programs: kubeconfig loading
 * (parsed by @kubernetes/client-node, so KUBECONFIG, ~/.kube/config and
 * in-cluster service-account credentials work as users expect), requests over
 * Deno's native fetch with a per-cluster TLS client, and an Informer: a
 * list+watch cache that relists on 410 Gone and backs off with jitter.
 *
 * Why not client-node's own HTTP layer: it rides on Node's https agents,
 * which Deno emulates; Deno.createHttpClient gives native TLS with client
 * certificates, streaming watches and AbortSignal everywhere.
 *
 * Everything but the KubeConfig entry points lives in kube_api.ts, which does
 * not load client-node (~80 MB); programs that mind their memory use that.
 */
import { KubeConfig } from "@kubernetes/client-node";
import { fromBase64, KubeApiClient, type KubeCredentials, readText } from "./kube_api.ts";

export * from "./kube_api.ts";

/** The credentials of the current context of a client-node KubeConfig. */
export function credentialsOf(kc: KubeConfig): KubeCredentials {
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new Error(
      "kubeconfig has no current cluster: set KUBECONFIG to a valid file, or run inside a pod",
    );
  }
  const user = kc.getCurrentUser();
  const ctx = kc.getContextObject(kc.getCurrentContext());
  const creds: KubeCredentials = {
    server: cluster.server.replace(/\/+$/, ""),
    namespace: ctx?.namespace ?? "default",
  };
  if (cluster.caData) creds.caCerts = [fromBase64(cluster.caData)];
  else if (cluster.caFile) creds.caCerts = [readText(cluster.caFile)];
  if (user) {
    if (user.certData) creds.cert = fromBase64(user.certData);
    else if (user.certFile) creds.cert = readText(user.certFile);
    if (user.keyData) creds.key = fromBase64(user.keyData);
    else if (user.keyFile) creds.key = readText(user.keyFile);
    if (user.token) creds.token = user.token;
    const tokenFile =
      (user.authProvider?.config as Record<string, string> | undefined)?.tokenFile ??
        (user as unknown as { tokenFile?: string }).tokenFile;
    if (tokenFile) creds.tokenFile = tokenFile;
    if (user.exec) {
      throw new Error(
        `kubeconfig user "${user.name}" uses an exec credential plugin, which this program does not run: use a kubeconfig with a token or client certificate`,
      );
    }
  }
  return creds;
}

/** KUBECONFIG, else in-cluster, else ~/.kube/config (client-node's order). */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

/** The API client, built from a client-node KubeConfig (default: loadKubeConfig()). */
export class KubeClient extends KubeApiClient {
  constructor(kc: KubeConfig = loadKubeConfig()) {
    super(credentialsOf(kc));
  }
}
