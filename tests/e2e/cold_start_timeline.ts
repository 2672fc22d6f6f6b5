/**
 * The decomposition of a cold start: the times at which each step was seen,
 * the stage durations between them, and their percentiles over trials. Pure;
 * the suite and `deno task bench:coldstart` fill in the marks.
 */
import { percentile } from "./load.ts";

/** The steps of a cold start, in the order they happen. */
export const MARKS = [
  "sent",
  "held",
  "active",
  "scaled",
  "podStarted",
  "podReady",
  "endpointReady",
  "response",
] as const;
export type Mark = typeof MARKS[number];

/** What each mark is and who sees it (for reports and the README). */
export const MARK_MEANING: Record<Mark, string> = {
  sent: "client wrote the request",
  held: "interceptor holds it (its /queue/watch shows the route in flight)",
  active: "scaler pushed true on StreamIsActive (seen on a second stream of our own)",
  scaled: "Deployment spec.replicas >= 1 (watch)",
  podStarted: "a pod of the app has a running container (watch)",
  podReady: "a pod of the app is Ready (watch)",
  endpointReady: "the app's EndpointSlice lists a ready endpoint (watch)",
  response: "client read the response head",
};

/** Stage names: the step that ends it. */
export const STAGES: Array<{ name: string; from: Mark; to: Mark }> = [
  { name: "request received", from: "sent", to: "held" },
  { name: "KEDA told", from: "held", to: "active" },
  { name: "Deployment scaled", from: "active", to: "scaled" },
  { name: "pod started", from: "scaled", to: "podStarted" },
  { name: "pod ready", from: "podStarted", to: "podReady" },
  { name: "EndpointSlice seen", from: "podReady", to: "endpointReady" },
  { name: "response", from: "endpointReady", to: "response" },
];

export type Marks = Partial<Record<Mark, number>>;

export interface Decomposition {
  /** Stage → ms; undefined when either end was not seen. */
  stages: Record<string, number | undefined>;
  /** sent → response. */
  totalMs: number | undefined;
  /** Marks seen out of order (watch delivery can lag a little), for the report. */
  outOfOrder: string[];
}

export function decompose(marks: Marks): Decomposition {
  const stages: Record<string, number | undefined> = {};
  for (const s of STAGES) {
    const a = marks[s.from];
    const b = marks[s.to];
    stages[s.name] = a === undefined || b === undefined ? undefined : b - a;
  }
  const outOfOrder: string[] = [];
  let last: { mark: Mark; at: number } | undefined;
  for (const m of MARKS) {
    const at = marks[m];
    if (at === undefined) continue;
    if (last && at < last.at) outOfOrder.push(`${m} before ${last.mark}`);
    if (!last || at >= last.at) last = { mark: m, at };
  }
  const totalMs = marks.sent !== undefined && marks.response !== undefined
    ? marks.response - marks.sent
    : undefined;
  return { stages, totalMs, outOfOrder };
}

export interface StageSummary {
  name: string;
  n: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
}

/** Percentiles of every stage and of the total over trials (stages not seen are left out). */
export function summarize(trials: Decomposition[]): StageSummary[] {
  const rows: StageSummary[] = [];
  const one = (name: string, values: number[]) => {
    rows.push({
      name,
      n: values.length,
      p50: percentile(values, 50),
      p99: percentile(values, 99),
      min: values.length ? Math.min(...values) : NaN,
      max: values.length ? Math.max(...values) : NaN,
    });
  };
  for (const s of STAGES) {
    one(s.name, trials.map((t) => t.stages[s.name]).filter((v): v is number => v !== undefined));
  }
  one("total", trials.map((t) => t.totalMs).filter((v): v is number => v !== undefined));
  return rows;
}

const fmt = (v: number) => (Number.isNaN(v) ? "-" : String(Math.round(v)));

/** A fixed-width table; its last line is `cold start p50: <ms> ms, p99: <ms> ms`. */
export function formatReport(trials: Decomposition[]): string {
  const rows = summarize(trials);
  const width = Math.max(...rows.map((r) => r.name.length));
  const lines = [
    `${"stage".padEnd(width)}  ${"n".padStart(3)}  ${"p50 ms".padStart(7)}  ${
      "p99 ms".padStart(7)
    }  ${"min ms".padStart(7)}  ${"max ms".padStart(7)}`,
  ];
  for (const r of rows) {
    lines.push(
      `${r.name.padEnd(width)}  ${String(r.n).padStart(3)}  ${fmt(r.p50).padStart(7)}  ${
        fmt(r.p99).padStart(7)
      }  ${fmt(r.min).padStart(7)}  ${fmt(r.max).padStart(7)}`,
    );
  }
  const total = rows.at(-1)!;
  lines.push(`cold start p50: ${fmt(total.p50)} ms, p99: ${fmt(total.p99)} ms`);
  return lines.join("\n");
}
