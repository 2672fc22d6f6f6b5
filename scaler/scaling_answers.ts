/**
 * The answers KEDA gets, independent of gRPC: which route (or the
 * interceptor itself) a ScaledObjectRef means, its metric specs, their values
 * and whether it is active. Bad references become ScalerError with a
 * gRPC-style code and a message that says what to fix.
 *
 * Conventions (shared/spec/compat.md):
 *  - scalerMetadata.interceptorRoute = InterceptorRoute name in the ref's
 *    namespace (the Go add-on's current API): one metric per configured
 *    scalingMetric, `http_<name>_concurrency` (value = concurrency) and
 *    `http_<name>_rate` (value = the request rate, unrounded in the float
 *    field, ceil in the int one); GetMetrics answers the metric it is asked
 *    for (all of them for an empty name);
 *  - scalerMetadata.httpScaledObject = HTTPScaledObject name in the ref's
 *    namespace; metric `http-<namespace>/<name>` escaped; value = concurrency,
 *    or ceil(request rate) for requestRate; both int and float fields carry
 *    the same number so every KEDA version reads the same thing;
 *  - scalerMetadata.interceptorTargetPendingRequests = the interceptor's own
 *    ScaledObject: value = concurrency summed over every route, target = the
 *    metadata value; always active (like the Go add-on), because an
 *    interceptor scaled to zero could not hold the request that would wake it.
 *  - A route is active while a request is in flight, whatever its metrics:
 *    a held request wakes it before any rate can be measured; a requestRate
 *    metric also makes it active while its rate is > 0. An InterceptorRoute
 *    with a cold-start placeholder is also active while it served requests
 *    within its rate window (rate > 0, or new requests seen on a watch line
 *    before a poll measured them): the placeholder answers at once, so
 *    Concurrency is back at 0 before KEDA asks, yet the request must wake
 *    the app.
 *  - A route woken through the scaler's POST /wake (scaler/wake.ts) is
 *    active until the wake ends, whatever its counts: a wake of kind
 *    InterceptorRoute for interceptorRoute refs, HTTPScaledObject for
 *    httpScaledObject refs. Metric values are unchanged (KEDA scales 0 → 1,
 *    or to minReplicaCount, and no further because of a wake).
 */
import type { ScalingMetric } from "../shared/httpso.ts";
import type { HTTPScaledObjectLookup } from "./httpso_index.ts";
import { concurrencyMetricName, metricNameFor, rateMetricName } from "./metric_name.ts";
import type { QueueAggregator } from "./queue_aggregator.ts";
import type { InterceptorRouteLookup } from "./route_index.ts";
import { WakeBook, type WakeKind } from "./wake.ts";

export const METADATA_INTERCEPTOR_ROUTE = "interceptorRoute";
export const METADATA_HTTPSO = "httpScaledObject";
export const METADATA_INTERCEPTOR_TARGET = "interceptorTargetPendingRequests";

export type ScalerErrorCode =
  | "NOT_FOUND"
  | "INVALID_ARGUMENT"
  | "FAILED_PRECONDITION"
  | "UNAVAILABLE";

export class ScalerError extends Error {
  constructor(readonly code: ScalerErrorCode, message: string) {
    super(message);
    this.name = "ScalerError";
  }
}

export interface ScaledObjectRef {
  name: string;
  namespace: string;
  scalerMetadata?: Record<string, string>;
}

/** One metric of an InterceptorRoute, with the name KEDA knows it by. */
export interface NamedMetric {
  metricName: string;
  metric: ScalingMetric;
}

export type Target =
  /** An HTTPScaledObject: one metric. */
  | { kind: "route"; key: string; metricName: string; metric: ScalingMetric }
  /** An InterceptorRoute: concurrency, request rate, or both. */
  | {
    kind: "interceptorRoute";
    key: string;
    name: string;
    metrics: NamedMetric[];
    placeholder: boolean;
  }
  | { kind: "interceptor"; metricName: string; targetValue: number };

/** The "namespace/name" whose queue counts a target reads; undefined for the interceptor. */
export function routeKeyOf(target: Target): string | undefined {
  return target.kind === "interceptor" ? undefined : target.key;
}

export interface MetricSpecAnswer {
  metricName: string;
  targetSize: number;
  targetSizeFloat: number;
}

export interface MetricValueAnswer {
  metricName: string;
  metricValue: number;
  metricValueFloat: number;
}

export interface ScalingAnswersOptions {
  lookup: (namespace: string, name: string) => HTTPScaledObjectLookup;
  /** InterceptorRoutes; without it every interceptorRoute ref is NOT_FOUND. */
  lookupRoute?: (namespace: string, name: string) => InterceptorRouteLookup;
  aggregator: QueueAggregator;
  /** KEDA_HTTP_WATCH_NAMESPACE, named in "not found" messages when set. */
  watchNamespace?: string;
  /** Wakes from POST /wake; a book of its own (system clock) when not given. */
  wakes?: WakeBook;
}

/** What the indexes know about the object a wake names. */
export type WakeTargetCheck =
  | { found: true; invalid?: string }
  | { found: false; message: string };

/** The kind of wake that activates a target; undefined for the interceptor. */
export function wakeKindOf(target: Target): WakeKind | undefined {
  return target.kind === "interceptorRoute"
    ? "InterceptorRoute"
    : target.kind === "route"
    ? "HTTPScaledObject"
    : undefined;
}

export class ScalingAnswers {
  readonly #lookup: ScalingAnswersOptions["lookup"];
  readonly #lookupRoute: NonNullable<ScalingAnswersOptions["lookupRoute"]>;
  readonly #aggregator: QueueAggregator;
  readonly #watchNamespace: string;
  readonly #wakes: WakeBook;

  constructor(options: ScalingAnswersOptions) {
    this.#lookup = options.lookup;
    this.#lookupRoute = options.lookupRoute ?? (() => ({ found: false }));
    this.#aggregator = options.aggregator;
    this.#watchNamespace = options.watchNamespace ?? "";
    this.#wakes = options.wakes ?? new WakeBook();
  }

  get aggregator(): QueueAggregator {
    return this.#aggregator;
  }

  /** The wake book isActive reads (POST /wake writes it). */
  get wakes(): WakeBook {
    return this.#wakes;
  }

  /**
   * Whether the object a wake names exists in the indexes; when it does not,
   * a message that says what to fix (the other kind exists, the namespace is
   * not read). Only meaningful once the objects are listed.
   */
  checkWakeTarget(kind: WakeKind, namespace: string, name: string): WakeTargetCheck {
    const key = `${namespace}/${name}`;
    const httpso = this.#lookup(namespace, name);
    const route = this.#lookupRoute(namespace, name);
    const [mine, other, otherKind] = kind === "InterceptorRoute"
      ? [route, httpso, "HTTPScaledObject"]
      : [httpso, route, "InterceptorRoute"];
    if (mine.found) {
      return "invalid" in mine
        ? {
          found: true,
          invalid:
            `${mine.invalid}; the wake is recorded, but KEDA's calls for it fail until its spec is fixed`,
        }
        : { found: true };
    }
    return {
      found: false,
      message: `${kind} ${key} not found: check the namespace and name${
        this.#watchNamespace !== "" && this.#watchNamespace !== namespace
          ? `; note this scaler only reads namespace "${this.#watchNamespace}" (KEDA_HTTP_WATCH_NAMESPACE)`
          : ""
      }${
        other.found
          ? `; an ${otherKind} ${key} exists: to wake the ScaledObject that names it, send kind=${otherKind}`
          : ""
      }`,
    };
  }

  /** Resolves a ref; throws ScalerError saying which field is wrong and why. */
  resolve(ref: ScaledObjectRef | null | undefined): Target {
    if (!ref) {
      throw new ScalerError("INVALID_ARGUMENT", "the request has no scaledObjectRef");
    }
    const metadata = ref.scalerMetadata ?? {};
    const namespace = ref.namespace ?? "";
    const so = `ScaledObject ${namespace}/${ref.name}`;
    const httpso = metadata[METADATA_HTTPSO];
    const route = metadata[METADATA_INTERCEPTOR_ROUTE];
    if (httpso !== undefined && route !== undefined) {
      throw new ScalerError(
        "INVALID_ARGUMENT",
        `scalerMetadata of ${so} has both ${METADATA_INTERCEPTOR_ROUTE} and ${METADATA_HTTPSO}: set only one (${METADATA_INTERCEPTOR_ROUTE} for an InterceptorRoute, ${METADATA_HTTPSO} for an HTTPScaledObject)`,
      );
    }
    if (route !== undefined) return this.#resolveRoute(ref, namespace, route.trim());
    if (httpso !== undefined) {
      const name = httpso.trim();
      if (name === "") {
        throw new ScalerError(
          "INVALID_ARGUMENT",
          `scalerMetadata.${METADATA_HTTPSO} of ${so} is empty: set it to the name of the HTTPScaledObject to scale on`,
        );
      }
      this.#requireNamespace(namespace, METADATA_HTTPSO, name);
      const key = `${namespace}/${name}`;
      const found = this.#lookup(namespace, name);
      if (!found.found) {
        const other = this.#lookupRoute(namespace, name).found
          ? `; an InterceptorRoute ${key} exists: to scale on it, set scalerMetadata.${METADATA_INTERCEPTOR_ROUTE} instead`
          : "";
        throw new ScalerError(
          "NOT_FOUND",
          `HTTPScaledObject ${key} not found: check that it exists in namespace "${namespace}" and that scalerMetadata.${METADATA_HTTPSO} of ${so} names it${
            this.#scope(namespace)
          }${other}`,
        );
      }
      if ("invalid" in found) {
        throw new ScalerError("FAILED_PRECONDITION", `${found.invalid}; fix its spec`);
      }
      return {
        kind: "route",
        key,
        metricName: metricNameFor(namespace, name),
        metric: found.metric,
      };
    }
    const rawTarget = metadata[METADATA_INTERCEPTOR_TARGET];
    if (rawTarget !== undefined) {
      const text = rawTarget.trim();
      const value = Number(text);
      if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1) {
        throw new ScalerError(
          "INVALID_ARGUMENT",
          `scalerMetadata.${METADATA_INTERCEPTOR_TARGET}="${rawTarget}" is not a whole number of 1 or more: set it to the pending requests each interceptor replica should handle, e.g. "200"`,
        );
      }
      return {
        kind: "interceptor",
        metricName: metricNameFor(namespace, ref.name ?? ""),
        targetValue: value,
      };
    }
    throw new ScalerError(
      "INVALID_ARGUMENT",
      `scalerMetadata of ${so} has no ${METADATA_INTERCEPTOR_ROUTE} (the name of an InterceptorRoute), ${METADATA_HTTPSO} (the name of an HTTPScaledObject) or ${METADATA_INTERCEPTOR_TARGET}: add ${METADATA_INTERCEPTOR_ROUTE}: <name> to the trigger's metadata`,
    );
  }

  #resolveRoute(ref: ScaledObjectRef, namespace: string, name: string): Target {
    const so = `ScaledObject ${namespace}/${ref.name}`;
    if (name === "") {
      throw new ScalerError(
        "INVALID_ARGUMENT",
        `scalerMetadata.${METADATA_INTERCEPTOR_ROUTE} of ${so} is empty: set it to the name of the InterceptorRoute to scale on`,
      );
    }
    this.#requireNamespace(namespace, METADATA_INTERCEPTOR_ROUTE, name);
    const key = `${namespace}/${name}`;
    const found = this.#lookupRoute(namespace, name);
    if (!found.found) {
      const other = this.#lookup(namespace, name).found
        ? `; an HTTPScaledObject ${key} exists: to scale on it, set scalerMetadata.${METADATA_HTTPSO} instead`
        : "";
      throw new ScalerError(
        "NOT_FOUND",
        `InterceptorRoute ${key} not found: check that it exists in namespace "${namespace}" and that scalerMetadata.${METADATA_INTERCEPTOR_ROUTE} of ${so} names it${
          this.#scope(namespace)
        }${other}`,
      );
    }
    if ("invalid" in found) {
      throw new ScalerError("FAILED_PRECONDITION", `${found.invalid}; fix its spec`);
    }
    return {
      kind: "interceptorRoute",
      key,
      name,
      metrics: found.metrics.map((metric) => ({
        metricName: metric.type === "concurrency"
          ? concurrencyMetricName(name)
          : rateMetricName(name),
        metric,
      })),
      placeholder: found.placeholder,
    };
  }

  #requireNamespace(namespace: string, metadataKey: string, name: string): void {
    if (namespace === "") {
      throw new ScalerError(
        "INVALID_ARGUMENT",
        `ScaledObjectRef for ${metadataKey}=${name} has no namespace; KEDA always sends one, so check the client`,
      );
    }
  }

  /** Why an object may be invisible: the scaler reads one namespace only. */
  #scope(namespace: string): string {
    return this.#watchNamespace !== "" && this.#watchNamespace !== namespace
      ? `; note this scaler only reads namespace "${this.#watchNamespace}" (KEDA_HTTP_WATCH_NAMESPACE)`
      : "";
  }

  /** One spec per metric: a single one, or for an InterceptorRoute one per scalingMetric. */
  metricSpecs(target: Target): MetricSpecAnswer[] {
    const spec = (metricName: string, size: number) => ({
      metricName,
      targetSize: size,
      targetSizeFloat: size,
    });
    switch (target.kind) {
      case "interceptor":
        return [spec(target.metricName, target.targetValue)];
      case "route":
        return [spec(target.metricName, target.metric.targetValue)];
      case "interceptorRoute":
        return target.metrics.map((m) => spec(m.metricName, m.metric.targetValue));
    }
  }

  /**
   * The values KEDA asks for. An InterceptorRoute answers the metric named
   * (every metric for ""), NOT_FOUND for a name it does not have; the other
   * targets have one metric and answer it whatever the name (as Go does).
   */
  metricValues(target: Target, metricName = ""): MetricValueAnswer[] {
    if (target.kind === "interceptor") {
      const v = this.#aggregator.totalConcurrency();
      return [{ metricName: target.metricName, metricValue: v, metricValueFloat: v }];
    }
    if (target.kind === "route") {
      const v = target.metric.type === "requestRate"
        ? Math.ceil(this.#aggregator.rate(target.key))
        : this.#aggregator.concurrency(target.key);
      return [{ metricName: target.metricName, metricValue: v, metricValueFloat: v }];
    }
    const asked = metricName === ""
      ? target.metrics
      : target.metrics.filter((m) => m.metricName === metricName);
    if (asked.length === 0) {
      throw new ScalerError(
        "NOT_FOUND",
        `InterceptorRoute ${target.key} has no metric "${metricName}"; its metrics are ${
          target.metrics.map((m) => m.metricName).join(", ")
        } (if its scalingMetric changed, KEDA asks for the old ones until the ScaledObject is reconciled: re-apply it)`,
      );
    }
    return asked.map(({ metricName, metric }) => {
      const v = metric.type === "requestRate"
        ? this.#aggregator.rate(target.key)
        : this.#aggregator.concurrency(target.key);
      return { metricName, metricValue: Math.ceil(v), metricValueFloat: v };
    });
  }

  isActive(target: Target): boolean {
    if (target.kind === "interceptor") return true;
    if (this.#wakes.isAwake(wakeKindOf(target)!, target.key)) return true;
    if (this.#aggregator.concurrency(target.key) > 0) return true;
    if (target.kind === "route") {
      return target.metric.type === "requestRate" &&
        Math.ceil(this.#aggregator.rate(target.key)) > 0;
    }
    if (target.placeholder && this.#aggregator.requestedRecently(target.key)) return true;
    return target.metrics.some((m) => m.metric.type === "requestRate") &&
      this.#aggregator.rate(target.key) > 0;
  }
}
