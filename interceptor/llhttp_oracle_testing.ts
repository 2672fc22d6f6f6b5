/**
 * The llhttp oracle from Deno: one Node process (interceptor/testing/
 * llhttp_oracle.mjs) that answers batches of cases as Node's HTTP parser sees
 * them. Requests are binary strings (one char per byte), like the parser's
 * own input.
 */

export interface LlhttpCase {
  kind: "request" | "response";
  /** Binary string. */
  bytes: string;
  /** For responses: the request's method (HEAD responses have no body). */
  method?: string;
  /** The peer closes the connection after the bytes (ends close-delimited bodies). */
  eof?: boolean;
}

export interface LlhttpAnswer {
  /** incomplete: llhttp needs more bytes to finish the first message. */
  outcome: "accept" | "error" | "incomplete";
  error?: { code: string; reason: string; bytesParsed: number };
  method: string | null;
  url: string | null;
  major: number | null;
  minor: number | null;
  status: number | null;
  statusMessage: string | null;
  /** Names as received; values with surrounding whitespace trimmed (binary strings). */
  headers: Array<[string, string]>;
  trailers: Array<[string, string]>;
  /** The decoded body (binary string). */
  body: string;
  /** Offset just past the first message; -1 unless accepted. */
  consumed: number;
  upgrade: boolean;
  keepAlive: boolean;
  headersComplete: boolean;
}

const SCRIPT = new URL("./testing/llhttp_oracle.mjs", import.meta.url).pathname;

export class LlhttpOracle {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #enc = new TextEncoder();
  readonly #dec = new TextDecoder();
  #buffered = "";
  #busy = false;

  private constructor() {
    this.#child = new Deno.Command("node", {
      args: ["--no-deprecation", SCRIPT],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#reader = this.#child.stdout.getReader();
  }

  static start(): LlhttpOracle {
    return new LlhttpOracle();
  }

  /** Answers for the cases, in order. */
  async run(cases: LlhttpCase[]): Promise<LlhttpAnswer[]> {
    if (this.#busy) throw new Error("LlhttpOracle.run is not reentrant");
    this.#busy = true;
    try {
      // Read while writing: Node writes to a pipe synchronously, and would block on a full one.
      const answers = this.#readLines(cases.length);
      // A failed write must not leave this rejection unhandled.
      answers.catch(() => {});
      const CHUNK = 512;
      for (let i = 0; i < cases.length; i += CHUNK) {
        let text = "";
        for (const c of cases.slice(i, i + CHUNK)) {
          text += JSON.stringify({ ...c, bytes: btoa(c.bytes) }) + "\n";
        }
        await this.#writer.write(this.#enc.encode(text));
      }
      const lines = await answers;
      return lines.map((line) => {
        const a = JSON.parse(line) as Omit<LlhttpAnswer, "outcome"> & {
          outcome: string;
          message?: string;
        };
        if (a.outcome === "oracle-failure") throw new Error(`llhttp oracle failed: ${a.message}`);
        a.body = atob(a.body);
        return a as LlhttpAnswer;
      });
    } finally {
      this.#busy = false;
    }
  }

  async #readLines(n: number): Promise<string[]> {
    const out: string[] = [];
    while (out.length < n) {
      const nl = this.#buffered.indexOf("\n");
      if (nl >= 0) {
        out.push(this.#buffered.slice(0, nl));
        this.#buffered = this.#buffered.slice(nl + 1);
        continue;
      }
      const r = await this.#reader.read();
      if (r.done) {
        const st = await this.#child.status;
        throw new Error(`the llhttp oracle (node) exited: code ${st.code}, signal ${st.signal}`);
      }
      this.#buffered += this.#dec.decode(r.value, { stream: true });
    }
    return out;
  }

  async close(): Promise<void> {
    await this.#writer.close().catch(() => {});
    // Drain stdout so the process can end and its pipe is released.
    while (!(await this.#reader.read()).done) { /* discard */ }
    await this.#child.status;
  }
}
