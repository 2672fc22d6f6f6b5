/**
 * Differential test of the data plane against nginx: the same raw client
 * bytes go through our proxy (the harness) and through nginx (a streaming
 * keep-alive reverse proxy, nginx_testing.ts), each in front of its own
 * recording app (recording_app_testing.ts, a strict HTTP/1.1 reader). The
 * requests the app saw and the statuses the clients got must match the
 * intended outcome; nginx may differ from it only as DELIBERATE says.
 *
 * Whatever the table says, on both sides: a smuggled request never reaches
 * the app as a request, the victim's bytes never end up inside another
 * request, a client never gets a response meant for another, and the app
 * never sees a malformed message. Our counters must be back at 0 after
 * every case.
 */
import assert from "node:assert/strict";
import { startNginx } from "./nginx_testing.ts";
import { RawClient, type RawResponse, startHarness, until } from "./proxy_testing.ts";
import {
  type RecordedRequest,
  type RecordingApp,
  type ReplyScript,
  startRecordingApp,
} from "./recording_app_testing.ts";

type Side = "ours" | "nginx";

interface Send {
  /** 0 = the attacker (or the only client), 1 = the victim. */
  client?: 0 | 1;
  bytes: string;
}

interface Want {
  /** Requests the app saw whole (or answered before their body), as rq() formats them. */
  requests: string[];
  /** Status codes each send got, in order (-1: a response cut off). */
  statuses: number[][];
  /** Per client: the proxy closed the connection (true) or kept it (false); unset: not checked. */
  closed?: Array<boolean | undefined>;
}

interface Case {
  name: string;
  sends: Send[];
  reply?: ReplyScript;
  /** The outcome intended for our proxy (the rules). */
  want: Want;
  /** More assertions on our result only. */
  ours?: (r: Result) => void;
  /** More assertions on both results. */
  both?: (r: Result) => void;
}

interface Result {
  side: Side;
  requests: string[];
  statuses: number[][];
  closed: boolean[];
  /** Responses of each send. */
  responses: RawResponse[][];
  app: RecordingApp;
  /** nginx's error log, or our proxy's log lines at warn and above. */
  log: string[];
}

/** One request as the app saw it: method, target, Host, body. */
function rq(method: string, target: string, body = "", host = "app.test"): string {
  return `${method} ${target} [${host}] ${JSON.stringify(body)}`;
}

function seenOf(r: RecordedRequest): string {
  const hosts = r.headers.filter(([k]) => k.toLowerCase() === "host").map(([, v]) => v);
  return rq(r.method, r.target, r.body, hosts.join(" | "));
}

const SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";
const VICTIM: Send = {
  client: 1,
  bytes: "GET /victim HTTP/1.1\r\nHost: app.test\r\nCookie: secret=1\r\n\r\n",
};
const VICTIM_SEEN = rq("GET", "/victim");

function post(target: string, fields: string, body: string): string {
  return `POST ${target} HTTP/1.1\r\nHost: app.test\r\n${fields}\r\n${body}`;
}

function get(target: string, fields = ""): string {
  return `GET ${target} HTTP/1.1\r\nHost: app.test\r\n${fields}\r\n`;
}

/** The client's bytes are refused with `status` and the connection closed; the victim is served. */
function refused(status: number): Want {
  return { requests: [VICTIM_SEEN], statuses: [[status], [200]], closed: [true] };
}

/** A chunked POST with `body`, then the victim on its own connection. */
function chunkedThenVictim(name: string, body: string, te = "Transfer-Encoding: chunked"): Case {
  return {
    name,
    sends: [{ bytes: post("/attack", `${te}\r\n`, body) }, VICTIM],
    want: refused(400),
  };
}

function header(res: RawResponse, name: string): string | undefined {
  return res.headers.get(name);
}

/** A response head carries no bare CR and no NUL. */
function cleanHead(res: RawResponse): boolean {
  return !res.head.includes("\x00") && !/\r(?!\n)/.test(res.head);
}

const CASES: Case[] = [
  {
    name: "plain GET keep-alive x2",
    sends: [{ bytes: get("/a") }, { bytes: get("/b") }],
    want: {
      requests: [rq("GET", "/a"), rq("GET", "/b")],
      statuses: [[200], [200]],
      closed: [false],
    },
  },
  {
    name: "POST with Content-Length",
    sends: [{ bytes: post("/p", "Content-Length: 5\r\n", "hello") }],
    want: { requests: [rq("POST", "/p", "hello")], statuses: [[200]] },
  },
  {
    name: "chunked POST",
    sends: [{
      bytes: post(
        "/c",
        "Transfer-Encoding: chunked\r\n",
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
      ),
    }],
    want: { requests: [rq("POST", "/c", "hello world")], statuses: [[200]] },
  },
  {
    name: "CL.TE (Content-Length and Transfer-Encoding: chunked)",
    sends: [
      {
        bytes: post("/attack", "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nG"),
      },
      VICTIM,
    ],
    want: refused(400),
  },
  {
    name: "TE.CL (Transfer-Encoding: chunked and Content-Length)",
    sends: [
      {
        bytes: post(
          "/attack",
          "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
          `2a\r\n${SMUGGLED}\r\n0\r\n\r\n`,
        ),
      },
      VICTIM,
    ],
    want: refused(400),
  },
  chunkedThenVictim(
    "Transfer-Encoding with a space before the colon",
    "5\r\nhello\r\n0\r\n\r\n",
    "Transfer-Encoding : chunked",
  ),
  chunkedThenVictim(
    "Transfer-Encoding: xchunked",
    "5\r\nhello\r\n0\r\n\r\n",
    "Transfer-Encoding: xchunked",
  ),
  chunkedThenVictim(
    "Transfer-Encoding: chunked, identity",
    "5\r\nhello\r\n0\r\n\r\n",
    "Transfer-Encoding: chunked, identity",
  ),
  {
    ...chunkedThenVictim(
      "Transfer-Encoding: gzip, chunked",
      "5\r\nhello\r\n0\r\n\r\n",
      "Transfer-Encoding: gzip, chunked",
    ),
    want: refused(501),
  },
  chunkedThenVictim(
    "Transfer-Encoding: chunked on two lines",
    "5\r\nhello\r\n0\r\n\r\n",
    "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
  ),
  {
    name: "Connection: Content-Length with a 42-byte body that is a request",
    sends: [
      { bytes: post("/attack", "Connection: Content-Length\r\nContent-Length: 42\r\n", SMUGGLED) },
      VICTIM,
    ],
    want: {
      requests: [rq("POST", "/attack", SMUGGLED), VICTIM_SEEN],
      statuses: [[200], [200]],
    },
    both(r) {
      const attack = r.app.requests.find((q) => q.target === "/attack")!;
      const cl = attack.headers.filter(([k]) => k.toLowerCase() === "content-length");
      assert.deepEqual(cl.map(([, v]) => v), ["42"], "framing regenerated: Content-Length: 42");
    },
  },
  {
    name: "Connection: Transfer-Encoding with a chunked body that is a request",
    sends: [
      {
        bytes: post(
          "/attack",
          "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n",
          `2a\r\n${SMUGGLED}\r\n0\r\n\r\n`,
        ),
      },
      VICTIM,
    ],
    want: {
      requests: [rq("POST", "/attack", SMUGGLED), VICTIM_SEEN],
      statuses: [[200], [200]],
    },
  },
  {
    name: "Content-Length 5 twice",
    sends: [
      { bytes: post("/attack", "Content-Length: 5\r\nContent-Length: 5\r\n", "hello") },
      VICTIM,
    ],
    want: refused(400),
  },
  {
    name: "Content-Length: 5, 5",
    sends: [{ bytes: post("/attack", "Content-Length: 5, 5\r\n", "hello") }, VICTIM],
    want: refused(400),
  },
  {
    name: "Content-Length: +5",
    sends: [{ bytes: post("/attack", "Content-Length: +5\r\n", "hello") }, VICTIM],
    want: refused(400),
  },
  {
    name: "Content-Length: 0x5",
    sends: [{ bytes: post("/attack", "Content-Length: 0x5\r\n", "hello") }, VICTIM],
    want: refused(400),
  },
  {
    // Whitespace around a field value is not part of it (RFC 9110 5.5).
    name: "Content-Length with spaces around 5",
    sends: [{ bytes: post("/p", "Content-Length:  5 \r\n", "hello") }],
    want: { requests: [rq("POST", "/p", "hello")], statuses: [[200]] },
  },
  {
    name: "bare CR in a header value",
    sends: [{ bytes: get("/a", "X-A: a\rb\r\n") }],
    want: { requests: [], statuses: [[400]], closed: [true] },
  },
  {
    name: "obs-fold",
    sends: [{ bytes: get("/a", "X-A: a\r\n b\r\n") }],
    want: { requests: [], statuses: [[400]], closed: [true] },
  },
  {
    name: "NUL in a header value",
    sends: [{ bytes: get("/a", "X-A: a\x00b\r\n") }],
    want: { requests: [], statuses: [[400]], closed: [true] },
  },
  {
    name: "absolute-form target with a different Host",
    sends: [{ bytes: "GET http://app.test/x?y=1 HTTP/1.1\r\nHost: other.test\r\n\r\n" }],
    want: { requests: [rq("GET", "/x?y=1")], statuses: [[200]] },
  },
  {
    name: "absolute-form target without a path",
    sends: [{ bytes: "GET http://app.test?x=1 HTTP/1.1\r\nHost: app.test\r\n\r\n" }],
    want: { requests: [rq("GET", "/?x=1")], statuses: [[200]] },
  },
  {
    name: "HTTP/1.1 without Host",
    sends: [{ bytes: "GET /a HTTP/1.1\r\n\r\n" }],
    want: { requests: [], statuses: [[400]], closed: [true] },
  },
  {
    name: "HTTP/1.2",
    sends: [{ bytes: "GET /v HTTP/1.2\r\nHost: app.test\r\n\r\n" }],
    want: { requests: [rq("GET", "/v")], statuses: [[200]] },
    both(r) {
      assert.equal(r.app.requests[0]!.version, "1.1", "forwarded as HTTP/1.1");
    },
  },
  {
    name: "OPTIONS *",
    sends: [{ bytes: "OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n" }],
    want: { requests: [rq("OPTIONS", "*")], statuses: [[200]] },
  },
  {
    name: "GET *",
    sends: [{ bytes: "GET * HTTP/1.1\r\nHost: app.test\r\n\r\n" }],
    want: { requests: [], statuses: [[400]], closed: [true] },
  },
  {
    name: "CONNECT",
    sends: [{ bytes: "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n" }],
    want: { requests: [], statuses: [[405]], closed: [true] },
    ours(r) {
      assert.match(header(r.responses[0]![0]!, "allow") ?? "", /\bGET\b/, "405 says Allow");
    },
  },
  // "0x5" read as 0 would end the body and make "hello..." the next request.
  chunkedThenVictim("chunked: bad hex size", "0x5\r\nhello\r\n0\r\n\r\n"),
  chunkedThenVictim("chunked: no CRLF after the data", "5\r\nhello0\r\n\r\n"),
  chunkedThenVictim("chunked: bare LF line ends", "5\nhello\n0\n\n"),
  chunkedThenVictim("chunked: junk after the size", "5 junk\r\nhello\r\n0\r\n\r\n"),
  chunkedThenVictim(
    "chunked: a trailer line without a colon",
    "5\r\nhello\r\n0\r\nno colon\r\n\r\n",
  ),
  chunkedThenVictim(
    "chunked: Content-Length in the trailers",
    "5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n",
  ),
  {
    name: "three pipelined requests in one write",
    sends: [{ bytes: get("/1") + get("/2") + get("/3") }],
    want: {
      requests: [rq("GET", "/1"), rq("GET", "/2"), rq("GET", "/3")],
      statuses: [[200, 200, 200]],
    },
  },
  {
    // The app takes the POST and drops the connection without an answer.
    name: "a POST is not sent twice",
    sends: [{ bytes: get("/warm") }, { bytes: post("/charge", "Content-Length: 3\r\n", "abc") }],
    reply: (
      req,
      when,
    ) => (when === "end" && req.method === "POST" ? { raw: "", close: true } : undefined),
    want: {
      requests: [rq("GET", "/warm"), rq("POST", "/charge", "abc")],
      statuses: [[200], [502]],
    },
  },
  {
    // After the 5 bytes the app sends a whole second response: if the proxy
    // kept that connection, the victim would get it.
    name: "response: Connection: content-length with Content-Length: 5 and more bytes",
    sends: [{ bytes: get("/1") }, VICTIM, { bytes: get("/2") }],
    reply: (req, when) =>
      when === "end" && req.target === "/1"
        ? {
          raw: "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello" +
            "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned",
        }
        : undefined,
    want: {
      requests: [rq("GET", "/1"), VICTIM_SEEN, rq("GET", "/2")],
      statuses: [[200], [200], [200]],
    },
    both(r) {
      const first = r.responses[0]![0]!;
      assert.equal(header(first, "content-length"), "5", "the client gets the framing");
      assert.equal(first.body, "hello");
    },
  },
  {
    name: "response: Content-Length: 10 with Transfer-Encoding : chunked",
    sends: [{ bytes: get("/1") }, VICTIM],
    reply: (req, when) =>
      when === "end" && req.target === "/1"
        ? {
          raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding : chunked\r\n\r\n" +
            "5\r\nhello\r\n0\r\n\r\n",
        }
        : undefined,
    want: { requests: [rq("GET", "/1"), VICTIM_SEEN], statuses: [[502], [200]] },
  },
  {
    name: "response: CR in a header value",
    sends: [{ bytes: get("/1") }, VICTIM],
    reply: (req, when) =>
      when === "end" && req.target === "/1"
        ? { raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\rb\r\n\r\nok" }
        : undefined,
    want: { requests: [rq("GET", "/1"), VICTIM_SEEN], statuses: [[502], [200]] },
    both(r) {
      assert.ok(r.responses.flat().every(cleanHead), "no bare CR reaches a client");
    },
  },
  {
    name: "response: NUL in a header value",
    sends: [{ bytes: get("/1") }, VICTIM],
    reply: (req, when) =>
      when === "end" && req.target === "/1"
        ? { raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\x00b\r\n\r\nok" }
        : undefined,
    want: { requests: [rq("GET", "/1"), VICTIM_SEEN], statuses: [[502], [200]] },
    both(r) {
      assert.ok(r.responses.flat().every(cleanHead), "no NUL reaches a client");
    },
  },
  {
    // The app answers after the head; the client sends the body and another
    // request only once it has the answer.
    name: "response: the app answers before reading the body",
    sends: [
      { bytes: post("/early", "Content-Length: 10\r\n", "") },
      { bytes: "0123456789" + get("/after") },
    ],
    reply: (req, when) =>
      when === "head" && req.target === "/early"
        ? { raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly" }
        : undefined,
    want: { requests: [rq("POST", "/early")], statuses: [[200], []], closed: [true] },
    ours(r) {
      assert.equal(header(r.responses[0]![0]!, "connection"), "close");
    },
  },
];

/**
 * Where nginx 1.22 (as configured in nginx_testing.ts) deliberately does
 * otherwise than our proxy: case name -> what nginx gets instead and why
 * ours is the reading we keep. Any other difference fails.
 */
const DELIBERATE: Record<string, { nginx: Partial<Want>; rfc: string; why: string }> = {
  "Transfer-Encoding: xchunked": {
    nginx: { statuses: [[501], [200]] },
    rfc: "RFC 9112 6.3",
    why: "a request whose last transfer coding is not chunked has no knowable length: 400 and " +
      "close; nginx answers 501 for the unknown coding (also closing), equally safe",
  },
  "Transfer-Encoding: chunked, identity": {
    nginx: { statuses: [[501], [200]] },
    rfc: "RFC 9112 6.3",
    why: "chunked not last: 400 and close, as for xchunked; nginx says 501 (identity is no " +
      "longer a registered coding) and closes too",
  },
  "absolute-form target with a different Host": {
    nginx: { requests: [rq("GET", "/x?y=1", "", "other.test")] },
    rfc: "RFC 9112 3.2.2",
    why: "a proxy must ignore Host and use the target's authority; nginx forwards the received " +
      "Host because the config passes $http_host ($host would give the authority)",
  },
  "OPTIONS *": {
    nginx: { requests: [], statuses: [[400]] },
    rfc: "RFC 9112 3.2.4",
    why: "asterisk-form is valid for OPTIONS (a server-wide request) and is forwarded as is; " +
      "nginx's request-line parser takes only origin- and absolute-form",
  },
  "CONNECT": {
    nginx: { statuses: [[400]] },
    rfc: "RFC 9110 9.3.6",
    why: "we are not a tunnel, so CONNECT is a method this resource does not allow: 405 with " +
      "Allow (RFC 9110 15.5.6); nginx refuses it as a bad request",
  },
  "chunked: bare LF line ends": {
    nginx: chunkedAccepted(),
    rfc: "RFC 9112 7.1",
    why: "chunk lines end in CRLF (the bare-LF leniency of RFC 9112 2.2 is for the start line " +
      "and fields); nginx takes a bare LF and forwards the body re-chunked",
  },
  "chunked: junk after the size": {
    nginx: chunkedAccepted(),
    rfc: "RFC 9112 7.1.1",
    why: "after the size only BWS ; chunk-ext may follow; nginx skips whatever follows the " +
      "size up to the line end",
  },
  "chunked: a trailer line without a colon": {
    nginx: chunkedAccepted(),
    rfc: "RFC 9112 7.1.2",
    why:
      "a trailer section is field lines (name, colon, value: RFC 9112 5); nginx reads trailers " +
      "without checking them and drops them",
  },
  "chunked: Content-Length in the trailers": {
    nginx: chunkedAccepted(),
    rfc: "RFC 9110 6.5.1",
    why: "framing fields are not allowed as trailers, and a next hop that merged one would " +
      "reframe the message; nginx drops trailers instead of forwarding them, which is safe too",
  },
};

/** nginx accepts the chunked body of chunkedThenVictim(), forwards it, and keeps the connection. */
function chunkedAccepted(): Partial<Want> {
  return {
    requests: [rq("POST", "/attack", "hello"), VICTIM_SEEN],
    statuses: [[200], [200]],
    closed: [false],
  };
}

/** Waits at most this long for each response a send expects. */
const RESPONSE_TIMEOUT_MS = 15_000;
/** After the last send: how long unexpected extra responses may take to show. */
const EXTRA_GRACE_MS = 300;
/** How long a connection expected to close may take to close. */
const CLOSE_TIMEOUT_MS = 10_000;

/** Reads up to `n` responses within `ms`; stops early when the peer closes. */
async function readResponses(
  c: RawClient,
  n: number,
  ms: number,
): Promise<{ responses: RawResponse[]; broken: number; peerClosed: boolean }> {
  const responses: RawResponse[] = [];
  let broken = 0;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    c.close();
  }, ms);
  try {
    while (responses.length + broken < n) {
      try {
        responses.push(await c.response());
      } catch (e) {
        // Closed inside a response, rather than before one: a cut-off response.
        if (!/before a response head/.test(String(e)) && !timedOut) broken++;
        break;
      }
    }
  } finally {
    clearTimeout(timer);
  }
  return { responses, broken, peerClosed: c.closed && !timedOut };
}

async function run(side: Side, c: Case): Promise<Result> {
  const app = startRecordingApp(c.reply ? { reply: c.reply } : {});
  const clients: RawClient[] = [];
  const cleanup: Array<() => Promise<void> | void> = [];
  try {
    let port: number;
    let settled = async () => {};
    let log = (): Promise<string[]> => Promise.resolve([]);
    if (side === "ours") {
      const h = startHarness();
      cleanup.push(() => h.close());
      h.setRoutes([{ name: "app", spec: { hosts: ["app.test"] } }]);
      h.setEndpoints("default/app", [app.port]);
      port = h.port;
      log = () => Promise.resolve(h.logs.filter((l) => /"level":"(warn|error)"/.test(l)));
      const slot = h.routes.get("default/app")!.slot;
      settled = async () => {
        await until(
          () => h.counters.concurrency(slot) === 0 && h.counters.held(slot) === 0,
          "our route's concurrency and held counters back at 0",
        );
      };
    } else {
      const nginx = await startNginx(`127.0.0.1:${app.port}`);
      cleanup.push(() => nginx.close());
      port = nginx.port;
      log = async () =>
        (await nginx.errorLog()).split("\n").filter((l) => / \[(info|warn|error)\] /.test(l));
    }
    const responses: RawResponse[][] = [];
    const statuses: number[][] = [];
    const want = side === "ours" ? c.want : { ...c.want, ...DELIBERATE[c.name]?.nginx };
    const lastSendOf = new Map<number, number>();
    const closed: boolean[] = [];
    for (const [i, s] of c.sends.entries()) {
      const k = s.client ?? 0;
      lastSendOf.set(k, i);
      if (!clients[k]) clients[k] = await RawClient.connect(port);
      const client = clients[k]!;
      // A connection the proxy has closed may refuse the bytes; what it answered still counts.
      await client.send(s.bytes).catch(() => {});
      const expected = want.statuses[i]?.length ?? 0;
      const got = expected > 0
        ? await readResponses(client, expected, RESPONSE_TIMEOUT_MS)
        : { responses: [], broken: 0, peerClosed: false };
      responses.push(got.responses);
      statuses.push([...got.responses.map((r) => r.status), ...Array(got.broken).fill(-1)]);
      if (got.peerClosed) closed[k] = true;
    }
    // Anything more a client gets counts against its last send.
    for (const [k, client] of clients.entries()) {
      const i = lastSendOf.get(k)!;
      const wait = want.closed?.[k] === true ? CLOSE_TIMEOUT_MS : EXTRA_GRACE_MS;
      const extra = closed[k] ? undefined : await readResponses(client, 100, wait);
      if (extra) {
        responses[i]!.push(...extra.responses);
        statuses[i]!.push(...extra.responses.map((r) => r.status), ...Array(extra.broken).fill(-1));
        closed[k] = extra.peerClosed;
      }
      client.close();
    }
    await settled();
    return {
      side,
      requests: app.requests.filter((r) => r.complete || r.early).map(seenOf),
      statuses,
      closed: clients.map((_, k) => closed[k] ?? false),
      responses,
      app,
      log: await log(),
    };
  } finally {
    for (const client of clients) client?.close();
    for (const f of cleanup.reverse()) await f();
    await app.close();
  }
}

/** What is compared: the requests, the statuses, and closes where the outcome names them. */
function outcomeOf(r: Result, want: Want): Want {
  const out: Want = { requests: r.requests, statuses: r.statuses };
  if (want.closed) {
    out.closed = want.closed.map((w, k) => (w === undefined ? undefined : r.closed[k]));
  }
  return out;
}

/** What must hold for any proxy, whatever the table says. */
function assertSafe(r: Result, sends: Send[], report: string): void {
  const say = (what: string) => `${r.side}: ${what}\n${report}`;
  for (const q of r.app.requests) {
    assert.notEqual(q.target, "/smuggled", say(`a smuggled request reached the app`));
    assert.ok(
      !q.body.includes("secret=1"),
      say(`the victim's bytes ended up in the body of ${q.method} ${q.target}`),
    );
  }
  assert.deepEqual(
    r.app.events.filter((e) => e.kind === "framing-error"),
    [],
    say(`the app was sent a malformed message`),
  );
  const victim = r.app.requests.find((q) => q.target === "/victim");
  if (victim) {
    assert.ok(
      victim.headers.some(([k, v]) => k.toLowerCase() === "cookie" && v === "secret=1"),
      say(`the victim's request lost its cookie`),
    );
  }
  // Which app request each JSON answer belongs to: it must be this client's.
  for (const [i, list] of r.responses.entries()) {
    const isVictim = sends[i]?.client === 1;
    for (const res of list) {
      let target: string | undefined;
      try {
        target = (JSON.parse(res.body) as { target?: string }).target;
      } catch {
        target = undefined;
      }
      if (isVictim && res.status === 200) {
        assert.equal(target, "/victim", say(`the victim got a response not meant for it`));
      }
      if (!isVictim) {
        assert.notEqual(
          target,
          "/victim",
          say(`a response for the victim went to another client`),
        );
      }
    }
  }
}

for (const c of CASES) {
  Deno.test(`proxy vs nginx: ${c.name}`, async () => {
    const ours = await run("ours", c);
    const nginx = await run("nginx", c);
    const nginxWant = { ...c.want, ...DELIBERATE[c.name]?.nginx };
    const report = JSON.stringify(
      {
        ours: outcomeOf(ours, c.want),
        nginx: outcomeOf(nginx, nginxWant),
        oursAppEvents: ours.app.events,
        nginxAppEvents: nginx.app.events,
        oursLog: ours.log,
        nginxLog: nginx.log,
      },
      null,
      1,
    );
    assertSafe(ours, c.sends, report);
    assertSafe(nginx, c.sends, report);
    assert.deepEqual(
      outcomeOf(ours, c.want),
      c.want,
      `ours differs from the intended outcome\n${report}`,
    );
    c.ours?.(ours);
    c.both?.(ours);
    assert.deepEqual(
      outcomeOf(nginx, nginxWant),
      nginxWant,
      `nginx differs from ours in a way DELIBERATE does not explain\n${report}`,
    );
    c.both?.(nginx);
  });
}

Deno.test("proxy vs nginx: every deliberate difference names a case and differs from it", () => {
  for (const [name, d] of Object.entries(DELIBERATE)) {
    const c = CASES.find((x) => x.name === name);
    assert.ok(c, `DELIBERATE names no case: ${name}`);
    assert.notDeepEqual({ ...c.want, ...d.nginx }, c.want, `DELIBERATE[${name}] changes nothing`);
    assert.match(d.rfc, /^RFC 911[02] \d+(\.\d+)*$/, `DELIBERATE[${name}] cites a section`);
  }
});
