/**
 * Where our HTTP/1.1 parser deliberately disagrees with the oracles it is
 * tested against (llhttp as Node 20 runs it, strict settings; hyper behind
 * Deno.serve). The oracle tests and `deno task fuzz` accept a disagreement
 * only when an entry here explains it; each entry says what we do, what the
 * oracle does, and the RFC text that makes ours the safer reading. Entries
 * match on the parse results, not on error messages, so a message reworded
 * in the parser does not turn a known divergence into a failure (or hide a
 * new one).
 */

export type CaseKind = "request" | "response" | "chunked";
export type OracleName = "llhttp" | "hyper";

/** One parser's view of the first message in some bytes, for comparison. */
export interface Outcome {
  /** incomplete: more bytes are needed before the message can be judged. */
  verdict: "accept" | "reject" | "incomplete";
  /** Ours: the HttpError status (or 431 for a head too large); hyper: its answer's status. */
  status?: number;
  /** Ours: the HttpError message; llhttp: its error code and reason. */
  error?: string;
  /** Ours: the head was not complete (nothing was judged yet). */
  headIncomplete?: boolean;
  method?: string;
  /** The request target as received (hyper: path and query of the URL it built). */
  target?: string;
  /** "1.1", "1.0" (as the parser understood the version). */
  version?: string;
  /** Response status code. */
  code?: number;
  /** Field names lower-cased, values as the parser reports them. */
  headers?: Array<[string, string]>;
  /** Trailer fields of a chunked body (llhttp only). */
  trailers?: Array<[string, string]>;
  /** The message body, de-chunked (binary string). */
  body?: string;
  /** Offset just past the message. */
  consumed?: number;
  keepAlive?: boolean;
  upgrade?: boolean;
}

export type Field =
  | "verdict"
  | "method"
  | "target"
  | "version"
  | "code"
  | "headers"
  | "body"
  | "consumed"
  | "keepAlive"
  | "upgrade";

export interface Difference {
  field: Field;
  ours: unknown;
  theirs: unknown;
}

export interface DivergenceContext {
  kind: CaseKind;
  oracle: OracleName;
  /** The input (binary string); for `chunked`, the body alone. */
  bytes: string;
  /** For responses: the request's method. */
  method?: string;
  ours: Outcome;
  theirs: Outcome;
  diff: Difference;
}

export interface Divergence {
  id: string;
  oracles: OracleName[];
  kinds: CaseKind[];
  /** Which inputs, in words (the predicate below is the exact rule). */
  when: string;
  ours: string;
  theirs: string;
  rfc: string;
  why: string;
  matches(c: DivergenceContext): boolean;
}

/** The request or status line, without its line end. */
export function firstLine(bytes: string): string {
  const s = bytes.replace(/^[\r\n]+/, "");
  const nl = s.indexOf("\n");
  const line = nl < 0 ? s : s.slice(0, nl);
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

/** Fields of the head as a naive reader splits them (first colon), names lower-cased. */
export function naiveFields(bytes: string): Array<[string, string]> {
  const end = bytes.search(/\r?\n\r?\n/);
  const head = end < 0 ? bytes : bytes.slice(0, end);
  const out: Array<[string, string]> = [];
  for (const line of head.split(/\r?\n/).slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) out.push([line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()]);
  }
  return out;
}

function count(h: Array<[string, string]> | undefined, name: string): number {
  return (h ?? []).filter(([n]) => n === name).length;
}

function values(h: Array<[string, string]> | undefined, name: string): string[] {
  return (h ?? []).filter(([n]) => n === name).map(([, v]) => v);
}

const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::\d{0,5})?$/;

/** The methods llhttp knows (Node 20's `process.binding("http_parser").methods`). */
export const LLHTTP_METHODS: ReadonlySet<string> = new Set([
  "DELETE",
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "CONNECT",
  "OPTIONS",
  "TRACE",
  "COPY",
  "LOCK",
  "MKCOL",
  "MOVE",
  "PROPFIND",
  "PROPPATCH",
  "SEARCH",
  "UNLOCK",
  "BIND",
  "REBIND",
  "UNBIND",
  "ACL",
  "REPORT",
  "MKACTIVITY",
  "CHECKOUT",
  "MERGE",
  "M-SEARCH",
  "NOTIFY",
  "SUBSCRIBE",
  "UNSUBSCRIBE",
  "PATCH",
  "PURGE",
  "MKCALENDAR",
  "LINK",
  "UNLINK",
  "SOURCE",
  "QUERY",
]);

const FRAMING_OR_HOP = new Set([
  "content-length",
  "transfer-encoding",
  "host",
  "connection",
  "upgrade",
  "trailer",
  "keep-alive",
  "proxy-connection",
  "te",
  "proxy-authenticate",
  "proxy-authorization",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-keda-http-cold-start",
]);

/** We reject (with `status`) what the oracle accepts (or accepts so far, needing more bytes). */
function weReject(c: DivergenceContext, status: number): boolean {
  return c.diff.field === "verdict" && c.ours.verdict === "reject" && c.ours.status === status &&
    c.theirs.verdict !== "reject";
}

/** We accept (or accept so far) what the oracle rejects. */
function weAccept(c: DivergenceContext): boolean {
  return c.diff.field === "verdict" && c.ours.verdict !== "reject" && c.theirs.verdict === "reject";
}

/** The head of a message: up to the first blank line (LF or CRLF), as findHeadEnd finds it. */
export function headOf(bytes: string): string {
  const m = /\r?\n\r?\n/.exec(bytes.replace(/^[\r\n]+/, ""));
  const lead = bytes.length - bytes.replace(/^[\r\n]+/, "").length;
  return m ? bytes.slice(0, lead + m.index + m[0].length) : bytes;
}

/** The chunked body of a case: the bytes after the head, or the case itself. */
function chunkedBody(c: DivergenceContext): string {
  return c.kind === "chunked" ? c.bytes : c.bytes.slice(headOf(c.bytes).length);
}

/** A chunk-size line: whitespace before the size, the size, what follows it. */
export interface ChunkLine {
  lead: string;
  size: string;
  ext: string;
}

/** The chunk-size lines of a body, walking it leniently (line, data, CRLF) as far as it goes. */
export function chunkLines(body: string): ChunkLine[] {
  return walkChunks(body).lines;
}

/** The chunk-size lines, and the trailer section when the walk reaches the last chunk. */
function walkChunks(body: string): { lines: ChunkLine[]; trailers: string | null } {
  const lines: ChunkLine[] = [];
  let pos = 0;
  while (pos < body.length) {
    const m = /^([ \t]*)([0-9A-Fa-f]+)([^\r\n]*)\r\n/.exec(body.slice(pos, pos + 4200));
    if (!m) break;
    lines.push({ lead: m[1]!, size: m[2]!, ext: m[3]! });
    const size = parseInt(m[2]!, 16);
    if (size === 0) return { lines, trailers: body.slice(pos + m[0].length) };
    if (!Number.isSafeInteger(size)) break;
    pos += m[0].length + size + 2;
  }
  return { lines, trailers: null };
}

/** What follows the size on each chunk-size line. */
export function chunkExtensions(body: string): string[] {
  return chunkLines(body).map((l) => l.ext);
}

const QUOTED =
  '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t\\x20-\\x7e\\x80-\\xff])*"';
const TOKEN_RE = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
/** chunk-ext with BWS (RFC 9112 7.1.1), as our scanner reads it. */
const EXT_BWS = new RegExp(
  `^(?:[ \\t]*;[ \\t]*${TOKEN_RE}(?:[ \\t]*=[ \\t]*(?:${TOKEN_RE}|${QUOTED}))?)*[ \\t]*$`,
);

function llhttpCode(c: DivergenceContext): string {
  return (c.theirs.error ?? "").split(" ")[0]!;
}

export const DIVERGENCES: readonly Divergence[] = [
  {
    id: "later-http-1x-minor",
    oracles: ["llhttp", "hyper"],
    kinds: ["request", "response"],
    when: "version HTTP/1.2 to HTTP/1.9 in a request or status line",
    ours: "accept, answered as HTTP/1.1",
    theirs: "llhttp: HPE_INVALID_VERSION; hyper: 400",
    rfc: "RFC 9110 2.5",
    why: "a recipient of a higher minor version of a major version it implements " +
      "treats the message as the highest minor version it supports",
    matches: (c) =>
      weAccept(c) &&
      /^HTTP\/1\.[2-9]$/.test(
        c.kind === "response"
          ? firstLine(c.bytes).split(" ")[0]!
          : firstLine(c.bytes).split(" ").at(-1)!,
      ) &&
      (c.oracle === "hyper" || llhttpCode(c) === "HPE_INVALID_VERSION"),
  },
  {
    id: "other-major-version",
    oracles: ["llhttp"],
    kinds: ["request"],
    when: "request line version HTTP/0.9 or HTTP/2.0 (the versions llhttp parses besides 1.x)",
    ours: "505",
    theirs: "accept",
    rfc: "RFC 9110 2.5, 15.6.6; RFC 9112 2.3",
    why: "only HTTP/1.x is forwarded; a head claiming another major version is not " +
      "an HTTP/1.1 message and is answered 505 rather than guessed at",
    matches: (c) => weReject(c, 505) && (c.theirs.version === "0.9" || c.theirs.version === "2.0"),
  },
  {
    id: "host-missing",
    oracles: ["llhttp", "hyper"],
    kinds: ["request"],
    when: "HTTP/1.1 request without a Host field",
    ours: "400",
    theirs: "accept",
    rfc: "RFC 9112 3.2",
    why: "a server MUST respond 400 to an HTTP/1.1 request that lacks Host; routing " +
      "needs it",
    matches: (c) =>
      weReject(c, 400) && count(c.theirs.headers, "host") === 0 &&
      /HTTP\/1\.1$/.test(firstLine(c.bytes)),
  },
  {
    id: "host-repeated",
    oracles: ["llhttp", "hyper"],
    kinds: ["request"],
    when: "more than one Host field",
    ours: "400",
    theirs: "accept",
    rfc: "RFC 9112 3.2",
    why: "a server MUST respond 400 to a request with more than one Host field line; " +
      "two hosts let a proxy and an app route differently",
    matches: (c) => weReject(c, 400) && count(c.theirs.headers, "host") > 1,
  },
  {
    id: "host-invalid",
    oracles: ["llhttp", "hyper"],
    kinds: ["request"],
    when: "one Host field whose value is not host[:port] (empty, spaces, '/', '@', ...)",
    ours: "400",
    theirs: "accept",
    rfc: "RFC 9112 3.2; RFC 9110 7.2",
    why: "a server MUST respond 400 to a Host field with an invalid value",
    matches: (c) =>
      weReject(c, 400) && count(c.theirs.headers, "host") === 1 &&
      !HOST_VALUE.test(values(c.theirs.headers, "host")[0]!),
  },
  {
    id: "asterisk-not-options",
    oracles: ["llhttp", "hyper"],
    kinds: ["request"],
    when: "target `*` with a method other than OPTIONS",
    ours: "400",
    theirs: "accept",
    rfc: "RFC 9112 3.2.4",
    why: "the asterisk-form is only used for a server-wide OPTIONS request",
    matches: (c) =>
      weReject(c, 400) && firstLine(c.bytes).split(" ")[1] === "*" &&
      firstLine(c.bytes).split(" ")[0] !== "OPTIONS",
  },
  {
    id: "connect",
    oracles: ["llhttp", "hyper"],
    kinds: ["request"],
    when: "method CONNECT",
    ours: "405 with Allow",
    theirs: "accept (as an upgrade)",
    rfc: "RFC 9110 9.3.6",
    why: "the interceptor is a reverse proxy, not a tunnel",
    matches: (c) => weReject(c, 405) && firstLine(c.bytes).startsWith("CONNECT "),
  },
  {
    id: "absolute-form-authority",
    oracles: ["llhttp", "hyper"],
    kinds: ["request"],
    when: "absolute-form target with user information, a scheme other than http(s), " +
      "an authority that is not host[:port], or without Host in HTTP/1.1",
    ours: "400",
    theirs: "accept",
    rfc: "RFC 9112 3.2.2, 3.2; RFC 9110 4.2.4",
    why: "we route by the target's authority, so it must be a plain host; userinfo in " +
      "an http(s) URI is deprecated and a phishing vector; Host stays mandatory",
    matches: (c) => {
      if (!weReject(c, 400)) return false;
      const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)/.exec(firstLine(c.bytes).split(" ")[1]!);
      if (!m) return false;
      const scheme = m[1]!.toLowerCase();
      return m[2]!.includes("@") || (scheme !== "http" && scheme !== "https") ||
        !HOST_VALUE.test(m[2]!) || count(c.theirs.headers, "host") !== 1;
    },
  },
  {
    id: "target-not-a-uri",
    oracles: ["llhttp", "hyper"],
    kinds: ["request"],
    when: "a target that is not origin-form, absolute-form or `*` (e.g. authority-form " +
      "with a method other than CONNECT)",
    ours: "400",
    theirs: "accept",
    rfc: "RFC 9112 3.2",
    why: "authority-form is only for CONNECT, which is refused; anything else cannot be " +
      "routed",
    matches: (c) => {
      if (!weReject(c, 400)) return false;
      const t = firstLine(c.bytes).split(" ")[1] ?? "";
      return t !== "*" && !t.startsWith("/") && !/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(t);
    },
  },
  {
    id: "transfer-coding-other-than-chunked",
    oracles: ["llhttp", "hyper"],
    kinds: ["request"],
    when:
      "Transfer-Encoding with more than one coding (`gzip, chunked`, `chunked, chunked`, two TE fields)",
    ours: "501 (400 when the coding is not a token)",
    theirs: "accept, chunked",
    rfc: "RFC 9112 6.1; RFC 9110 15.6.2",
    why: "a server that receives a transfer coding it does not understand SHOULD answer " +
      "501; passing the body on chunked would drop the coding the client applied",
    matches: (c) =>
      (weReject(c, 501) || weReject(c, 400)) &&
      values(c.theirs.headers, "transfer-encoding").join(",").split(",").length > 1,
  },
  {
    id: "transfer-encoding-http10",
    oracles: ["llhttp", "hyper"],
    kinds: ["request"],
    when: "HTTP/1.0 request with Transfer-Encoding",
    ours: "400",
    theirs: "accept, chunked",
    rfc: "RFC 9112 6.1",
    why: "a server that receives an HTTP/1.0 message with Transfer-Encoding MUST treat " +
      "its framing as faulty (1.0 intermediaries do not understand it)",
    matches: (c) =>
      weReject(c, 400) && c.theirs.version === "1.0" &&
      count(c.theirs.headers, "transfer-encoding") > 0,
  },
  {
    id: "extension-method",
    oracles: ["llhttp"],
    kinds: ["request"],
    when: "a method that is a token but not one llhttp knows (`BREW`, `get`)",
    ours: "accept",
    theirs: "HPE_INVALID_METHOD",
    rfc: "RFC 9110 9.1",
    why: "methods are extensible tokens and case-sensitive; the app decides what it serves",
    matches: (c) => {
      const m = firstLine(c.bytes).split(" ")[0]!;
      return weAccept(c) && llhttpCode(c) === "HPE_INVALID_METHOD" && !LLHTTP_METHODS.has(m);
    },
  },
  {
    id: "upgrade-http10",
    oracles: ["llhttp"],
    kinds: ["request"],
    when: "HTTP/1.0 request with Connection: upgrade and Upgrade",
    ours: "accept, no upgrade",
    theirs: "accept, upgrade",
    rfc: "RFC 9110 7.8",
    why: "a server MUST ignore an Upgrade header field received in an HTTP/1.0 request",
    matches: (c) =>
      c.diff.field === "upgrade" && c.ours.upgrade === false && c.theirs.upgrade === true &&
      c.ours.version === "1.0",
  },
  {
    id: "chunk-ext-whitespace",
    oracles: ["llhttp"],
    kinds: ["request", "response", "chunked"],
    when: "whitespace (BWS) around `;` or `=` in a chunk extension, or after the size",
    ours: "accept",
    theirs: "HPE_INVALID_CHUNK_SIZE / HPE_STRICT",
    rfc: "RFC 9112 7.1.1",
    why: 'chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ): ' +
      "the grammar allows it, and our scanner only passes well-formed lines on",
    matches: (c) =>
      weAccept(c) &&
      chunkExtensions(chunkedBody(c)).some((e) =>
        /[ \t]/.test(e.replace(/"[^"]*"/g, "")) && EXT_BWS.test(e)
      ),
  },
  {
    id: "chunk-ext-grammar",
    oracles: ["llhttp", "hyper"],
    kinds: ["request", "response", "chunked"],
    when: "a chunk-size line that is not 1*HEXDIG then `;name[=token|quoted-string]` " +
      "(empty name or value, a stray character, whitespace before the size)",
    ours: "400 (502 for an app's body)",
    theirs: "accept",
    rfc: "RFC 9112 7.1.1",
    why: "chunk-ext-name and a token value are 1*tchar; a proxy that passes malformed " +
      "extensions on lets the next parser read the line differently",
    matches: (c) =>
      weReject(c, c.kind === "response" ? 502 : 400) &&
      chunkLines(chunkedBody(c)).some((l) => l.lead !== "" || !EXT_BWS.test(l.ext)),
  },
  {
    id: "chunk-size-limit",
    oracles: ["llhttp"],
    kinds: ["request", "response", "chunked"],
    when: "a chunk size of 2^52 or more",
    ours: "400 (502 for an app's body)",
    theirs: "accept up to 2^64-1 (waits for the data)",
    rfc: "RFC 9112 7.1",
    why: "recipients MUST prevent overflow and precision loss; sizes are JS numbers, " +
      "exact below 2^53, and no real chunk is petabytes",
    matches: (c) =>
      weReject(c, c.kind === "response" ? 502 : 400) &&
      /(?:^|\n)0*[0-9A-Fa-f]{14,}/.test(chunkedBody(c)),
  },
  {
    id: "content-length-limit",
    oracles: ["llhttp", "hyper"],
    kinds: ["request"],
    when: "a Content-Length of more than 15 digits",
    ours: "400",
    theirs: "accept up to 2^64-1 (waits for the body)",
    rfc: "RFC 9110 8.6",
    why: "a recipient MUST anticipate large numerals and prevent overflow and precision " +
      "loss; lengths are JS numbers, exact below 2^53",
    matches: (c) =>
      weReject(c, 400) &&
      /(?:^|\n)content-length:[ \t]*\d{16,}[ \t]*\r?\n/i.test(headOf(c.bytes)),
  },
  {
    id: "request-line-spaces",
    oracles: ["llhttp"],
    kinds: ["request"],
    when: "more than one SP between the parts of the request line",
    ours: "400",
    theirs: "accept",
    rfc: "RFC 9112 3",
    why: "the elements are separated by a single SP; a recipient MAY split on whitespace, " +
      "but a target that may or may not end in a space is not one we route by",
    matches: (c) => weReject(c, 400) && / {2}/.test(firstLine(c.bytes)),
  },
  {
    id: "request-line-without-version",
    oracles: ["llhttp"],
    kinds: ["request"],
    when: "a request line without a version (llhttp reads an HTTP/0.9 request)",
    ours: "400",
    theirs: "accept as HTTP/0.9",
    rfc: "RFC 9112 3, 2.3",
    why: "HTTP/0.9 has no header section; the next lines would be read as fields by " +
      "one parser and as body by another",
    matches: (c) => weReject(c, 400) && c.theirs.version === "0.9",
  },
  {
    id: "transfer-encoding-empty-element",
    oracles: ["llhttp"],
    kinds: ["request"],
    when: "Transfer-Encoding with an empty list element (`,chunked`, `chunked,`)",
    ours: "400",
    theirs: "accept, chunked",
    rfc: "RFC 9110 5.6.1; RFC 9112 6.1",
    why: "we accept Transfer-Encoding only as exactly `chunked`: a list a front end and an " +
      "app could split differently is refused rather than normalised",
    matches: (c) =>
      weReject(c, 400) &&
      values(c.theirs.headers, "transfer-encoding").some((v) =>
        v.split(",").some((e) => e.trim() === "")
      ),
  },
  {
    id: "trailer-forbidden-field",
    oracles: ["llhttp", "hyper"],
    kinds: ["request", "response", "chunked"],
    when: "a trailer field that frames, routes or is hop-by-hop (Host, Connection, TE, ...)",
    ours: "400 (502 for an app's body)",
    theirs: "accept",
    rfc: "RFC 9110 6.5.1",
    why: "a sender MUST NOT generate trailer fields needed for framing, routing or " +
      "connection management; apps may merge trailers into the header section",
    matches: (c) => {
      if (!weReject(c, c.kind === "response" ? 502 : 400)) return false;
      const trailers = c.theirs.trailers ?? trailerNames(c);
      return trailers.some(([n]) => FRAMING_OR_HOP.has(n));
    },
  },
  {
    id: "htab-after-framing-value",
    oracles: ["llhttp"],
    kinds: ["request", "response"],
    when: "Content-Length, Transfer-Encoding or Connection whose value is followed by HTAB",
    ours: "HTAB is OWS: the value counts (e.g. `Content-Length: 5<HTAB>` is 5)",
    theirs: "requests: HPE_INVALID_CONTENT_LENGTH / HPE_INVALID_TRANSFER_ENCODING; " +
      "responses and Connection: the token is not recognised",
    rfc: "RFC 9110 5.5, 5.6.3",
    why: "OWS = *( SP / HTAB ) and is not part of the field value; llhttp only skips a " +
      "trailing SP. Both readings see the same framing or none, so nothing is smuggled",
    matches: (c) => {
      const htab = (name: string) =>
        new RegExp(`(?:^|\\n)${name}:[^\\r\\n]*\\t[ \\t]*\\r?\\n`, "i").test(headOf(c.bytes));
      switch (c.diff.field) {
        case "verdict":
          // A request llhttp refuses for its framing value; a response llhttp reads
          // without chunked framing (so it does not judge the chunks we reject or wait for).
          return (weAccept(c) && (htab("content-length") || htab("transfer-encoding")) &&
            /^HPE_INVALID_(CONTENT_LENGTH|TRANSFER_ENCODING)$/.test(llhttpCode(c))) ||
            (c.kind === "response" && htab("transfer-encoding") && c.theirs.verdict !== "reject");
        case "body":
        case "consumed":
          return c.kind === "response" && htab("transfer-encoding");
        case "keepAlive":
          return htab("connection") || (c.kind === "response" && htab("transfer-encoding"));
        case "upgrade":
          return htab("connection");
        default:
          return false;
      }
    },
  },
  {
    id: "proxy-connection",
    oracles: ["llhttp"],
    kinds: ["request"],
    when: "a request with Proxy-Connection: close",
    ours: "keep-alive as Connection says (Proxy-Connection is dropped)",
    theirs: "close",
    rfc: "RFC 9112 9.3, 9.6 (Proxy-Connection is not defined)",
    why: "only Connection governs persistence; Proxy-Connection is a legacy field we drop",
    matches: (c) =>
      c.diff.field === "keepAlive" && c.ours.keepAlive === true &&
      values(c.theirs.headers, "proxy-connection").some((v) => /close/i.test(v)),
  },
  {
    id: "request-bare-lf",
    oracles: ["hyper"],
    kinds: ["request"],
    when: "a request head with a line ending in a bare LF",
    ours: "400 (as llhttp)",
    theirs: "accept",
    rfc: "RFC 9112 2.2",
    why: "a recipient MAY accept a bare LF; a proxy that does, in front of an app that " +
      "does not, splits lines where the app does not",
    matches: (c) => weReject(c, 400) && /(^|[^\r])\n/.test(headOf(c.bytes).replace(/^[\r\n]+/, "")),
  },
  {
    id: "hyper-leading-blank-lines",
    oracles: ["hyper"],
    kinds: ["request"],
    when: "two or more blank lines before a request line whose head is over ~500 bytes " +
      "(found by `deno task fuzz --seed=7`)",
    ours: "accept, the blank lines skipped",
    theirs: "400",
    rfc: "RFC 9112 2.2",
    why: "a server SHOULD ignore at least one empty line before the request-line; hyper " +
      "stops skipping them once the head outgrows its first read, a quirk of its buffering " +
      "(shorter heads with the same blank lines are accepted), and we rebuild such a head",
    matches: (c) => weAccept(c) && /^(\r?\n){2,}/.test(c.bytes) && headOf(c.bytes).length > 500,
  },
  {
    id: "content-length-repeated",
    oracles: ["hyper"],
    kinds: ["request"],
    when: "Content-Length repeated or a list, with equal values (`5, 5`)",
    ours: "400 (as llhttp)",
    theirs: "accept",
    rfc: "RFC 9112 6.3; RFC 9110 8.6",
    why: "a recipient MAY accept a list of identical values; refusing it leaves no room " +
      "for a front end and an app to pick different ones",
    matches: (c) =>
      weReject(c, 400) &&
      (count(c.theirs.headers, "content-length") > 1 ||
        values(c.theirs.headers, "content-length").some((v) => v.includes(","))),
  },
  {
    id: "upgrade-with-body",
    oracles: ["hyper"],
    kinds: ["request"],
    when: "a request asking for an upgrade (Connection: upgrade, Upgrade) with a body",
    ours: "accept: the body is forwarded, then the app decides on the upgrade",
    theirs: "400",
    rfc: "RFC 9110 7.8",
    why: "nothing forbids a body on an upgrade request; the app that answers 101 or " +
      "not is the one to judge it",
    matches: (c) =>
      c.diff.field === "verdict" && c.ours.verdict === "accept" && c.theirs.verdict === "reject" &&
      values(naiveFields(c.bytes), "connection").some((v) => /upgrade/i.test(v)) &&
      count(naiveFields(c.bytes), "upgrade") > 0,
  },
  {
    id: "chunk-ext-htab",
    oracles: ["hyper"],
    kinds: ["request"],
    when: "HTAB in a chunk-size line: as BWS, or inside a quoted extension value",
    ours: "accept",
    theirs: "the body read fails",
    rfc: "RFC 9112 7.1.1; RFC 9110 5.6.3, 5.6.4",
    why: "BWS and qdtext both include HTAB",
    matches: (c) =>
      c.diff.field === "verdict" && c.ours.verdict === "accept" &&
      chunkExtensions(chunkedBody(c)).some((e) => e.includes("\t")),
  },
  {
    id: "chunk-line-bare-lf",
    oracles: ["hyper"],
    kinds: ["request"],
    when: "a chunk-size line, chunk data or the last chunk ended by a bare LF",
    ours: "400 (as llhttp)",
    theirs: "accept",
    rfc: "RFC 9112 7.1, 2.2",
    why: "chunked framing ends its lines in CRLF; bytes we pass on as they are must " +
      "frame the same for an app that insists on it",
    matches: (c) => weReject(c, 400) && /(^|[^\r])\n/.test(chunkedBody(c)),
  },
  {
    id: "upgrade-skips-framing",
    oracles: ["llhttp"],
    kinds: ["request"],
    when: "an upgrade request with a Transfer-Encoding llhttp does not read as chunked",
    ours: "400/501, as for any request",
    theirs: "accept: no body, the rest is the new protocol",
    rfc: "RFC 9112 6.1, 6.3",
    why: "the request is forwarded before the app agrees to switch, so its framing must " +
      "be judged like any other",
    matches: (c) =>
      (weReject(c, 400) || weReject(c, 501)) && c.theirs.upgrade === true &&
      count(c.theirs.headers, "transfer-encoding") > 0,
  },
  {
    id: "response-leading-blank-line",
    oracles: ["llhttp"],
    kinds: ["response"],
    when: "CR or LF bytes before a status line",
    ours: "502",
    theirs: "accept (skipped)",
    rfc: "RFC 9112 2.2",
    why: "only a server expecting a request-line SHOULD ignore empty lines before it; " +
      "bytes before a response are left over from a previous message's framing",
    matches: (c) => weReject(c, 502) && /^[\r\n]/.test(c.bytes),
  },
  {
    id: "response-bare-lf",
    oracles: ["llhttp"],
    kinds: ["response"],
    when: "a response head with a line ending in a bare LF",
    ours: "accept (the head is rebuilt with CRLF for the client)",
    theirs: "HPE_CR_EXPECTED / HPE_LF_EXPECTED / HPE_STRICT",
    rfc: "RFC 9112 2.2",
    why: "a recipient MAY recognize a single LF as a line terminator; apps are behind " +
      "us and the client only ever sees our CRLF head",
    matches: (c) => weAccept(c) && /(^|[^\r])\n/.test(headOf(c.bytes)),
  },
  {
    id: "response-transfer-coding",
    oracles: ["llhttp"],
    kinds: ["response"],
    when: "a response with Transfer-Encoding other than `chunked` alone",
    ours: "502",
    theirs: "accept (body until close, or chunked when last)",
    rfc: "RFC 9112 6.1, 6.3",
    why: "we relay only chunked; a coding we cannot remove must not reach a client that " +
      "did not ask for it",
    matches: (c) =>
      weReject(c, 502) && values(c.theirs.headers, "transfer-encoding").join(",").trim()
          .toLowerCase() !== "chunked",
  },
  {
    id: "response-version",
    oracles: ["llhttp"],
    kinds: ["response"],
    when: "a status line with a version other than HTTP/1.x (HTTP/2.0, HTTP/0.9)",
    ours: "502",
    theirs: "accept",
    rfc: "RFC 9112 4",
    why: "an HTTP/1.1 app must answer with HTTP/1.x; anything else is a broken upstream",
    matches: (c) =>
      weReject(c, 502) && c.theirs.version !== undefined &&
      !/^1\./.test(c.theirs.version),
  },
  {
    id: "response-status-range",
    oracles: ["llhttp"],
    kinds: ["response"],
    when: "a status code below 100",
    ours: "502",
    theirs: "accept",
    rfc: "RFC 9110 15",
    why: "a status code is three digits, 100 and up (600-999 are used privately); below " +
      "100 a client would not know how to frame the response",
    matches: (c) => weReject(c, 502) && (c.theirs.code ?? 100) < 100,
  },
  {
    id: "response-reason-control",
    oracles: ["llhttp"],
    kinds: ["response"],
    when: "a reason phrase with a control character other than HTAB",
    ours: "502",
    theirs: "accept",
    rfc: "RFC 9112 4",
    why: "reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ); we pass it on to the client",
    matches: (c) =>
      // deno-lint-ignore no-control-regex -- control characters are the point
      weReject(c, 502) && /[\x00-\x08\x0a-\x1f\x7f]/.test(firstLine(c.bytes)),
  },
];

/** Trailer fields of a chunked body as a naive reader sees them. */
function trailerNames(c: DivergenceContext): Array<[string, string]> {
  const t = walkChunks(chunkedBody(c)).trailers;
  return t === null ? [] : naiveFields(`x\r\n${t}`);
}

/** The entry that explains a difference, if any. */
export function explain(c: DivergenceContext): Divergence | undefined {
  return DIVERGENCES.find((d) =>
    d.oracles.includes(c.oracle) && d.kinds.includes(c.kind) && d.matches(c)
  );
}

/** The table as markdown, for the README. */
export function divergenceTableMarkdown(): string {
  // A pipe inside a cell (code spans too) must be escaped in a GFM table.
  const cell = (t: string) => t.replaceAll("|", "\\|");
  const rows = DIVERGENCES.map((d) =>
    `| ${
      [d.id, d.oracles.join(", "), d.when, d.ours, d.theirs, d.rfc, d.why].map(cell).join(" | ")
    } |`
  );
  return [
    "| id | oracle | input | ours | oracle does | RFC | why |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}
