/**
 * What the scaler needs from each InterceptorRoute (http.keda.sh/v1beta1):
 * its scaling metrics (concurrency, request rate, or both, with targets and
 * the rate window) and whether it has a cold-start placeholder. Reads the
 * informer's store; each object is parsed once.
 *
 * Also the one place that decides which object sets a route's rate window:
 * the interceptor counts an InterceptorRoute and an HTTPScaledObject of the
 * same namespace/name under one key, and a valid InterceptorRoute wins (as
 * it does in the interceptor's routing table).
 */
import type { ScalingMetric } from "../shared/httpso.ts";
import { parseInterceptorRoute, scalingMetricsOf } from "../shared/interceptor_route.ts";
import { type HTTPScaledObjectIndex, type Lookup, ParsedIndex } from "./httpso_index.ts";
import type { RateConfig } from "./queue_aggregator.ts";

export interface RouteScaling {
  /** In the order Go reports them: concurrency first, then requestRate. */
  metrics: ScalingMetric[];
  /** spec.coldStart.placeholder is set: requests are answered while the app is at zero. */
  placeholder: boolean;
}

export type InterceptorRouteLookup = Lookup<RouteScaling>;

export class InterceptorRouteIndex extends ParsedIndex<RouteScaling> {
  /** `store`: "namespace/name" → raw InterceptorRoute, e.g. an Informer's store. */
  constructor(store: ReadonlyMap<string, unknown>) {
    super(store, (raw) => {
      const route = parseInterceptorRoute(raw);
      return {
        metrics: scalingMetricsOf(route.spec),
        placeholder: route.spec.coldStart?.placeholder !== undefined,
      };
    });
  }

  /** The requestRate window of a valid InterceptorRoute; undefined if it has none. */
  requestRateOf(key: string): RateConfig | undefined {
    const r = this.lookupKey(key);
    if (!r.found || "invalid" in r) return undefined;
    const rate = r.metrics.find((m) => m.type === "requestRate");
    return rate?.type === "requestRate"
      ? { windowMs: rate.windowMs, granularityMs: rate.granularityMs }
      : undefined;
  }
}

/**
 * The rate window of a route key ("namespace/name"): a valid InterceptorRoute's
 * requestRate wins over an HTTPScaledObject of the same key; otherwise the
 * HTTPScaledObject's (or the default window).
 */
export function rateConfigOf(
  key: string,
  routes: InterceptorRouteIndex,
  httpsos: HTTPScaledObjectIndex,
): RateConfig {
  return routes.requestRateOf(key) ?? httpsos.rateConfigOf(key);
}
