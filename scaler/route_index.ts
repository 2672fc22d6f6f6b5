/**
 * What the scaler needs from each InterceptorRoute (http.keda.sh/v1beta1):
 * its scaling metrics (concurrency, request rate, or both, with targets and
 * the rate window) and whether it has a cold-start placeholder. Reads the
 * informer's store; each object is parsed once.
 *
 * The interceptor counts an InterceptorRoute and an HTTPScaledObject of the
 * same namespace/name under one key; which of them sets the key's rate
 * window is shared/routing_table.ts servingOf's rule, as in the routing table.
 */
import type { ScalingMetric } from "../shared/httpso.ts";
import { parseInterceptorRoute, scalingMetricsOf } from "../shared/interceptor_route.ts";
import { type HTTPScaledObjectIndex, type Lookup, ParsedIndex } from "./httpso_index.ts";
import { type ParsedObject, servingOf } from "../shared/routing_table.ts";
import { DEFAULT_RATE_CONFIG, type RateConfig } from "./queue_aggregator.ts";

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
 * The rate window of a route key ("namespace/name"): of the object that
 * serves the key (servingOf: a valid InterceptorRoute, else the
 * HTTPScaledObject), its requestRate window, else the default.
 */
export function rateConfigOf(
  key: string,
  routes: InterceptorRouteIndex,
  httpsos: HTTPScaledObjectIndex,
): RateConfig {
  const r = routes.lookupKey(key);
  const route: ParsedObject<unknown> | undefined = !r.found
    ? undefined
    : "invalid" in r
    ? { error: r.invalid }
    : { entry: r };
  const { serving } = servingOf<ParsedObject<unknown>>(route, { entry: "httpso" });
  return serving === route
    ? routes.requestRateOf(key) ?? DEFAULT_RATE_CONFIG
    : httpsos.rateConfigOf(key);
}
