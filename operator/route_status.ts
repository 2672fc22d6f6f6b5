/**
 * The status of an InterceptorRoute, free of I/O: from the route (or why it
 * does not parse) and the Services it names, the Ready condition the
 * operator writes. route_controller.ts executes it. The operator writes
 * nothing else for an InterceptorRoute: its ScaledObject is the user's.
 */
import type { InterceptorRoute } from "../shared/interceptor_route.ts";
import {
  portsText,
  type Problem,
  type RawCondition,
  READY,
  type ReadyState,
  readyStateOf,
  type ServiceView,
  setCondition,
  statusEqual,
} from "./reconcile.ts";

export const RouteReason = {
  Reconciled: "Reconciled",
  /** The object does not parse (only possible with an older, looser CRD). */
  Invalid: "Invalid",
  ServiceNotFound: "ServiceNotFound",
  PortNotFound: "PortNotFound",
  FallbackServiceNotFound: "FallbackServiceNotFound",
  FallbackPortNotFound: "FallbackPortNotFound",
} as const;

/** The Go add-on's message for a reconciled route. */
export const RECONCILED_MESSAGE = "InterceptorRoute reconciled";
export const NO_RULES_MESSAGE = "no rules: no request is routed to this route; add spec.rules";

export interface RouteObserved {
  /** spec.target.service: null when it does not exist. */
  service: ServiceView | null;
  /** spec.coldStart.fallback.service: null when it does not exist; undefined when none is set. */
  fallbackService?: ServiceView | null;
}

export interface RouteStatus {
  conditions?: RawCondition[];
  [k: string]: unknown;
}

interface ServiceCheck {
  /** "Service" or "fallback Service", as the message names it. */
  what: string;
  /** Where the reference is: "spec.target" */
  field: string;
  /** Its key for the Service's name: "service" or "name". */
  nameKey: string;
  missing: string;
  port: string;
}

function checkService(
  svc: ServiceView | null,
  ref: { name: string; port?: number | undefined; portName?: string | undefined },
  namespace: string,
  c: ServiceCheck,
): Problem | undefined {
  const id = `${namespace}/${ref.name}`;
  if (svc === null) {
    return {
      reason: c.missing,
      message: `${c.what} ${id} not found: create it or fix ${c.field}.${c.nameKey}`,
    };
  }
  if (ref.port !== undefined && !svc.ports.some((p) => p.port === ref.port)) {
    return {
      reason: c.port,
      message: `${c.what} ${id} has no port ${ref.port} (${
        portsText(svc)
      }): fix ${c.field}.port or the Service`,
    };
  }
  if (ref.portName !== undefined && !svc.ports.some((p) => p.name === ref.portName)) {
    return {
      reason: c.port,
      message: `${c.what} ${id} has no port named "${ref.portName}" (${
        portsText(svc)
      }): fix ${c.field}.portName or the Service`,
    };
  }
  return undefined;
}

/** What is wrong with the Services a valid route names, target first. */
export function routeProblems(route: InterceptorRoute, observed: RouteObserved): Problem[] {
  const ns = route.metadata.namespace;
  const problems: Problem[] = [];
  const t = route.spec.target;
  const target = checkService(
    observed.service,
    { name: t.service, port: t.port, portName: t.portName },
    ns,
    {
      what: "Service",
      field: "spec.target",
      nameKey: "service",
      missing: RouteReason.ServiceNotFound,
      port: RouteReason.PortNotFound,
    },
  );
  if (target) problems.push(target);
  const fb = route.spec.coldStart?.fallback?.service;
  if (fb && observed.fallbackService !== undefined) {
    const p = checkService(
      observed.fallbackService,
      fb,
      ns,
      {
        what: "fallback Service",
        field: "spec.coldStart.fallback.service",
        nameKey: "name",
        missing: RouteReason.FallbackServiceNotFound,
        port: RouteReason.FallbackPortNotFound,
      },
    );
    if (p) problems.push(p);
  }
  return problems;
}

/**
 * Ready for a route: False with the first problem's reason (every problem
 * in the message) or Invalid with the parse error; else True/Reconciled,
 * with a hint when the route has no rules and so receives no request.
 */
export function routeReadyState(
  route: InterceptorRoute | { invalid: string },
  observed: RouteObserved,
): ReadyState {
  if ("invalid" in route) {
    return { status: "False", reason: RouteReason.Invalid, message: route.invalid };
  }
  const noRules = (route.spec.rules ?? []).length === 0;
  return readyStateOf(
    routeProblems(route, observed),
    noRules ? NO_RULES_MESSAGE : RECONCILED_MESSAGE,
  );
}

/** The status to write: the current one with Ready set (other conditions and fields kept). */
export function desiredRouteStatus(
  current: RouteStatus | undefined,
  ready: ReadyState,
  generation: number | undefined,
  now: Date,
): RouteStatus {
  return {
    ...(current ?? {}),
    conditions: setCondition(current?.conditions, {
      type: READY,
      status: ready.status,
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
      reason: ready.reason,
      message: ready.message,
    }, now),
  };
}

/** Whether a write is needed (lastTransitionTime alone never is one). */
export function routeStatusEqual(a: RouteStatus | undefined, b: RouteStatus | undefined): boolean {
  return statusEqual(a, b);
}
