// The llhttp oracle: reads newline-delimited JSON cases on stdin and answers
// each with one JSON line on stdout, as Node's own HTTP parser (llhttp, strict
// settings, no lenient flags) sees the bytes. Run with `node --no-deprecation`
// (process.binding is deprecated, and the warning would go to stderr).
//
// Case:   {"kind": "request"|"response", "bytes": <base64>, "method"?: <request
//          method, for responses>, "eof"?: <the peer closes after the bytes>}
// Answer: {"outcome": "accept"|"error"|"incomplete", "error"?: {code, reason,
//          bytesParsed}, "method", "url", "major", "minor", "status",
//          "statusMessage", "headers": [[name, value]...], "trailers": [...],
//          "body": <base64>, "consumed", "upgrade", "keepAlive"}
// Strings are binary (latin-1: one char per byte). Only the first message in
// the bytes is described; whatever follows it does not change the answer.
import process from "node:process";
import { Buffer } from "node:buffer";
import { createInterface } from "node:readline";

// allMethods is indexed by llhttp's method number, as Node's own parser callbacks use it.
const { HTTPParser, allMethods } = process.binding("http_parser");
const MAX_HEADER_SIZE = 1024 * 1024;

function parse(bytes, kind, reqMethod, eof, step) {
  const p = new HTTPParser();
  p.initialize(
    kind === "request" ? HTTPParser.REQUEST : HTTPParser.RESPONSE,
    {},
    MAX_HEADER_SIZE,
    HTTPParser.kLenientNone,
  );
  const st = {
    begins: 0,
    head: null,
    headers: [],
    url: "",
    trailers: [],
    body: [],
    complete: false,
  };
  p[HTTPParser.kOnMessageBegin] = () => {
    st.begins++;
  };
  p[HTTPParser.kOnHeaders] = (h, url) => {
    // Fields arrive here when there are many of them, and trailers always.
    if (st.head === null) {
      st.headers.push(...h);
      st.url += url;
    } else if (!st.complete) st.trailers.push(...h);
  };
  p[HTTPParser.kOnHeadersComplete] = (
    major,
    minor,
    headers,
    method,
    url,
    status,
    statusMessage,
    upgrade,
    keepAlive,
  ) => {
    if (st.begins > 1) return 0;
    if (headers) st.headers.push(...headers);
    st.url += url ?? "";
    st.head = {
      major,
      minor,
      method: typeof method === "number" ? allMethods[method] : null,
      status: status ?? null,
      statusMessage: statusMessage ?? null,
      upgrade,
      keepAlive,
    };
    // As Node's client does: no body in a response to HEAD, or in a 1xx but 101.
    if (kind !== "response") return 0;
    const informational = status >= 100 && status < 200 && status !== 101;
    return reqMethod === "HEAD" || informational ? 1 : 0;
  };
  p[HTTPParser.kOnBody] = (b) => {
    if (st.begins === 1 && !st.complete) st.body.push(Buffer.from(b));
  };
  p[HTTPParser.kOnMessageComplete] = () => {
    if (st.begins === 1) st.complete = true;
  };
  let r;
  let consumed = -1;
  if (step) {
    // One byte per call, to find where the first message ends.
    r = 0;
    for (let i = 0; i < bytes.length && !st.complete; i++) {
      r = p.execute(bytes.subarray(i, i + 1));
      if (r instanceof Error) break;
      if (st.complete) consumed = i + 1;
    }
  } else {
    r = p.execute(bytes);
  }
  if (!(r instanceof Error) && !st.complete && eof) r = p.finish();
  const out = { st, r, consumed };
  p.close();
  return out;
}

function oracle(c) {
  const bytes = Buffer.from(c.bytes, "base64");
  const eof = c.eof === true;
  let { st, r, consumed } = parse(bytes, c.kind, c.method, eof, false);
  const error = r instanceof Error;
  // llhttp stops at an upgrade (the rest is another protocol) and says how far it read.
  const upgraded = st.complete && !error && typeof r === "number" && r < bytes.length;
  if (upgraded) {
    consumed = r;
  } else if (st.complete && st.head) {
    const last = bytes[bytes.length - 1];
    if (error || st.begins > 1 || last === 10 || last === 13) {
      // Bytes after the first message: find exactly where it ended.
      ({ st, consumed } = parse(bytes, c.kind, c.method, eof, true));
      if (consumed < 0) consumed = bytes.length;
    } else consumed = bytes.length;
  }
  const h = st.head;
  const pairs = (flat) => {
    const out = [];
    for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
    return out;
  };
  const answer = {
    outcome: st.complete ? "accept" : error ? "error" : "incomplete",
    method: h?.method ?? null,
    url: h ? st.url : null,
    major: h?.major ?? null,
    minor: h?.minor ?? null,
    status: h?.status ?? null,
    statusMessage: h?.statusMessage ?? null,
    headers: pairs(st.headers),
    trailers: pairs(st.trailers),
    body: Buffer.concat(st.body).toString("base64"),
    consumed: st.complete ? consumed : -1,
    upgrade: (h?.upgrade ?? false) || upgraded,
    keepAlive: h?.keepAlive ?? false,
    headersComplete: h !== null,
  };
  if (!st.complete && error) {
    answer.error = { code: r.code, reason: r.reason, bytesParsed: r.bytesParsed };
  } else if (!st.complete && h?.upgrade && typeof r === "number" && r < bytes.length) {
    // Node reports no parse error once a request asks for an upgrade: it stops where the
    // error is and hands the rest over as the new protocol's bytes. Here that is a rejection.
    answer.outcome = "error";
    answer.error = { code: "HPE_UPGRADE_BODY", reason: "stopped in the body", bytesParsed: r };
  }
  return answer;
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
let out = [];
let scheduled = false;
rl.on("line", (line) => {
  if (line === "") return;
  let answer;
  try {
    answer = oracle(JSON.parse(line));
  } catch (e) {
    answer = { outcome: "oracle-failure", message: String(e?.stack ?? e) };
  }
  out.push(JSON.stringify(answer));
  // One write per batch of lines read together: a write per line costs more than the parse.
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
});
rl.on("close", flush);

function flush() {
  scheduled = false;
  if (out.length === 0) return;
  process.stdout.write(out.join("\n") + "\n");
  out = [];
}
