/**
 * The decomposition of a cold start: the times at which each step was seen,
 * the stage durations between them, and their percentiles over trials. Pure;
 * the suite and `deno task bench:coldstart` fill in the marks.
 */
import { percentile } from "./load.ts";

/** The steps of a cold start. Not one chain: with probe-driven forwarding the response comes before the kubelet's Ready. */
export const MARKS = [
  "sent",
  "held",
  "active",
  "scaled",
  "podStarted",
  "listening",
  "response",
  "podReady",
  "endpointReady",
] as const;
export type Mark = typeof MARKS[number];

/** What each mark is and who sees it (for reports and the README). */
export const MARK_MEANING: Record<Mark, string> = {
  sent: "client wrote the request",
  held: "interceptor holds it (its /queue/watch shows the route in flight)",
  active: "scaler pushed true on StreamIsActive (seen on a second stream of our own)",
  scaled: "Deployment spec.replicas >= 1 (watch)",
  podStarted: "a pod of the app has a running container (watch)",
  listening: "the app listens (the demo app's own clock, in its answer)",
  response: "client read the response head",
  podReady: "a pod of the app is Ready: the kubelet's probe passed (watch)",
  endpointReady: "the app's EndpointSlice lists a ready endpoint (watch)",
};

/**
 * Stages, each between two marks where the first causes the second (so a
 * negative one is a lagging watch). The response stage runs from the app
 * listening: it is our probing and forwarding when we probe, and the wait
 * for the kubelet and the EndpointSlice when we do not.
 */
export const STAGES: Array<{ name: string; from: Mark; to: Mark }> = [
  { name: "request received", from: "sent", to: "held" },
  { name: "KEDA told", from: "held", to: "active" },
  { name: "Deployment scaled", from: "active", to: "scaled" },
  { name: "pod started", from: "scaled", to: "podStarted" },
  { name: "app start (pod started to listening)", from: "podStarted", to: "listening" },
  { name: "response (app listening to answered)", from: "listening", to: "response" },
  { name: "kubelet Ready (app listening to Ready)", from: "listening", to: "podReady" },
  { name: "EndpointSlice seen (Ready to listed)", from: "podReady", to: "endpointReady" },
];

export type Marks = Partial<Record<Mark, number>>;

export interface Decomposition {
  /** Stage → ms; undefined when either end was not seen. */
  stages: Record<string, number | undefined>;
  /** sent → response. */
  totalMs: number | undefined;
  /** sent → listening: the soonest any cold start could answer. */
  untilListeningMs: number | undefined;
  /** Stages that came out negative (watch delivery can lag a little), for the report. */
  outOfOrder: string[];
}

const span = (marks: Marks, from: Mark, to: Mark) => {
  const a = marks[from];
  const b = marks[to];
  return a === undefined || b === undefined ? undefined : b - a;
};

export function decompose(marks: Marks): Decomposition {
  const stages: Record<string, number | undefined> = {};
  const outOfOrder: string[] = [];
  for (const s of STAGES) {
    const v = stages[s.name] = span(marks, s.from, s.to);
    if (v !== undefined && v < 0) outOfOrder.push(`${s.to} before ${s.from}`);
  }
  return {
    stages,
    totalMs: span(marks, "sent", "response"),
    untilListeningMs: span(marks, "sent", "listening"),
    outOfOrder,
  };
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
  one(
    "until the app listens (sent to listening)",
    trials.map((t) => t.untilListeningMs).filter((v): v is number => v !== undefined),
  );
  one("total", trials.map((t) => t.totalMs).filter((v): v is number => v !== undefined));
  return rows;
}

/** The p50 of one figure over trials (NaN when no trial has it). */
export function p50Of(
  trials: Decomposition[],
  pick: (d: Decomposition) => number | undefined,
): number {
  return percentile(trials.map(pick).filter((v): v is number => v !== undefined), 50);
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
