/**
 * What the scaler needs from each HTTPScaledObject: its scaling metric
 * (concurrency or requestRate with window and granularity, and the target
 * value). Reads the informer's store; each object is parsed once (cached by
 * object identity, and the informer replaces objects on every change).
 */
import { parseHTTPScaledObject, type ScalingMetric, scalingMetricOf } from "../shared/httpso.ts";
import { DEFAULT_RATE_CONFIG, type RateConfig } from "./queue_aggregator.ts";

/** An object of a store, parsed: not there, valid (with what the scaler needs), or invalid. */
export type Lookup<T> =
  | { found: false }
  | ({ found: true } & T)
  | { found: true; invalid: string };

export type HTTPScaledObjectLookup = Lookup<{ metric: ScalingMetric }>;

/**
 * A store of raw API objects ("namespace/name" → object, e.g. an Informer's
 * store) read through `parse`, which throws a message naming what is wrong.
 * Each object is parsed once, cached by identity.
 */
export class ParsedIndex<T extends object> {
  readonly #store: ReadonlyMap<string, unknown>;
  readonly #parse: (raw: unknown) => T;
  readonly #parsed = new WeakMap<object, T | { invalid: string }>();

  constructor(store: ReadonlyMap<string, unknown>, parse: (raw: unknown) => T) {
    this.#store = store;
    this.#parse = parse;
  }

  get size(): number {
    return this.#store.size;
  }

  lookup(namespace: string, name: string): Lookup<T> {
    return this.lookupKey(`${namespace}/${name}`);
  }

  lookupKey(key: string): Lookup<T> {
    const raw = this.#store.get(key);
    if (raw === undefined || raw === null || typeof raw !== "object") return { found: false };
    let parsed = this.#parsed.get(raw);
    if (!parsed) {
      try {
        parsed = this.#parse(raw);
      } catch (e) {
        parsed = { invalid: (e as Error).message };
      }
      this.#parsed.set(raw, parsed);
    }
    return { found: true, ...parsed } as Lookup<T>;
  }

  /** Number of objects that failed validation (for /metrics). */
  invalidCount(): number {
    let n = 0;
    for (const key of this.#store.keys()) {
      const r = this.lookupKey(key);
      if (r.found && "invalid" in r) n++;
    }
    return n;
  }
}

export class HTTPScaledObjectIndex extends ParsedIndex<{ metric: ScalingMetric }> {
  /** `store`: "namespace/name" → raw object, e.g. an Informer's store. */
  constructor(store: ReadonlyMap<string, unknown>) {
    super(store, (raw) => ({ metric: scalingMetricOf(parseHTTPScaledObject(raw).spec) }));
  }

  /** The rate window of a route ("namespace/name"); the default for non-rate routes. */
  rateConfigOf(key: string): RateConfig {
    const r = this.lookupKey(key);
    if (r.found && "metric" in r && r.metric.type === "requestRate") {
      return { windowMs: r.metric.windowMs, granularityMs: r.metric.granularityMs };
    }
    return DEFAULT_RATE_CONFIG;
  }
}
