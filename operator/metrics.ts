/**
 * The operator's Prometheus metrics, rendered in the text exposition format
 * (version 0.0.4) on /metrics. A handful of fixed series, so no registry.
 */

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")}"`
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

class LabelledCounter {
  readonly #values = new Map<string, [Labels, number]>();
  constructor(readonly name: string, readonly help: string) {}

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const cur = this.#values.get(key);
    this.#values.set(key, [labels, (cur?.[1] ?? 0) + by]);
  }

  get(labels: Labels = {}): number {
    return this.#values.get(labelText(labels))?.[1] ?? 0;
  }

  /** Sum over every label set. */
  total(): number {
    let n = 0;
    for (const [, v] of this.#values.values()) n += v;
    return n;
  }

  render(out: string[]) {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`);
    for (const [labels, v] of this.#values.values()) {
      out.push(`${this.name}${labelText(labels)} ${v}`);
    }
  }
}

export interface GaugeSources {
  queueDepth: () => number;
  leader: () => boolean;
  httpScaledObjects: () => number;
  informersSynced: () => boolean;
}

export class OperatorMetrics {
  readonly reconciles = new LabelledCounter(
    "keda_http_operator_reconcile_total",
    "Reconciles of HTTPScaledObjects, by result (success, error).",
  );
  readonly errors = new LabelledCounter(
    "keda_http_operator_reconcile_errors_total",
    "Reconciles that failed and were retried with backoff.",
  );
  /** API writes by resource and verb; a restart that finds everything right adds none. */
  readonly writes = new LabelledCounter(
    "keda_http_operator_api_writes_total",
    "Write requests the operator sent to the API server, by resource and verb.",
  );
  readonly leaderTransitions = new LabelledCounter(
    "keda_http_operator_leader_transitions_total",
    "Times this process became or stopped being the leader.",
  );
  #durationSum = 0;
  #durationCount = 0;
  #sources?: GaugeSources;

  setSources(sources: GaugeSources): void {
    this.#sources = sources;
  }

  observeReconcile(seconds: number): void {
    this.#durationSum += seconds;
    this.#durationCount++;
  }

  render(): string {
    const out: string[] = [];
    this.reconciles.render(out);
    this.errors.render(out);
    this.writes.render(out);
    this.leaderTransitions.render(out);
    out.push(
      "# HELP keda_http_operator_reconcile_duration_seconds Time spent per reconcile.",
      "# TYPE keda_http_operator_reconcile_duration_seconds summary",
      `keda_http_operator_reconcile_duration_seconds_sum ${this.#durationSum}`,
      `keda_http_operator_reconcile_duration_seconds_count ${this.#durationCount}`,
    );
    const s = this.#sources;
    if (s) {
      const gauge = (name: string, help: string, value: number) =>
        out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`);
      gauge(
        "keda_http_operator_workqueue_depth",
        "Keys waiting in the work queue.",
        s.queueDepth(),
      );
      gauge(
        "keda_http_operator_is_leader",
        "1 when this process holds the leader lease.",
        s.leader() ? 1 : 0,
      );
      gauge(
        "keda_http_operator_httpscaledobjects",
        "HTTPScaledObjects in the cache.",
        s.httpScaledObjects(),
      );
      gauge(
        "keda_http_operator_informers_synced",
        "1 once every watch cache has listed.",
        s.informersSynced() ? 1 : 0,
      );
    }
    return out.join("\n") + "\n";
  }
}
