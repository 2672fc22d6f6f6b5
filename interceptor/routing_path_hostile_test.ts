/**
 * A hostile client against routingPath(): the path routes and static routes
 * are matched against (decoded, "\\" read as "/", dot segments removed),
 * while the request goes upstream with its original target. Over real
 * loopback sockets, with Deno.serve apps behind (WHATWG URL's reading).
 *
 * Tests named "hostile finding: ..." reproduce a defect and fail on the code
 * they were written against; each says what the fix must achieve. The others
 * ("held: ...", "divergence: ...") document attacks that held or readings
 * that differ from the Go add-on on purpose, and keep them that way.
 */
import assert from "node:assert/strict";
import { headerSourceOf, RouteIndex, routingPath } from "./routing.ts";
import {
  type Harness,
  RawClient,
  rawRequest,
  startApp,
  startHarness,
  type TestRouteObject,
  until,
} from "./proxy_testing.ts";

const KEY = "default/web";
const NO_HEADERS = headerSourceOf({});

function route(spec: Record<string, unknown>, name = "web"): TestRouteObject {
  return { name, kind: "InterceptorRoute", spec };
}

function get(path: string, extra = ""): string {
  return `GET ${path} HTTP/1.1\r\nHost: web.test\r\n${extra}\r\n`;
}

function counts(h: Harness, key = KEY) {
  const slot = h.routes.get(key)!.slot;
  return {
    concurrency: h.counters.concurrency(slot),
    held: h.counters.held(slot),
    requests: h.counters.requests32(slot),
  };
}

async function settled(h: Harness): Promise<void> {
  await until(() => {
    const c = counts(h);
    return c.concurrency === 0 && c.held === 0 && h.proxy.connections === 0;
  }, "concurrency, held and open connections back at 0");
}

/** One request on its own connection (Connection: close); the status, or 0 if none came. */
async function statusOf(port: number, target: string): Promise<number> {
  using c = await RawClient.connect(port);
  await c.send(get(target, "Connection: close\r\n"));
  try {
    return (await c.response()).status;
  } catch {
    return 0;
  }
}

/**
 * A guarded app: the proxy has an Always static route (403) on /admin. The
 * app records its raw pathname (WHATWG URL, as Deno.serve gives it) and says
 * which of three common app readings would serve its admin area: the raw
 * pathname on segments, a URLPattern "/admin/*" router (Hono, Oak, Fresh all
 * build on this reading), and a pathname decoded once (decodeURIComponent,
 * as Express's req.path users and Go's r.URL.Path do).
 */
function guarded() {
  const h = startHarness();
  const seen: string[] = [];
  const pattern = new URLPattern({ pathname: "/admin{/*}?" });
  const app = startApp((req) => {
    const path = new URL(req.url).pathname;
    seen.push(path);
    return new Response(`app:${path}`);
  });
  h.setRoutes([route({
    rules: [{ hosts: ["web.test"] }],
    staticRoutes: [{
      rules: [{ paths: [{ value: "/admin" }] }],
      responseMode: "Always",
      response: { statusCode: 403, body: "denied" },
    }],
  })]);
  h.setEndpoints(KEY, [app.port]);
  const underAdmin = (p: string) => p === "/admin" || p.startsWith("/admin/");
  /** How the app would read each path it saw since `from` as its admin area (empty: none). */
  const adminReadings = (from: number): string[] => {
    const out: string[] = [];
    for (const p of seen.slice(from)) {
      if (underAdmin(p)) out.push(`raw ${p}`);
      else if (pattern.test({ pathname: p })) out.push(`URLPattern ${p}`);
      else {
        let d: string | null = null;
        try {
          d = decodeURIComponent(p);
        } catch {
          d = null;
        }
        if (d !== null && underAdmin(d)) out.push(`decoded ${JSON.stringify(d)}`);
      }
    }
    return out;
  };
  return {
    h,
    app,
    seen,
    adminReadings,
    async [Symbol.asyncDispose]() {
      await app.shutdown();
      await h.close();
    },
  };
}

// ---------------------------------------------------------------------------
// Findings: each fails on the code it was written against.
// ---------------------------------------------------------------------------

Deno.test("hostile finding: an encoded slash or backslash (%2F, %5C) next to a dot segment steps around an Always static route", async () => {
  // routingPath decodes %2F/%5C into separators and THEN removes dot
  // segments. WHATWG URL (Deno.serve, Node, browsers) never splits on %2F or
  // %5C, so the two disagree on which segment ".." removes:
  //   /x%2fy/../admin      proxy "/x/admin"  app pathname "/admin"   (exact!)
  //   /admin/..%2fsecret   proxy "/secret"   app "/admin/..%2fsecret" (under /admin/)
  //   /admin%2f..%2fsecret proxy "/secret"   app decodes to "/admin/../secret"
  // Fix: remove dot segments as WHATWG does (split on literal "/" and "\\"
  // only, "." / "%2e" any case as dots), then decode; and answer 400 when the
  // decoded path still has a "." or ".." segment (it came from an encoded
  // separator, and a decoding app may resolve it either way).
  await using g = guarded();
  const targets = [
    "/x%2fy/../admin",
    "/x%2Fy/../admin",
    "/x%5cy/../admin",
    "/x%2f/../admin",
    "/admin/..%2fsecret",
    "/admin/..%5Csecret",
    "/admin%2f..%2fsecret",
    "/admin%5c..%5csecret",
    "/admin%2f../secret",
    "http://web.test/x%2fy/../admin",
  ];
  const bypasses: string[] = [];
  for (const target of targets) {
    const before = g.seen.length;
    const status = await statusOf(g.h.port, target);
    const reading = g.adminReadings(before);
    if (reading.length > 0 || (status !== 403 && status !== 400)) {
      bypasses.push(
        `${target} -> ${status}, routingPath ${
          JSON.stringify(routingPath(target.replace(/^http:\/\/[^/]*/, "")))
        }, app: ${reading.join("; ") || JSON.stringify(g.seen.slice(before))}`,
      );
    }
  }
  assert.deepEqual(bypasses, [], "targets the app serves as /admin despite the static route");
  await settled(g.h);
});

Deno.test("hostile finding: route lookup does work quadratic in the path's segments (a 60 KB target holds the event loop for seconds)", () => {
  // matchPath slices every whole-segment prefix of the path and hashes it in
  // a Map.get, longest first: a path of n segments costs ~n^2/2 characters
  // hashed, per host level tried (exact, each wildcard suffix, catch-all).
  // A 60 KB target of "/" (or "\\", or "%2f" x 20,000, which routingPath now
  // turns into slashes) took 0.5-2.3 s of CPU per request here, on the one
  // thread that serves every connection of the isolate; pipelined, a single
  // client can keep it busy indefinitely.
  // Fix: keep the longest prefix length per path index and start the walk at
  // path.lastIndexOf("/", maxLen) (or look prefixes up in a trie of segments),
  // so a lookup is linear in the path.
  // Measured as work, not time: the characters handed to Map.prototype.get.
  const idx = new RouteIndex([
    { key: "a", hosts: ["web.test"], pathPrefixes: ["/admin"], headers: [] },
    { key: "b", hosts: ["*.test"], pathPrefixes: ["/api/v1"], headers: [] },
    { key: "c", hosts: [], pathPrefixes: ["/"], headers: [] },
  ]);
  const path = routingPath("/" + "%2f".repeat(4_000))!;
  assert.equal(path.length, 4_001);
  let chars = 0;
  const realGet = Map.prototype.get;
  Map.prototype.get = function (this: Map<unknown, unknown>, k: unknown) {
    if (typeof k === "string") chars += k.length;
    return realGet.call(this, k);
  };
  let found;
  try {
    found = idx.lookup("web.test", path, NO_HEADERS);
  } finally {
    Map.prototype.get = realGet;
  }
  assert.equal(found?.key, "c");
  assert.ok(
    chars <= 16 * path.length,
    `${chars} characters hashed for a ${path.length}-character path (linear would be ~${
      4 * path.length
    })`,
  );
});

// ---------------------------------------------------------------------------
// Held: attacks that did not get through.
// ---------------------------------------------------------------------------

Deno.test("held: double encoding, overlong UTF-8, %00, escaped dots and case, absolute form never reach /admin", async () => {
  await using g = guarded();
  // [target, status]: 403 = the static route answered; 200 = forwarded (the app does
  // not read it as /admin under any of the three readings); 400 = refused.
  const cases: Array<[string, number]> = [
    // Double encoding: decoded once, as the app does ("%2e" is not a dot to either).
    ["/%252e%252e/admin", 200],
    ["/x/%252e%252e/admin", 200],
    ["/admin%252f..%252fsecret", 200],
    // Overlong UTF-8 for "." and "/": U+FFFD to us, bytes to the app; no dots either way.
    ["/x/%c0%ae%c0%ae/admin", 200],
    ["/x%c0%af..%c0%afadmin", 200],
    ["/admin%c0%af..%c0%afsecret", 200],
    // %00 and other controls stay inside their segment.
    ["/admin%00", 200],
    ["/admin/..%00/x", 403],
    ["/x/..%00/admin", 200],
    ["/admin%09", 200],
    // Escaped dot segments, any case, and escaped letters.
    ["/x/%2e%2e/admin", 403],
    ["/x/%2E%2e/admin", 403],
    ["/x/.%2E/admin", 403],
    ["/x/%2e./admin", 403],
    ["/%2e/admin", 403],
    ["/%61dmin", 403],
    ["/adm%69n", 403],
    ["/adm%69n/%2e%2e/admin/x", 403],
    ["/admin/%2e", 403],
    ["/a/b/../../../../admin", 403],
    ["/admin/", 403],
    ["/admin?x=/../public", 403],
    // A decoded "?" ends the path again in lookup and static rules ("/admin?x" -> "/admin"):
    // more blocked than the app's reading ("/admin%3fx"), never less.
    ["/admin%3fx", 403],
    ["/x%3f/admin", 200],
    // Literal backslashes: WHATWG reads them as "/", so do we.
    ["/x\\..\\admin", 403],
    ["/admin\\x", 403],
    // A fragment or a malformed escape: refused.
    ["/admin#x", 400],
    ["/x/..#/../admin", 400],
    ["/admin%zz", 400],
    ["/admin%", 400],
    ["/admin%u0041", 400],
    ["\\admin", 400],
    // Absolute form: the authority is dropped, the path read as origin form.
    ["http://web.test/%2e%2e/admin", 403],
    ["HTTP://WEB.TEST/x/../admin", 403],
    ["http://web.test/admin", 403],
    ["http://web.test/admin#x", 400],
    // The authority replaces Host: no route for other.test.
    ["http://other.test/admin", 404],
  ];
  const wrong: string[] = [];
  for (const [target, want] of cases) {
    const before = g.seen.length;
    const status = await statusOf(g.h.port, target);
    const reading = g.adminReadings(before);
    if (status !== want || reading.length > 0) {
      wrong.push(`${target}: ${status} (want ${want}), app: ${reading.join("; ")}`);
    }
  }
  assert.deepEqual(wrong, []);
  await settled(g.h);
});

Deno.test("held (documented): ';' parameters, trailing dots/spaces, '//admin', case and Unicode look-alikes are other paths to both sides", async () => {
  // Each of these is forwarded, and the app's own URL parser agrees it is not
  // /admin: routes (and static routes) are case-sensitive and segment-exact
  // like the Go add-on's. An app that strips ";params" (Java servlet
  // containers: "/admin;x/y" is "/admin/y", "/x/..;/admin" is "/admin"),
  // merges slashes (nginx merge_slashes, Spring), folds case, or trims
  // trailing dots (Windows/IIS) reads some of them as /admin: a static route
  // is not a guard for such apps. Not fixed: documented in the finding report.
  await using g = guarded();
  const cases: Array<[string, string]> = [
    ["/admin;x", "/admin;x"],
    ["/admin;x/y", "/admin;x/y"],
    ["/x/..;/admin", "/x/..;/admin"],
    ["/admin%3bx", "/admin%3bx"],
    ["/admin.", "/admin."],
    ["/admin%2e", "/admin%2e"],
    ["/admin%20", "/admin%20"],
    ["/admin%2e%2e", "/admin%2e%2e"],
    ["//admin", "//admin"],
    ["/\\admin", "//admin"],
    ["http://web.test//admin", "//admin"],
    ["/ADMIN", "/ADMIN"],
    ["/%41dmin", "/%41dmin"],
    ["/%61DMIN", "/%61DMIN"],
    ["/%ef%bc%8fadmin", "/%ef%bc%8fadmin"], // U+FF0F fullwidth solidus
    ["/admin%ef%bc%8f..%ef%bc%8fx", "/admin%ef%bc%8f..%ef%bc%8fx"],
    ["/%e2%80%8badmin", "/%e2%80%8badmin"], // zero-width space
    ["/admin%23x", "/admin%23x"],
  ];
  const wrong: string[] = [];
  for (const [target, appPath] of cases) {
    const before = g.seen.length;
    const status = await statusOf(g.h.port, target);
    const saw = g.seen.slice(before);
    if (status !== 200 || saw.length !== 1 || saw[0] !== appPath) {
      wrong.push(`${target}: ${status}, app saw ${JSON.stringify(saw)} (want ${appPath})`);
    }
  }
  assert.deepEqual(wrong, []);
  // The routing path names what the app decodes: never "/admin" or under it.
  for (const [target] of cases) {
    const rp = routingPath(
      target.startsWith("http") ? target.slice("http://web.test".length) : target,
    );
    assert.ok(rp === null || !(rp === "/admin" || rp.startsWith("/admin/")), `${target} -> ${rp}`);
  }
  await settled(g.h);
});

Deno.test("divergence: targets routed to another route than the Go add-on (r.URL.Path: decoded, no dot removal, '\\\\' literal)", () => {
  // The Go add-on matches r.URL.Path: escapes decoded, dot segments and
  // backslashes left alone. We resolve dots and backslashes the way the app
  // (WHATWG URL) and nginx do. Modelled here with the same matcher, so only
  // the reading of the path differs. Only clients that send dot segments or
  // backslashes see a difference; browsers and fetch() never send either
  // (they resolve them before sending), so no well-behaved client does.
  const idx = new RouteIndex([
    { key: "admin", hosts: [], pathPrefixes: ["/admin"], headers: [] },
    { key: "static", hosts: [], pathPrefixes: ["/static"], headers: [] },
    { key: "root", hosts: [], pathPrefixes: ["/"], headers: [] },
  ]);
  const goPath = (t: string): string | null => {
    const q = t.indexOf("?");
    try {
      return decodeURIComponent(q >= 0 ? t.slice(0, q) : t);
    } catch {
      return null;
    }
  };
  const keyOf = (p: string | null) => p === null ? "400" : idx.lookup("h", p, NO_HEADERS)?.key;
  // [target, ours, Go's]
  const cases: Array<[string, string, string]> = [
    ["/static/../admin", "admin", "static"],
    ["/static/%2e%2e/admin/x", "admin", "static"],
    ["/admin/../static/a.css", "static", "admin"],
    ["/static\\..\\admin", "admin", "root"],
    ["/admin\\x", "admin", "root"],
    ["/./static", "static", "root"],
    ["/static/.", "static", "static"],
    ["/static/..", "root", "static"],
    // The same both ways: decoded escapes, queries.
    ["/%61dmin", "admin", "admin"],
    ["/static%2fa.css", "static", "static"],
    ["/admin?next=/../static", "admin", "admin"],
    // Ours refuses what Go reads: "#" (Go leaves it in the path) - and Go answers a
    // malformed escape with 400 too.
    ["/admin#x", "400", "root"],
    ["/admin%zz", "400", "400"],
  ];
  for (const [target, ours, go] of cases) {
    assert.equal(keyOf(routingPath(target)), ours, `ours: ${target}`);
    assert.equal(keyOf(goPath(target)), go, `Go: ${target}`);
  }
});

Deno.test("held: 60 KB hostile targets (/..%2f x 10,000, %41 x 20,000, / x 60,000) are answered and keep the connection", async () => {
  await using h = startHarness();
  h.setRoutes([route({
    rules: [{ hosts: ["web.test"] }],
    staticRoutes: [
      {
        rules: [{ paths: [{ value: "/admin" }] }],
        responseMode: "Always",
        response: { statusCode: 403, body: "denied" },
      },
      { rules: [{ paths: [{ value: "/" }] }], responseMode: "Always", response: { body: "ok" } },
    ],
  })]);
  const before = counts(h);
  const cases: Array<[string, string, number]> = [
    ["/x/.. x 12,000", "/x/..".repeat(12_000), 200],
    ["%41 x 20,000", "/" + "%41".repeat(20_000), 200],
    ["/%61dmin/%41 x 19,990", "/%61dmin/" + "%41".repeat(19_990), 403],
    ["%2f x 20,000", "/" + "%2f".repeat(20_000), 200],
    ["/ x 60,000", "/".repeat(60_000), 200],
    ["\\ x 60,000", "/" + "\\".repeat(60_000), 200],
    ["/a x 30,000", "/a".repeat(30_000), 200],
    ["% at the end of 60 KB", "/" + "a".repeat(59_990) + "%", 400],
  ];
  // An escaped separator beside dots is refused whole (400), however long.
  const dotted = await rawRequest(h.port, get("/..%2f".repeat(10_000)));
  assert.equal(dotted.status, 400, "/..%2f x 10,000");
  const timings: string[] = [];
  using c = await RawClient.connect(h.port);
  for (const [name, target, status] of cases) {
    const t0 = performance.now();
    await c.send(get(target));
    const r = await c.response();
    timings.push(`${name}: ${(performance.now() - t0).toFixed(1)} ms`);
    assert.equal(r.status, status, name);
    if (status === 400) break; // The connection is closed after a 400.
    // Still in step: a small request on the same connection gets its own answer.
    await c.send(get("/admin"));
    assert.equal((await c.response()).body, "denied", `after ${name}`);
  }
  assert.ok(await c.closedWithin(2_000), "closed after the 400");
  // Rough cost per request, shown with the test output (no bound asserted).
  Deno.stderr.writeSync(new TextEncoder().encode(`    ${timings.join("\n    ")}\n`));
  assert.deepEqual(counts(h), before, "static answers and 400s count nothing");
  await settled(h);
});

Deno.test("held: nothing pipelined after a routingPath 400 is processed; counters unchanged", async () => {
  await using h = startHarness();
  let calls = 0;
  await using app = startApp(() => {
    calls++;
    return new Response("app");
  });
  h.setRoutes([route({
    rules: [{ hosts: ["web.test"] }],
    staticRoutes: [{
      rules: [{ paths: [{ value: "/admin" }] }],
      responseMode: "Always",
      response: { statusCode: 403, body: "denied" },
    }],
  })]);
  h.setEndpoints(KEY, [app.port]);
  const before = counts(h);
  for (const bad of ["/a%zz", "/admin#x", "/x%4", "http://web.test/a%G0"]) {
    using c = await RawClient.connect(h.port);
    // The bad request with a body that itself looks like a request, then more requests.
    const smuggled = get("/page");
    await c.send(
      `POST ${bad} HTTP/1.1\r\nHost: web.test\r\nContent-Length: ${smuggled.length}\r\n\r\n` +
        smuggled + get("/page") + get("/admin") + get("/x/../page"),
    );
    const r = await c.response();
    assert.equal(r.status, 400, bad);
    assert.equal(r.headers.get("connection"), "close", bad);
    assert.ok(await c.closedWithin(2_000), `${bad}: closed after the 400`);
  }
  assert.equal(calls, 0, "the app got nothing");
  assert.deepEqual(counts(h), before);
  assert.deepEqual(h.activity, []);
  // And a good request on a new connection still works.
  using ok = await RawClient.connect(h.port);
  await ok.send(get("/page", "Connection: close\r\n"));
  assert.equal((await ok.response()).body, "app");
  ok.close();
  await settled(h);
});
