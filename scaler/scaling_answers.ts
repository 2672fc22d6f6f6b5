/**
 * The answers KEDA gets, independent of gRPC: which route (or the
 * interceptor itself) a ScaledObjectRef means, its metric spec, its value and
 * whether it is active. Bad references become ScalerError with a gRPC-style
 * code and a message that says what to fix.
 *
 * Conventions (shared/spec/compat.md):
 *  - scalerMetadata.httpScaledObject = HTTPScaledObject name in the ref's
 *    namespace; metric `http-<namespace>/<name>` escaped; value = concurrency,
 *    or ceil(request rate) for requestRate; both int and float fields carry
 *    the same number so every KEDA version reads the same thing;
 *  - scalerMetadata.interceptorTargetPendingRequests = the interceptor's own
 *    ScaledObject: value = concurrency summed over every route, target = the
 *    metadata value; always active (like the Go add-on), because an
 *    interceptor scaled to zero could not hold the request that would wake it.
 *  - A requestRate route is active while its rate or its concurrency is > 0:
 *    a held request wakes it before any rate can be measured.
 */
import type { ScalingMetric } from "../shared/httpso.ts";
import type { HTTPScaledObjectLookup } from "./httpso_index.ts";
import { metricNameFor } from "./metric_name.ts";
import type { QueueAggregator } from "./queue_aggregator.ts";

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

export type Target =
  | { kind: "route"; key: string; metricName: string; metric: ScalingMetric }
  | { kind: "interceptor"; metricName: string; targetValue: number };

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
  aggregator: QueueAggregator;
  /** KEDA_HTTP_WATCH_NAMESPACE, named in "not found" messages when set. */
  watchNamespace?: string;
}

export class ScalingAnswers {
  readonly #lookup: ScalingAnswersOptions["lookup"];
  readonly #aggregator: QueueAggregator;
  readonly #watchNamespace: string;

  constructor(options: ScalingAnswersOptions) {
    this.#lookup = options.lookup;
    this.#aggregator = options.aggregator;
    this.#watchNamespace = options.watchNamespace ?? "";
  }

  get aggregator(): QueueAggregator {
    return this.#aggregator;
  }

  /** Resolves a ref; throws ScalerError saying which field is wrong and why. */
  resolve(ref: ScaledObjectRef | null | undefined): Target {
    if (!ref) {
      throw new ScalerError("INVALID_ARGUMENT", "the request has no scaledObjectRef");
    }
    const metadata = ref.scalerMetadata ?? {};
    const namespace = ref.namespace ?? "";
    const httpso = metadata[METADATA_HTTPSO];
    if (httpso !== undefined) {
      const name = httpso.trim();
      if (name === "") {
        throw new ScalerError(
          "INVALID_ARGUMENT",
          `scalerMetadata.${METADATA_HTTPSO} of ScaledObject ${namespace}/${ref.name} is empty: set it to the name of the HTTPScaledObject to scale on`,
        );
      }
      if (namespace === "") {
        throw new ScalerError(
          "INVALID_ARGUMENT",
          `ScaledObjectRef for ${METADATA_HTTPSO}=${name} has no namespace; KEDA always sends one, so check the client`,
        );
      }
      const key = `${namespace}/${name}`;
      const found = this.#lookup(namespace, name);
      if (!found.found) {
        const scope = this.#watchNamespace !== "" && this.#watchNamespace !== namespace
          ? `; note this scaler only reads namespace "${this.#watchNamespace}" (KEDA_HTTP_WATCH_NAMESPACE)`
          : "";
        throw new ScalerError(
          "NOT_FOUND",
          `HTTPScaledObject ${key} not found: check that it exists in namespace "${namespace}" and that scalerMetadata.${METADATA_HTTPSO} of ScaledObject ${namespace}/${ref.name} names it${scope}`,
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
      `scalerMetadata of ScaledObject ${namespace}/${ref.name} has neither ${METADATA_HTTPSO} (the name of an HTTPScaledObject) nor ${METADATA_INTERCEPTOR_TARGET}: add ${METADATA_HTTPSO}: <name> to the trigger's metadata`,
    );
  }

  metricSpec(target: Target): MetricSpecAnswer {
    const size = target.kind === "route" ? target.metric.targetValue : target.targetValue;
    return { metricName: target.metricName, targetSize: size, targetSizeFloat: size };
  }

  /** The metric value: an integer (concurrency or ceil of the rate). */
  value(target: Target): number {
    if (target.kind === "interceptor") return this.#aggregator.totalConcurrency();
    if (target.metric.type === "requestRate") return Math.ceil(this.#aggregator.rate(target.key));
    return this.#aggregator.concurrency(target.key);
  }

  metricValue(target: Target): MetricValueAnswer {
    const v = this.value(target);
    return { metricName: target.metricName, metricValue: v, metricValueFloat: v };
  }

  isActive(target: Target): boolean {
    if (target.kind === "interceptor") return true;
    if (this.#aggregator.concurrency(target.key) > 0) return true;
    return target.metric.type === "requestRate" && this.value(target) > 0;
  }
}
