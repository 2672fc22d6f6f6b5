/**
 * Ready endpoints per Service and port, from the Services and EndpointSlices
 * the main isolate watches. Pure bookkeeping (no I/O), so the rules are unit
 * tested: an endpoint is ready when conditions.ready is not false and it is
 * not terminating; a route's port (the Service port number) is mapped to the
 * slice port through the Service's port name, because slices carry the
 * target (container) port.
 */
import type { V1EndpointSlice, V1Service } from "@kubernetes/client-node";
import type { ServiceRef } from "../shared/routing_table.ts";

/** "namespace/service:port" or "namespace/service:portName". */
export function targetKeyOf(ref: ServiceRef): string {
  return `${ref.namespace}/${ref.service}:${ref.port ?? ref.portName ?? ""}`;
}

export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";
export const H2C_APP_PROTOCOL = "kubernetes.io/h2c";
/** The IANA name Kubernetes documents for TLS app protocols: the app is reached over TLS. */
export const HTTPS_APP_PROTOCOL = "https";

export interface ReadyEndpoint {
  ip: string;
  port: number;
}

/** A not-ready endpoint that is not terminating: perhaps a pod still starting. */
export interface StartingEndpoint extends ReadyEndpoint {
  /** The pod behind it (the EndpointSlice's targetRef); without one it cannot be checked. */
  pod?: { namespace: string; name: string; uid?: string };
}

export interface TargetEndpoints {
  key: string;
  /** Sorted by address, deduplicated. */
  ready: ReadyEndpoint[];
  /** Endpoints known but not ready (starting, failing probes, terminating). */
  notReady: number;
  /** Not ready and not terminating: pods that may be starting (starting_pods.ts checks them). */
  starting: StartingEndpoint[];
  /** Distinct pods (or addresses) behind the port, ready or not. */
  replicas: number;
  appProtocol?: string;
  /** Why nothing can be ready, when that is known (e.g. the Service has no such port). */
  problem?: string;
  /** The Service's cluster IP and port (absent for a headless Service). */
  clusterAddress?: ReadyEndpoint;
}

function keyOf(obj: { metadata?: { namespace?: string; name?: string } }): string {
  return `${obj.metadata?.namespace ?? "default"}/${obj.metadata?.name ?? ""}`;
}

export class EndpointView {
  readonly services = new Map<string, V1Service>();
  readonly slices = new Map<string, V1EndpointSlice>();
  /** Service key -> keys of its slices. */
  readonly #slicesOf = new Map<string, Set<string>>();
  /** Slice key -> service key it was indexed under. */
  readonly #serviceOfSlice = new Map<string, string>();

  /** Returns the key of the Service whose endpoints may have changed. */
  upsertService(svc: V1Service): string {
    const key = keyOf(svc);
    this.services.set(key, svc);
    return key;
  }

  deleteService(key: string): string {
    this.services.delete(key);
    return key;
  }

  /** Returns the Service keys affected (old and new owner when the label moved). */
  upsertSlice(slice: V1EndpointSlice): string[] {
    const key = keyOf(slice);
    const svcName = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
    const affected = this.#unindex(key);
    this.slices.set(key, slice);
    if (svcName) {
      const svcKey = `${slice.metadata?.namespace ?? "default"}/${svcName}`;
      let set = this.#slicesOf.get(svcKey);
      if (!set) this.#slicesOf.set(svcKey, set = new Set());
      set.add(key);
      this.#serviceOfSlice.set(key, svcKey);
      if (!affected.includes(svcKey)) affected.push(svcKey);
    }
    return affected;
  }

  deleteSlice(key: string): string[] {
    const affected = this.#unindex(key);
    this.slices.delete(key);
    return affected;
  }

  #unindex(sliceKey: string): string[] {
    const svcKey = this.#serviceOfSlice.get(sliceKey);
    if (svcKey === undefined) return [];
    this.#serviceOfSlice.delete(sliceKey);
    const set = this.#slicesOf.get(svcKey);
    set?.delete(sliceKey);
    if (set && set.size === 0) this.#slicesOf.delete(svcKey);
    return [svcKey];
  }

  /** Ready endpoints for a route's target (or fallback) Service port. */
  resolve(ref: ServiceRef): TargetEndpoints {
    const key = targetKeyOf(ref);
    const svcKey = `${ref.namespace}/${ref.service}`;
    const svc = this.services.get(svcKey);
    let portName: string | undefined = ref.portName;
    let appProtocol: string | undefined;
    let problem: string | undefined;
    let servicePort: number | undefined;
    if (portName === undefined && svc) {
      const sp = svc.spec?.ports?.find((p) => p.port === ref.port);
      if (sp) {
        portName = sp.name ?? "";
        appProtocol = sp.appProtocol;
        servicePort = sp.port;
      } else {
        problem = `Service ${svcKey} has no port ${ref.port}`;
      }
    } else if (portName !== undefined && svc) {
      const sp = svc.spec?.ports?.find((p) => (p.name ?? "") === portName);
      if (sp) {
        appProtocol = sp.appProtocol;
        servicePort = sp.port;
      } else problem = `Service ${svcKey} has no port named "${portName}"`;
    }
    const ready = new Map<string, ReadyEndpoint>();
    const all = new Set<string>();
    let notReady = 0;
    const starting: StartingEndpoint[] = [];
    // A known Service without the port: nothing can be forwarded there.
    const slices = problem ? [] : this.#slicesOf.get(svcKey) ?? [];
    for (const sliceKey of slices) {
      const slice = this.slices.get(sliceKey);
      if (!slice || slice.addressType === "FQDN") continue;
      const ports = slice.ports ?? [];
      let port = portName !== undefined
        ? ports.find((p) => (p.name ?? "") === portName)
        : ports.find((p) => p.port === ref.port) ?? (ports.length === 1 ? ports[0] : undefined);
      if (!port && portName === "" && ports.length === 1) port = ports[0];
      if (!port || port.port === undefined) continue;
      if (port.appProtocol) appProtocol = port.appProtocol;
      for (const ep of slice.endpoints ?? []) {
        const ip = ep.addresses?.[0];
        if (!ip) continue;
        all.add(ep.targetRef?.name ? `pod/${ep.targetRef.name}` : ip);
        const c = ep.conditions ?? {};
        if (c.ready === false || c.terminating === true) {
          notReady++;
          if (c.terminating !== true) {
            const ref = ep.targetRef;
            const ns = slice.metadata?.namespace ?? "";
            // Only a pod of the slice's own namespace: whoever writes the slice
            // must not make us read (and replay the probe of) another tenant's pod.
            const own = ref?.kind === "Pod" && ref.name && (ref.namespace ?? ns) === ns;
            starting.push(
              own
                ? {
                  ip,
                  port: port.port,
                  pod: { namespace: ns, name: ref.name!, ...(ref.uid ? { uid: ref.uid } : {}) },
                }
                : { ip, port: port.port },
            );
          }
          continue;
        }
        ready.set(`${ip}:${port.port}`, { ip, port: port.port });
      }
    }
    const sorted = [...ready.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map((
      [, v],
    ) => v);
    const out: TargetEndpoints = { key, ready: sorted, notReady, starting, replicas: all.size };
    if (appProtocol) out.appProtocol = appProtocol;
    if (problem && sorted.length === 0) out.problem = problem;
    const clusterIP = svc?.spec?.clusterIP;
    if (clusterIP && clusterIP !== "None" && servicePort !== undefined) {
      out.clusterAddress = { ip: clusterIP, port: servicePort };
    }
    return out;
  }
}

/** "ip:port" with brackets for IPv6, as used for pools and logs. */
export function addressOf(ep: ReadyEndpoint): string {
  return ep.ip.includes(":") ? `[${ep.ip}]:${ep.port}` : `${ep.ip}:${ep.port}`;
}
