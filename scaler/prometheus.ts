/**
 * A small Prometheus registry (text exposition format 0.0.4): counters and
 * gauges with labels, plus gauges computed at scrape time from live state.
 * Enough for /metrics without a dependency.
 */

export type Labels = Record<string, string>;

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll("\n", "\\n").replaceAll('"', '\\"');
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge";
  samples(): Array<[Labels, number]>;
}

export class Counter {
  readonly #values = new Map<string, [Labels, number]>();

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const entry = this.#values.get(key);
    if (entry) entry[1] += by;
    else this.#values.set(key, [labels, by]);
  }

  get(labels: Labels = {}): number {
    return this.#values.get(labelText(labels))?.[1] ?? 0;
  }

  samples(): Array<[Labels, number]> {
    return [...this.#values.values()];
  }
}

export class Gauge {
  readonly #values = new Map<string, [Labels, number]>();

  set(value: number, labels: Labels = {}): void {
    this.#values.set(labelText(labels), [labels, value]);
  }

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const entry = this.#values.get(key);
    if (entry) entry[1] += by;
    else this.#values.set(key, [labels, by]);
  }

  dec(labels: Labels = {}, by = 1): void {
    this.inc(labels, -by);
  }

  get(labels: Labels = {}): number {
    return this.#values.get(labelText(labels))?.[1] ?? 0;
  }

  samples(): Array<[Labels, number]> {
    return [...this.#values.values()];
  }
}

export class Registry {
  readonly #families: Family[] = [];

  counter(name: string, help: string): Counter {
    const c = new Counter();
    this.#families.push({ name, help, type: "counter", samples: () => c.samples() });
    return c;
  }

  gauge(name: string, help: string): Gauge {
    const g = new Gauge();
    this.#families.push({ name, help, type: "gauge", samples: () => g.samples() });
    return g;
  }

  /** A gauge whose samples are computed at each scrape. */
  collect(name: string, help: string, samples: () => Array<[Labels, number]>): void {
    this.#families.push({ name, help, type: "gauge", samples });
  }

  /** The text exposition of every family. */
  render(): string {
    const lines: string[] = [];
    for (const f of this.#families) {
      let samples: Array<[Labels, number]>;
      try {
        samples = f.samples();
      } catch {
        continue; // a broken collector must not break the whole scrape
      }
      lines.push(`# HELP ${f.name} ${f.help.replaceAll("\n", " ")}`);
      lines.push(`# TYPE ${f.name} ${f.type}`);
      for (const [labels, value] of samples) {
        lines.push(`${f.name}${labelText(labels)} ${formatValue(value)}`);
      }
    }
    return lines.join("\n") + "\n";
  }
}
