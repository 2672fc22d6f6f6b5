import assert from "node:assert/strict";
import { buildRoutingTable } from "../shared/routing_table.ts";
import fc from "fast-check";
import { headerSourceOf, hostKey, RouteIndex, routingPath, ruleEntriesOf } from "./routing.ts";

const obj = (name: string, spec: Record<string, unknown>, ns = "default") => ({
  metadata: { name, namespace: ns },
  spec: { scaleTargetRef: { name, service: `${name}-svc`, port: 8080 }, ...spec },
});

function indexOf(objects: unknown[]): RouteIndex {
  const t = buildRoutingTable(objects);
  assert.equal(t.invalid.size, 0, JSON.stringify([...t.invalid]));
  return new RouteIndex(ruleEntriesOf(t.entries.values()));
}

const index = indexOf([
  obj("exact", { hosts: ["app.example.com"] }),
  obj("exact-api", { hosts: ["app.example.com"], pathPrefixes: ["/api"] }),
  obj("exact-api-v2", { hosts: ["app.example.com"], pathPrefixes: ["/api/v2/"] }),
  obj("exact-api-blue", {
    hosts: ["app.example.com"],
    pathPrefixes: ["/api/v2"],
    headers: [{ name: "X-Tenant", value: "blue" }],
  }),
  obj("exact-api-blue-debug", {
    hosts: ["app.example.com"],
    pathPrefixes: ["/api/v2"],
    headers: [{ name: "x-tenant", value: "blue" }, { name: "X-Debug" }],
  }),
  obj("wild-deep", { hosts: ["*.eu.example.com"] }),
  obj("wild", { hosts: ["*.example.com"] }),
  obj("wild-admin", { hosts: ["*.example.com"], pathPrefixes: ["/admin"] }),
  obj("only-header", {
    hosts: ["hdr.example.org"],
    pathPrefixes: ["/x"],
    headers: [{ name: "x-key", value: "k" }],
  }),
  obj("catch-all-red", { headers: [{ name: "x-color", value: "red" }] }),
  obj("tie-b", { hosts: ["tie.test"], pathPrefixes: ["/t"] }, "ns-b"),
  obj("tie-a", { hosts: ["tie.test"], pathPrefixes: ["/t"] }, "ns-a"),
  obj("star", { hosts: ["*"], pathPrefixes: ["/star"] }),
  obj("caps", { hosts: ["MiXeD.Example.NET"], pathPrefixes: ["/Case"] }),
]);

const cases: Array<{
  name: string;
  host: string;
  path: string;
  headers?: Record<string, string>;
  want: string | undefined;
}> = [
  { name: "exact host, root", host: "app.example.com", path: "/", want: "default/exact" },
  {
    name: "host case and port ignored",
    host: "APP.Example.com:8080",
    path: "/",
    want: "default/exact",
  },
  { name: "trailing dot ignored", host: "app.example.com.", path: "/", want: "default/exact" },
  {
    name: "prefix on a whole segment",
    host: "app.example.com",
    path: "/api/x",
    want: "default/exact-api",
  },
  {
    name: "prefix equal to path",
    host: "app.example.com",
    path: "/api",
    want: "default/exact-api",
  },
  {
    name: "prefix with trailing slash",
    host: "app.example.com",
    path: "/api/",
    want: "default/exact-api",
  },
  { name: "not a partial segment", host: "app.example.com", path: "/apix", want: "default/exact" },
  {
    name: "query is ignored",
    host: "app.example.com",
    path: "/api?x=/api/v2",
    want: "default/exact-api",
  },
  {
    name: "longest prefix wins",
    host: "app.example.com",
    path: "/api/v2/users",
    want: "default/exact-api-v2",
  },
  {
    name: "more header conditions first",
    host: "app.example.com",
    path: "/api/v2/users",
    headers: { "X-Tenant": "blue", "x-debug": "1" },
    want: "default/exact-api-blue-debug",
  },
  {
    name: "header value match",
    host: "app.example.com",
    path: "/api/v2",
    headers: { "x-tenant": "blue" },
    want: "default/exact-api-blue",
  },
  {
    name: "header value is case-sensitive",
    host: "app.example.com",
    path: "/api/v2",
    headers: { "x-tenant": "Blue" },
    want: "default/exact-api-v2",
  },
  {
    name: "repeated header: any value matches",
    host: "app.example.com",
    path: "/api/v2",
    headers: { "x-tenant": "red, blue" },
    want: "default/exact-api-blue",
  },
  {
    name: "header mismatch falls back to a shorter prefix",
    host: "hdr.example.org",
    path: "/x/y",
    headers: { "x-key": "nope", "x-color": "red" },
    want: "default/catch-all-red",
  },
  {
    name: "header match at the only prefix",
    host: "hdr.example.org",
    path: "/x/y",
    headers: { "x-key": "k" },
    want: "default/only-header",
  },
  { name: "no match at all", host: "hdr.example.org", path: "/x/y", want: undefined },
  { name: "wildcard one level", host: "foo.example.com", path: "/", want: "default/wild" },
  { name: "wildcard several levels", host: "a.b.example.com", path: "/", want: "default/wild" },
  {
    name: "most specific wildcard first",
    host: "x.eu.example.com",
    path: "/",
    want: "default/wild-deep",
  },
  { name: "wildcard does not match its own apex", host: "example.com", path: "/", want: undefined },
  {
    name: "exact host without matching path falls back to wildcard",
    host: "app.example.com",
    path: "/",
    want: "default/exact",
  },
  {
    name: "wildcard with path prefix",
    host: "foo.example.com",
    path: "/admin/x",
    want: "default/wild-admin",
  },
  {
    name: "deeper wildcard without prefix beats shallower wildcard with prefix",
    host: "x.eu.example.com",
    path: "/admin",
    want: "default/wild-deep",
  },
  {
    name: "catch-all with header",
    host: "unknown.test",
    path: "/anything",
    headers: { "X-Color": "red" },
    want: "default/catch-all-red",
  },
  { name: "'*' host is a catch-all", host: "whatever.test", path: "/star/1", want: "default/star" },
  { name: "ties broken by key", host: "tie.test", path: "/t/1", want: "ns-a/tie-a" },
  {
    name: "route host case-insensitive",
    host: "mixed.example.net",
    path: "/Case/1",
    want: "default/caps",
  },
  { name: "path is case-sensitive", host: "mixed.example.net", path: "/case/1", want: undefined },
  { name: "empty path is the root", host: "app.example.com", path: "", want: "default/exact" },
  { name: "IPv6 host with port", host: "[::1]:8080", path: "/", want: undefined },
];

for (const c of cases) {
  Deno.test(`routing: ${c.name}`, () => {
    const got = index.lookup(c.host, c.path, headerSourceOf(c.headers ?? {}));
    assert.equal(got?.key, c.want);
  });
}

Deno.test("routing: an exact host whose routes reject the request falls back to wildcards", () => {
  const idx = indexOf([
    obj("exact", { hosts: ["a.example.com"], pathPrefixes: ["/only"] }),
    obj("wild", { hosts: ["*.example.com"] }),
    obj("all", {}),
  ]);
  assert.equal(idx.lookup("a.example.com", "/other", headerSourceOf({}))?.key, "default/wild");
  assert.equal(idx.lookup("a.example.com", "/only/x", headerSourceOf({}))?.key, "default/exact");
  assert.equal(idx.lookup("b.test", "/", headerSourceOf({}))?.key, "default/all");
});

Deno.test("routing: malformed wildcard hosts are reported and never match", () => {
  const idx = indexOf([obj("bad", { hosts: ["foo.*.com", "*.*.com"] })]);
  assert.equal(idx.problems.length, 2);
  assert.equal(idx.lookup("foo.x.com", "/", headerSourceOf({})), undefined);
  assert.equal(idx.lookup("a.b.com", "/", headerSourceOf({})), undefined);
});

Deno.test("routing: a route listed under duplicate hosts is tried once", () => {
  const idx = indexOf([obj("dup", { hosts: ["d.test", "D.test:80"] })]);
  assert.equal(idx.size, 1);
  assert.equal(idx.lookup("d.test", "/", headerSourceOf({}))?.key, "default/dup");
});

Deno.test("routing: an empty table matches nothing", () => {
  const idx = new RouteIndex([]);
  assert.equal(idx.lookup("a", "/", headerSourceOf({})), undefined);
});

Deno.test("routing: hostKey lower-cases and strips ports and the trailing dot", () => {
  const cases: Array<[string, string]> = [
    ["App.Example.COM:8080", "app.example.com"],
    ["example.com.", "example.com"],
    ["example.com.:80", "example.com"],
    ["[::1]:80", "[::1]"],
    ["[::1]", "[::1]"],
    ["[::1", "[::1"],
    ["::1", "::1"],
    ["*.Example.com", "*.example.com"],
    [" spaced.test ", "spaced.test"],
    ["", ""],
    ["a:b:c", "a:b:c"],
    ["UPPER", "upper"],
    ["x.test:", "x.test"],
  ];
  for (const [raw, want] of cases) assert.equal(hostKey(raw), want, JSON.stringify(raw));
});

Deno.test("routing path: decoded, dot segments resolved, fragments and bad escapes refused", () => {
  const cases: Array<[string, string | null]> = [
    ["/admin", "/admin"],
    ["/%61dmin", "/admin"],
    ["/x/../admin", "/admin"],
    ["/./admin", "/admin"],
    ["/%2e/admin", "/admin"],
    ["/x\\..\\admin", "/admin"],
    ["/a/b/..", "/a/"],
    ["/..", "/"],
    ["/a/../../b", "/b"],
    ["/a?q=/../x", "/a"],
    ["/a?b=%zz", "/a"],
    ["/%C3%A9", "/\u00e9"],
    ["/%FF", "/\ufffd"],
    ["/x%2fy/../admin", "/admin"],
    ["/x%2F/../admin", "/admin"],
    ["/admin/..%2fsecret", null],
    ["/admin%5c..%5csecret", null],
    ["/admin#x", null],
    ["/a%zz", null],
    ["/a%4", null],
    ["*", "*"],
  ];
  for (const [target, want] of cases) assert.equal(routingPath(target), want, target);
});

Deno.test("routing path agrees with WHATWG URL, the way a JavaScript app reads its path (property)", () => {
  // Segments built from what changes a path's meaning: dots (plain and escaped), escaped
  // letters and separators, backslashes.
  const segment = fc.array(
    fc.constantFrom(
      "a",
      "b",
      ".",
      "..",
      "%2e",
      "%2E",
      "%2e%2e",
      ".%2e",
      "%61",
      "%41",
      "x.y",
      "",
      "%2f",
      "%2F",
      "%5c",
    ),
    { minLength: 0, maxLength: 3 },
  ).map((parts) => parts.join(""));
  const sep = fc.constantFrom("/", "\\");
  const path = fc.array(fc.tuple(sep, segment), { minLength: 1, maxLength: 8 })
    .map((parts) => "/" + parts.map(([s, seg], i) => (i === 0 ? seg : s + seg)).join(""));
  fc.assert(
    fc.property(path, (p) => {
      // As a server builds it: origin + target (not resolved as a relative reference).
      const whatwg = decodeURIComponent(new URL(`http://h.test${p}`).pathname);
      const ours = routingPath(p);
      // Refused only when the app's own decoded path still holds a dot segment (an escaped
      // separator beside dots), which apps that decode once would read another way.
      if (ours === null) assert.match(whatwg, /(^|[/\\])\.\.?([/\\]|$)/, p);
      else assert.equal(ours, whatwg, p);
    }),
    { numRuns: 5_000 },
  );
});
