/**
 * What the scaler needs from each HTTPScaledObject: its scaling metric
 * (concurrency or requestRate with window and granularity, and the target
 * value). Reads the informer's store; each object is parsed once (cached by
 * object identity, and the informer replaces objects on every change).
 */
import { parseHTTPScaledObject, type ScalingMetric, scalingMetricOf } from "../shared/httpso.ts";
import { DEFAULT_RATE_CONFIG, type RateConfig } from "./queue_aggregator.ts";

export type HTTPScaledObjectLookup =
  | { found: false }
  | { found: true; metric: ScalingMetric }
  | { found: true; invalid: string };

export class HTTPScaledObjectIndex {
  readonly #store: ReadonlyMap<string, unknown>;
  readonly #parsed = new WeakMap<object, { metric: ScalingMetric } | { invalid: string }>();

  /** `store`: "namespace/name" → raw object, e.g. an Informer's store. */
  constructor(store: ReadonlyMap<string, unknown>) {
    this.#store = store;
  }

  get size(): number {
    return this.#store.size;
  }

  lookup(namespace: string, name: string): HTTPScaledObjectLookup {
    const raw = this.#store.get(`${namespace}/${name}`);
    if (raw === undefined || raw === null || typeof raw !== "object") return { found: false };
    let parsed = this.#parsed.get(raw);
    if (!parsed) {
      try {
        parsed = { metric: scalingMetricOf(parseHTTPScaledObject(raw).spec) };
      } catch (e) {
        parsed = { invalid: (e as Error).message };
      }
      this.#parsed.set(raw, parsed);
    }
    return { found: true, ...parsed };
  }

  /** The rate window of a route ("namespace/name"); the default for non-rate routes. */
  rateConfigOf(key: string): RateConfig {
    const slash = key.indexOf("/");
    const r = this.lookup(key.slice(0, slash), key.slice(slash + 1));
    if (r.found && "metric" in r && r.metric.type === "requestRate") {
      return { windowMs: r.metric.windowMs, granularityMs: r.metric.granularityMs };
    }
    return DEFAULT_RATE_CONFIG;
  }

  /** Number of objects that failed validation (for /metrics). */
  invalidCount(): number {
    let n = 0;
    for (const key of this.#store.keys()) {
      const slash = key.indexOf("/");
      const r = this.lookup(key.slice(0, slash), key.slice(slash + 1));
      if (r.found && "invalid" in r) n++;
    }
    return n;
  }
}
