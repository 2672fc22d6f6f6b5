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
 * not load client-node (README Measured); programs that mind their memory use that.
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

/** Where every pod finds its service-account token (client-node's in-cluster path). */
const SERVICEACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** KUBECONFIG, else ~/.kube/config, else in-cluster (client-node's order). */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else if (Deno.env.get("KUBECONFIG")) kc.loadFromDefault();
  else {
    // client-node probes these files with fs.accessSync, which Deno refuses
    // without --allow-sys; it then silently falls back to
    // http://localhost:8080. Probe them with --allow-read instead.
    const home = Deno.env.get("HOME");
    if (home && isFile(`${home}/.kube/config`)) kc.loadFromFile(`${home}/.kube/config`);
    else if (isFile(SERVICEACCOUNT_TOKEN)) kc.loadFromCluster();
    else kc.loadFromDefault();
  }
  return kc;
}

/** The API client, built from a client-node KubeConfig (default: loadKubeConfig()). */
export class KubeClient extends KubeApiClient {
  constructor(kc: KubeConfig = loadKubeConfig()) {
    super(credentialsOf(kc));
  }
}
