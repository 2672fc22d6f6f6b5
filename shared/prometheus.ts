/**
 * The Prometheus text exposition format (version 0.0.4) for all three
 * programs: label escaping, the HELP/TYPE lines, sample and histogram lines,
 * and a small registry of counters, gauges, summaries and gauges computed at
 * scrape time. It imports nothing: the interceptor loads it into every
 * data-plane isolate (through interceptor/metrics.ts), so it must stay cheap.
 */

export type Labels = Record<string, string>;

export type MetricType = "counter" | "gauge" | "histogram" | "summary";

/** A label value with backslash, double quote and line feed escaped, as the format requires. */
export function escapeLabelValue(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/**
 * `name="value",...` in the labels' own order: the inside of a sample's
 * braces. Also a stable key for a label set.
 */
export function labelPairs(labels: Labels): string {
  return Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",");
}

/** A sample value; the format spells the infinities `+Inf` and `-Inf`. */
export function formatValue(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** The `# HELP` and `# TYPE` lines that open a metric family. */
export function familyHeader(name: string, help: string, type: MetricType): string[] {
  // The format's HELP escapes: a bare backslash is invalid, a line feed would end the line.
  const text = help.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
  return [`# HELP ${name} ${text}`, `# TYPE ${name} ${type}`];
}

/** One sample line; `pairs` is labelPairs' output, "" for none. */
export function sampleLine(name: string, pairs: string, value: number): string {
  return pairs ? `${name}{${pairs}} ${formatValue(value)}` : `${name} ${formatValue(value)}`;
}

/** A whole family: its header, then a line per `[labelPairs, value]` sample. */
export function familyLines(
  name: string,
  help: string,
  type: MetricType,
  samples: Array<[string, number]>,
): string[] {
  const lines = familyHeader(name, help, type);
  for (const [pairs, value] of samples) lines.push(sampleLine(name, pairs, value));
  return lines;
}

/**
 * The lines of one histogram series: a cumulative `_bucket` line per bound
 * and `+Inf`, then `_sum` and `_count`. `counts[i]` is the number of
 * observations in bucket i alone (not cumulative); `counts[bounds.length]`
 * those above the last bound.
 */
export function histogramLines(
  name: string,
  pairs: string,
  bounds: readonly number[],
  counts: ArrayLike<number>,
  sum: number,
  count: number,
): string[] {
  const lines: string[] = [];
  const prefix = pairs ? `${pairs},` : "";
  let cumulative = 0;
  for (let b = 0; b <= bounds.length; b++) {
    cumulative += counts[b] ?? 0;
    const le = formatValue(bounds[b] ?? Infinity);
    lines.push(sampleLine(`${name}_bucket`, `${prefix}le="${le}"`, cumulative));
  }
  lines.push(sampleLine(`${name}_sum`, pairs, sum), sampleLine(`${name}_count`, pairs, count));
  return lines;
}

/** Float sums pick up noise (0.1 + 0.2); twelve digits are plenty for seconds. */
export function roundSum(v: number): number {
  return Number.isInteger(v) ? v : +v.toPrecision(12);
}

/** Values by label set; what a counter and a gauge have in common. */
class LabelledValues {
  readonly #values = new Map<string, [Labels, number]>();

  protected add(labels: Labels, by: number): void {
    const key = labelPairs(labels);
    const entry = this.#values.get(key);
    if (entry) entry[1] += by;
    else this.#values.set(key, [labels, by]);
  }

  protected put(labels: Labels, value: number): void {
    this.#values.set(labelPairs(labels), [labels, value]);
  }

  get(labels: Labels = {}): number {
    return this.#values.get(labelPairs(labels))?.[1] ?? 0;
  }

  samples(): Array<[Labels, number]> {
    return [...this.#values.values()];
  }
}

export class Counter extends LabelledValues {
  inc(labels: Labels = {}, by = 1): void {
    this.add(labels, by);
  }

  /** Sum over every label set. */
  total(): number {
    let n = 0;
    for (const [, v] of this.samples()) n += v;
    return n;
  }
}

export class Gauge extends LabelledValues {
  set(value: number, labels: Labels = {}): void {
    this.put(labels, value);
  }

  inc(labels: Labels = {}, by = 1): void {
    this.add(labels, by);
  }

  dec(labels: Labels = {}, by = 1): void {
    this.add(labels, -by);
  }
}

/** A summary without quantiles: only `_sum` and `_count`. */
export class Summary {
  #sum = 0;
  #count = 0;

  observe(value: number): void {
    this.#sum += value;
    this.#count++;
  }

  get sum(): number {
    return this.#sum;
  }

  get count(): number {
    return this.#count;
  }
}

/** A histogram without labels; `bounds` are the bucket upper bounds, ascending. */
export class Histogram extends Summary {
  readonly bounds: readonly number[];
  /** Per bucket (not cumulative), then above the last bound. */
  readonly counts: number[];

  constructor(bounds: readonly number[]) {
    super();
    this.bounds = bounds;
    this.counts = new Array(bounds.length + 1).fill(0);
  }

  override observe(value: number): void {
    let b = 0;
    while (b < this.bounds.length && value > this.bounds[b]!) b++;
    this.counts[b]!++;
    super.observe(value);
  }
}

/**
 * Go's default service.version (pkg/build/version.go, unless its build sets
 * one); this project has no release versioning of its own.
 */
export const SERVICE_VERSION = "HEAD";

/**
 * `target_info`, the gauge Go's OpenTelemetry Prometheus exporter writes
 * from the resource (service.name, service.version) so dashboards can join
 * on it; its value is always 1.
 */
export function targetInfoLines(serviceName: string): string[] {
  return familyLines("target_info", "Target metadata", "gauge", [[
    labelPairs({ service_name: serviceName, service_version: SERVICE_VERSION }),
    1,
  ]]);
}

interface Family {
  name: string;
  help: string;
  type: MetricType;
  /** The sample lines, computed at each scrape. */
  lines(): string[];
}

function labelledLines(name: string, samples: Array<[Labels, number]>): string[] {
  return samples.map(([labels, value]) => sampleLine(name, labelPairs(labels), value));
}

/** Metric families, rendered in the order they were registered. */
export class Registry {
  readonly #families: Family[] = [];
  /** Indexes of families registered with lines(): rendered without a header. */
  readonly #raw: number[] = [];

  counter(name: string, help: string): Counter {
    const c = new Counter();
    this.#add(name, help, "counter", () => labelledLines(name, c.samples()));
    return c;
  }

  gauge(name: string, help: string): Gauge {
    const g = new Gauge();
    this.#add(name, help, "gauge", () => labelledLines(name, g.samples()));
    return g;
  }

  /** Rendered as `<name>_sum` and `<name>_count`. */
  summary(name: string, help: string): Summary {
    const s = new Summary();
    this.#add(name, help, "summary", () => [
      sampleLine(`${name}_sum`, "", s.sum),
      sampleLine(`${name}_count`, "", s.count),
    ]);
    return s;
  }

  histogram(name: string, help: string, bounds: readonly number[]): Histogram {
    const h = new Histogram(bounds);
    this.#add(
      name,
      help,
      "histogram",
      () => histogramLines(name, "", h.bounds, h.counts, roundSum(h.sum), h.count),
    );
    return h;
  }

  /** Raw lines (no header) rendered at each scrape, e.g. targetInfoLines(). */
  lines(lines: () => string[]): void {
    this.#raw.push(this.#families.length);
    this.#families.push({ name: "", help: "", type: "gauge", lines });
  }

  /** A gauge whose samples are computed at each scrape. */
  collect(name: string, help: string, samples: () => Array<[Labels, number]>): void {
    this.#add(name, help, "gauge", () => labelledLines(name, samples()));
  }

  /** The text exposition of every family. */
  render(): string {
    const out: string[] = [];
    for (const [i, f] of this.#families.entries()) {
      let lines: string[];
      try {
        lines = f.lines();
      } catch {
        continue; // a broken collector must not break the whole scrape
      }
      if (!this.#raw.includes(i)) out.push(...familyHeader(f.name, f.help, f.type));
      for (const line of lines) out.push(line);
    }
    return out.join("\n") + "\n";
  }

  #add(name: string, help: string, type: MetricType, lines: () => string[]): void {
    this.#families.push({ name, help, type, lines });
  }
}
