/**
 * requestOf (which HTTP/2 request header lists we accept) against nghttp2,
 * the reference implementation, on generated lists: each list goes as a
 * HEADERS frame to Node's http2 server (nghttp2 validates before Node sees
 * a stream) and through requestOf; both must accept, or both refuse.
 * Where we knowingly differ, DIVERGENCES says why.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { FrameType } from "./h2_frames.ts";
import { MalformedMessage, requestOf } from "./h2_bridge.ts";
import { RawH2, startNodeH2App } from "./h2_testing.ts";

type Fields = Array<[string, string]>;

const BASE: Fields = [
  [":method", "GET"],
  [":scheme", "http"],
  [":path", "/info"],
  [":authority", "app.test"],
];

/** One change to a valid list: the generator's vocabulary of ways to go wrong (or not). */
const edit = fc.oneof(
  fc.constant((f: Fields) => f),
  fc.constantFrom(":method", ":scheme", ":path", ":authority").map((n) => (f: Fields) =>
    f.filter(([k]) => k !== n)
  ),
  fc.constantFrom(":method", ":path", ":scheme", ":authority").map((n) => (f: Fields) => [
    ...f,
    [n, "x"] as [string, string],
  ]),
  fc.constantFrom(":status", ":protocol", ":foo").map((n) => (f: Fields) => [
    ...f.slice(0, 1),
    [n, "1"] as [string, string],
    ...f.slice(1),
  ]),
  fc.constantFrom("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade")
    .map((n) => (f: Fields) => [...f, [n, "x"] as [string, string]]),
  fc.constantFrom("trailers", "gzip", "trailers, deflate").map((v) => (f: Fields) => [
    ...f,
    ["te", v] as [string, string],
  ]),
  fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9-]{0,8}$/).map((n) => (f: Fields) => [
    ...f,
    [n, "v"] as [string, string],
  ]),
  fc.constantFrom("a\u0000b", "a\nb", "a\rb", " lead", "trail ", "\tx", "ok value").map(
    (v) => (f: Fields) => [...f, ["x-v", v] as [string, string]],
  ),
  fc.constantFrom("", "/", "*", "rel", "/a b").map((p) => (f: Fields) =>
    f.map(([k, v]) => [k, k === ":path" ? p : v] as [string, string])
  ),
  // A regular field before the pseudo-headers.
  fc.constant((f: Fields) => [["x-early", "1"] as [string, string], ...f]),
);

function oursAccepts(fields: Fields): boolean {
  try {
    requestOf(fields, true);
    return true;
  } catch (e) {
    if (e instanceof MalformedMessage) return false;
    throw e;
  }
}

/**
 * Known differences, each a rule of ours stricter or looser than nghttp2's
 * on purpose. Returns why, or null.
 */
function divergence(fields: Fields): string | null {
  const path = fields.find(([k]) => k === ":path")?.[1];
  // nghttp2 passes any non-empty :path; we require origin-form (or * for OPTIONS), as RFC 9113
  // 8.3.1 says, since the HTTP/1.1 side cannot carry anything else.
  if (path !== undefined && path !== "" && path[0] !== "/") return "path form";
  // RFC 9113 8.2.1: no NUL, CR or LF in a value, no whitespace at its edges. Node 20's nghttp2
  // leaves values unchecked; we must not, since a CR or LF would split the HTTP/1.1 head.
  // deno-lint-ignore no-control-regex -- matching control characters is the point
  if (fields.some(([, v]) => /[\u0000\r\n]|^[ \t]|[ \t]$/.test(v))) return "value rules";
  return null;
}

Deno.test({
  name: "h2 request validation matches nghttp2 on generated header lists",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  await using app = await startNodeH2App();
  let c = await RawH2.connect(app.port);
  let sid = 1;
  const seen: string[] = [];
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(edit, { maxLength: 3 }), async (edits) => {
        let fields = BASE;
        for (const e of edits) fields = e(fields);
        const ours = oursAccepts(fields);
        // Names our HPACK encoder would send as they are; nghttp2 refuses upper case too.
        await c.headers(sid, fields);
        const { hit } = await c.until(
          (f) => f.sid === sid && (f.type === FrameType.Headers || f.type === FrameType.RstStream),
          5_000,
        );
        let theirs: boolean;
        if (hit === null) {
          // nghttp2 ended the connection (a connection error): refused; start a new one.
          theirs = false;
          c.close();
          c = await RawH2.connect(app.port);
          sid = 1;
        } else {
          theirs = hit.type === FrameType.Headers;
          sid += 2;
        }
        if (ours !== theirs) {
          const why = divergence(fields);
          if (why !== null) {
            seen.push(why);
            return;
          }
        }
        assert.equal(ours, theirs, `ours ${ours}, nghttp2 ${theirs}: ${JSON.stringify(fields)}`);
      }),
      { numRuns: 150 },
    );
  } finally {
    c.close();
  }
});
