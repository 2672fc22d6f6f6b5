/**
 * Finds the interceptor pods through the EndpointSlices of the interceptor
 * admin Service (labelled kubernetes.io/service-name=<service>), as the Go
 * add-on does. Every endpoint with an address is tracked, ready or not: a
 * terminating interceptor still has requests in flight that are real load,
 * and a starting one answers with zeros. Readiness only decides whether a pod
 * that stops answering keeps its last counts for a while (see
 * queue_aggregator.ts).
 *
 * A pod listed in several slices (dual-stack IPv4 + IPv6, or mid-move
 * between slices) is counted once, by its UID.
 */
import type { V1EndpointSlice } from "@kubernetes/client-node";
import { Informer, type KubeApiClient, type KubeObject } from "../shared/kube_api.ts";
import type { Logger } from "../shared/log.ts";
import type { InterceptorPod } from "./queue_aggregator.ts";

export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

/** The collection path and label selector of a Service's EndpointSlices. */
export function endpointSliceQuery(namespace: string, service: string): {
  path: string;
  labelSelector: string;
} {
  return {
    path: `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/endpointslices`,
    labelSelector: `${SERVICE_NAME_LABEL}=${service}`,
  };
}

function hostOf(address: string, addressType: string | undefined): string {
  return addressType === "IPv6" || address.includes(":") ? `[${address}]` : address;
}

const FAMILY_ORDER: Record<string, number> = { IPv4: 0, IPv6: 1, FQDN: 2 };

/**
 * The interceptor pods in a set of EndpointSlices, each with the admin URL on
 * `port` (KEDA_HTTP_SCALER_TARGET_ADMIN_PORT, used with the endpoint address
 * like the Go add-on). Sorted by name for stable output.
 */
export function interceptorPodsFromSlices(
  slices: Iterable<V1EndpointSlice>,
  port: number,
): InterceptorPod[] {
  const byId = new Map<string, InterceptorPod & { family: number }>();
  for (const slice of slices) {
    const family = FAMILY_ORDER[slice.addressType] ?? 3;
    for (const ep of slice.endpoints ?? []) {
      const address = ep.addresses?.[0];
      if (!address) continue;
      const ref = ep.targetRef;
      const id = ref?.uid ??
        (ref?.name ? `${ref.namespace ?? slice.metadata?.namespace}/${ref.name}` : address);
      // "ready: nil should be interpreted as ready" (EndpointConditions API).
      const ready = ep.conditions?.ready !== false;
      const pod = {
        id,
        name: ref?.name ?? address,
        url: `http://${hostOf(address, slice.addressType)}:${port}`,
        ready,
        family,
      };
      const seen = byId.get(id);
      // Prefer IPv4 over IPv6 for the same pod, and a ready entry over a stale one.
      if (
        !seen || family < seen.family ||
        (family === seen.family && ready && !seen.ready)
      ) {
        byId.set(id, pod);
      }
    }
  }
  return [...byId.values()]
    .map(({ family: _family, ...pod }) => pod)
    .sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}

export interface InterceptorEndpointsOptions {
  namespace: string;
  service: string;
  port: number;
  log: Logger;
  /** Called with the full pod list after every change (and after the first list). */
  onPods: (pods: InterceptorPod[]) => void;
}

/**
 * Subscribes to an EndpointSlice informer and reports the pod list on every
 * change. Returns an unsubscribe function.
 */
export function followInterceptorEndpoints(
  informer: Informer<KubeObject>,
  options: InterceptorEndpointsOptions,
): () => void {
  let last = "";
  const publish = () => {
    const slices = informer.store.values() as Iterable<unknown> as Iterable<V1EndpointSlice>;
    const pods = interceptorPodsFromSlices(slices, options.port);
    const text = JSON.stringify(pods);
    if (text === last) return;
    last = text;
    options.log.info("interceptor endpoints", {
      namespace: options.namespace,
      service: options.service,
      pods: pods.map((p) => `${p.name}${p.ready ? "" : " (not ready)"}`),
    });
    if (pods.length === 0) {
      options.log.warn(
        "no interceptor endpoints: every route reads 0; check KEDA_HTTP_SCALER_TARGET_ADMIN_SERVICE and _NAMESPACE name the interceptor admin Service",
      );
    }
    options.onPods(pods);
  };
  return informer.subscribe((e) => {
    // Before the first full list the store is incomplete; SYNC follows it.
    if (e.type === "SYNC" || informer.hasSynced) publish();
  });
}

/** An informer over the interceptor admin Service's EndpointSlices. */
export function endpointSliceInformer(
  client: KubeApiClient,
  namespace: string,
  service: string,
  log: Logger,
): Informer<KubeObject> {
  const q = endpointSliceQuery(namespace, service);
  return new Informer(client, { path: q.path, labelSelector: q.labelSelector, log });
}
