/**
 * k8s/crd/interceptorroutes.yaml against a real kube-apiserver (tests/cluster,
 * control plane only; the cluster installs every CRD in k8s/crd). Table
 * driven: each case creates one InterceptorRoute in a fresh namespace and is
 * either accepted (the stored spec is the input plus the server's defaults)
 * or refused with a message matching the case's pattern.
 */
import assert from "node:assert/strict";
import { KubeError, startCluster } from "./cluster/mod.ts";

const GROUP_VERSION = "/apis/http.keda.sh/v1beta1";
const CRD_PATH =
  "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/interceptorroutes.http.keda.sh";

type Json = Record<string, unknown>;

type Case =
  | { name: string; spec: Json; accept: true }
  | { name: string; spec: Json; refuse: RegExp };

function routesPath(ns: string, name = ""): string {
  return `${GROUP_VERSION}/namespaces/${ns}/interceptorroutes${name ? `/${name}` : ""}`;
}

function route(ns: string, spec: Json, name = "route"): Json {
  return {
    apiVersion: "http.keda.sh/v1beta1",
    kind: "InterceptorRoute",
    metadata: { name, namespace: ns },
    spec,
  };
}

const TARGET = { service: "app", port: 8080 };
const CONCURRENCY = { concurrency: { targetValue: 10 } };

/** A valid spec with `extra` merged in at the top level. */
function spec(extra: Json = {}): Json {
  return { target: TARGET, scalingMetric: CONCURRENCY, ...extra };
}

/** A valid spec whose placeholder response is `response`. */
function placeholder(response: Json): Json {
  return spec({ coldStart: { placeholder: { response } } });
}

/** A valid spec with one static route (path /healthz) answering `response`. */
function staticRoute(response: Json, extra: Json = {}): Json {
  return spec({
    staticRoutes: [{ rules: [{ paths: [{ value: "/healthz" }] }], response, ...extra }],
  });
}

/** A valid spec with one routing rule. */
function rule(r: Json): Json {
  return spec({ rules: [r] });
}

/** What the server stores for `input`: the input plus the CRD's defaults. */
function withDefaults(input: Json): Json {
  const out = structuredClone(input) as {
    scalingMetric?: { requestRate?: { window?: string; granularity?: string } };
    staticRoutes?: Array<{ responseMode?: string }>;
  };
  const rate = out.scalingMetric?.requestRate;
  if (rate) {
    rate.window ??= "1m";
    rate.granularity ??= "1s";
  }
  for (const r of out.staticRoutes ?? []) r.responseMode ??= "WhenUnavailable";
  return out as Json;
}

/** The complete example of the Go add-on's documentation, every field in use. */
const COMPLETE: Json = {
  target: { service: "my-app-svc", port: 8080 },
  rules: [
    {
      hosts: ["app.example.com", "*.app.example.com"],
      paths: [{ value: "/api" }, { value: "/v2" }],
      headers: [{ name: "X-Tenant", value: "blue" }, { name: "X-Canary" }],
    },
    { hosts: ["*"] },
  ],
  scalingMetric: {
    concurrency: { targetValue: 100 },
    requestRate: { targetValue: 50 },
  },
  timeouts: { readiness: "5s", request: "1m30s", responseHeader: "500ms" },
  coldStart: {
    fallback: { service: { name: "fallback-svc", portName: "http" } },
    placeholder: {
      response: {
        statusCode: 503,
        bodyFromConfigMap: { name: "placeholder-page", key: "index.html" },
        headers: { Refresh: "5", "Cache-Control": "no-store" },
      },
    },
  },
  staticRoutes: [
    {
      rules: [{ paths: [{ value: "/maintenance" }] }],
      responseMode: "Always",
      response: {
        statusCode: 503,
        body: "<h1>Under maintenance</h1>",
        headers: { "Content-Type": "text/html" },
      },
    },
    {
      rules: [{ paths: [{ value: "/healthz" }] }, { hosts: ["health.example.com"] }],
      response: { statusCode: 200, body: "OK" },
    },
  ],
};

const CASES: Case[] = [
  // Accepted.
  { name: "the complete example of the Go docs", spec: COMPLETE, accept: true },
  { name: "minimal: target and scalingMetric.concurrency", spec: spec(), accept: true },
  {
    name: "no rules (catch-all), request rate with default window and granularity",
    spec: {
      target: { service: "app", portName: "http" },
      scalingMetric: { requestRate: { targetValue: 5 } },
    },
    accept: true,
  },
  { name: "an empty rules list", spec: spec({ rules: [] }), accept: true },
  {
    name: "request rate with its own window and granularity",
    spec: spec({
      scalingMetric: { requestRate: { targetValue: 5, window: "2m30s", granularity: "250ms" } },
    }),
    accept: true,
  },
  {
    name: "window equal to granularity",
    spec: spec({
      scalingMetric: { requestRate: { targetValue: 5, window: "10s", granularity: "10s" } },
    }),
    accept: true,
  },
  {
    name: "durations in every Go spelling, 0 and 0s included",
    spec: spec({ timeouts: { readiness: "0", request: "1.5h", responseHeader: "250\u00b5s" } }),
    accept: true,
  },
  {
    name: "timeouts of 0s (deadline disabled) and a sign",
    spec: spec({ timeouts: { readiness: "0s", request: "+30s", responseHeader: "1h2m3.5s" } }),
    accept: true,
  },
  {
    name: "placeholder with inline body, any-case header names, a tab in a value",
    spec: placeholder({
      statusCode: 200,
      body: "x".repeat(32768),
      headers: { "content-type": "text/plain", "X-Note": "a\tb", "x-!#$%&'*+.^_`|~": "1" },
    }),
    accept: true,
  },
  {
    name: "placeholder with no body at all and bodyFromConfigMap without key",
    spec: spec({
      coldStart: { placeholder: { response: {} } },
      staticRoutes: [{
        rules: [{ paths: [{ value: "/" }] }],
        response: { bodyFromConfigMap: { name: "site" } },
      }],
    }),
    accept: true,
  },
  {
    name: "fallback only, with a port number",
    spec: spec({ coldStart: { fallback: { service: { name: "other", port: 80 } } } }),
    accept: true,
  },
  {
    name: "64 hosts, the most a rule takes",
    spec: rule({ hosts: Array.from({ length: 64 }, (_, i) => `h${i}.example.com`) }),
    accept: true,
  },

  // target
  {
    name: "target with port and portName",
    spec: { ...spec(), target: { service: "app", port: 80, portName: "http" } },
    refuse: /target: set exactly one of port or portName/,
  },
  {
    name: "target with neither port nor portName",
    spec: { ...spec(), target: { service: "app" } },
    refuse: /target: set exactly one of port or portName/,
  },
  {
    name: "target port 0",
    spec: { ...spec(), target: { service: "app", port: 0 } },
    refuse: /spec\.target\.port: Invalid value: 0: .*greater than or equal to 1/,
  },
  {
    name: "target port 65536",
    spec: { ...spec(), target: { service: "app", port: 65536 } },
    refuse: /spec\.target\.port: Invalid value: 65536: .*less than or equal to 65535/,
  },
  {
    name: "target with an empty service",
    spec: { ...spec(), target: { service: "", port: 80 } },
    refuse: /spec\.target\.service: Invalid value: "": .*at least 1 chars long/,
  },
  {
    name: "target with an empty portName",
    spec: { ...spec(), target: { service: "app", portName: "" } },
    refuse: /spec\.target\.portName: Invalid value: "": .*at least 1 chars long/,
  },
  {
    name: "target without service",
    spec: { ...spec(), target: { port: 80 } },
    refuse: /spec\.target\.service: Required value/,
  },
  {
    name: "no target",
    spec: { scalingMetric: CONCURRENCY },
    refuse: /spec\.target: Required value/,
  },

  // scalingMetric
  {
    name: "no scalingMetric",
    spec: { target: TARGET },
    refuse: /spec\.scalingMetric: Required value/,
  },
  {
    name: "scalingMetric empty",
    spec: spec({ scalingMetric: {} }),
    refuse: /scalingMetric: set concurrency, requestRate or both/,
  },
  {
    name: "concurrency targetValue 0",
    spec: spec({ scalingMetric: { concurrency: { targetValue: 0 } } }),
    refuse:
      /spec\.scalingMetric\.concurrency\.targetValue: Invalid value: 0: .*greater than or equal to 1/,
  },
  {
    name: "concurrency without targetValue",
    spec: spec({ scalingMetric: { concurrency: {} } }),
    refuse: /spec\.scalingMetric\.concurrency\.targetValue: Required value/,
  },
  {
    name: "requestRate targetValue 0",
    spec: spec({ scalingMetric: { requestRate: { targetValue: 0 } } }),
    refuse:
      /spec\.scalingMetric\.requestRate\.targetValue: Invalid value: 0: .*greater than or equal to 1/,
  },
  {
    name: "requestRate window that is not a duration",
    spec: spec({ scalingMetric: { requestRate: { targetValue: 5, window: "1 minute" } } }),
    refuse: /requestRate\.window: must be a duration such as 30s, 1m or 500ms/,
  },
  {
    name: "requestRate granularity without a unit",
    spec: spec({ scalingMetric: { requestRate: { targetValue: 5, granularity: "1" } } }),
    refuse: /requestRate\.granularity: must be a duration such as 30s, 1m or 500ms/,
  },
  {
    name: "requestRate granularity 0s",
    spec: spec({ scalingMetric: { requestRate: { targetValue: 5, granularity: "0s" } } }),
    refuse: /requestRate\.granularity: must be greater than 0/,
  },
  {
    name: "requestRate granularity negative",
    spec: spec({ scalingMetric: { requestRate: { targetValue: 5, granularity: "-1s" } } }),
    refuse: /requestRate\.granularity: must be greater than 0/,
  },
  {
    name: "requestRate window shorter than granularity",
    spec: spec({
      scalingMetric: { requestRate: { targetValue: 5, window: "1s", granularity: "10s" } },
    }),
    refuse: /requestRate: window must be at least granularity/,
  },
  {
    name: "requestRate window shorter than the default granularity",
    spec: spec({ scalingMetric: { requestRate: { targetValue: 5, window: "500ms" } } }),
    refuse: /requestRate: window must be at least granularity/,
  },

  // timeouts
  {
    name: "timeouts.readiness that is not a duration",
    spec: spec({ timeouts: { readiness: "soon" } }),
    refuse: /timeouts\.readiness: must be a duration such as 30s, 1m or 500ms/,
  },
  {
    name: "timeouts.responseHeader without a unit",
    spec: spec({ timeouts: { responseHeader: "30" } }),
    refuse: /timeouts\.responseHeader: must be a duration such as 30s, 1m or 500ms/,
  },
  {
    name: "timeouts.request in days (Go has no d unit)",
    spec: spec({ timeouts: { request: "1d" } }),
    refuse: /timeouts\.request: must be a duration such as 30s, 1m or 500ms/,
  },
  {
    // Parses by the pattern but overflows Go's time.Duration (about 292 years):
    // CEL's duration() fails, and the server reports that with the field.
    name: "timeouts.request beyond Go's range",
    spec: spec({ timeouts: { request: "9999999999h" } }),
    refuse: /spec\.timeouts\.request: Invalid value: "string": .*timeouts\.request: /,
  },
  {
    name: "timeouts.request negative",
    spec: spec({ timeouts: { request: "-5s" } }),
    refuse: /timeouts\.request: must not be negative/,
  },
  {
    name: "timeouts.readiness negative",
    spec: spec({ timeouts: { readiness: "-1m" } }),
    refuse: /timeouts\.readiness: must not be negative/,
  },

  // coldStart
  {
    name: "coldStart empty",
    spec: spec({ coldStart: {} }),
    refuse: /coldStart: set fallback, placeholder or both/,
  },
  {
    name: "fallback without service",
    spec: spec({ coldStart: { fallback: {} } }),
    refuse: /spec\.coldStart\.fallback\.service: Required value/,
  },
  {
    name: "fallback service with port and portName",
    spec: spec({ coldStart: { fallback: { service: { name: "b", port: 80, portName: "http" } } } }),
    refuse: /coldStart\.fallback\.service: set exactly one of port or portName/,
  },
  {
    name: "fallback service with neither port nor portName",
    spec: spec({ coldStart: { fallback: { service: { name: "b" } } } }),
    refuse: /coldStart\.fallback\.service: set exactly one of port or portName/,
  },
  {
    name: "fallback service port 65536",
    spec: spec({ coldStart: { fallback: { service: { name: "b", port: 65536 } } } }),
    refuse: /spec\.coldStart\.fallback\.service\.port: Invalid value: 65536/,
  },
  {
    name: "fallback service without name",
    spec: spec({ coldStart: { fallback: { service: { port: 80 } } } }),
    refuse: /spec\.coldStart\.fallback\.service\.name: Required value/,
  },
  {
    name: "placeholder without response",
    spec: spec({ coldStart: { placeholder: {} } }),
    refuse: /spec\.coldStart\.placeholder\.response: Required value/,
  },

  // StaticResponse (in the placeholder and in a static route: two copies of the schema)
  {
    name: "statusCode 99",
    spec: placeholder({ statusCode: 99 }),
    refuse:
      /spec\.coldStart\.placeholder\.response\.statusCode: Invalid value: 99: .*greater than or equal to 100/,
  },
  {
    name: "statusCode 600",
    spec: placeholder({ statusCode: 600 }),
    refuse:
      /spec\.coldStart\.placeholder\.response\.statusCode: Invalid value: 600: .*less than or equal to 599/,
  },
  {
    name: "static route statusCode 600",
    spec: staticRoute({ statusCode: 600 }),
    refuse: /spec\.staticRoutes\[0\]\.response\.statusCode: Invalid value: 600/,
  },
  {
    name: "body of 32769 characters",
    spec: placeholder({ body: "x".repeat(32769) }),
    refuse: /spec\.coldStart\.placeholder\.response\.body: Too long/,
  },
  {
    name: "static route body of 32769 characters",
    spec: staticRoute({ body: "x".repeat(32769) }),
    refuse: /spec\.staticRoutes\[0\]\.response\.body: Too long/,
  },
  {
    name: "body and bodyFromConfigMap",
    spec: placeholder({ body: "hi", bodyFromConfigMap: { name: "page" } }),
    refuse: /spec\.coldStart\.placeholder\.response: .*set body or bodyFromConfigMap, not both/,
  },
  {
    name: "static route with body and bodyFromConfigMap",
    spec: staticRoute({ body: "hi", bodyFromConfigMap: { name: "page" } }),
    refuse: /spec\.staticRoutes\[0\]\.response: .*set body or bodyFromConfigMap, not both/,
  },
  {
    name: "bodyFromConfigMap without name",
    spec: placeholder({ bodyFromConfigMap: { key: "index.html" } }),
    refuse: /spec\.coldStart\.placeholder\.response\.bodyFromConfigMap\.name: Required value/,
  },
  {
    name: "bodyFromConfigMap with an empty name",
    spec: staticRoute({ bodyFromConfigMap: { name: "" } }),
    refuse:
      /spec\.staticRoutes\[0\]\.response\.bodyFromConfigMap\.name: Invalid value: "": .*at least 1 chars long/,
  },
  {
    name: "header name with a space",
    spec: placeholder({ headers: { "Bad Header": "x" } }),
    refuse: /headers: "Bad Header" is not a valid header name; use letters, digits and/,
  },
  {
    name: "header name with a colon, in a static route",
    spec: staticRoute({ headers: { "X-A:": "x" } }),
    refuse: /spec\.staticRoutes\[0\]\.response\.headers: .*"X-A:" is not a valid header name/,
  },
  {
    name: "empty header name",
    spec: placeholder({ headers: { "": "x" } }),
    refuse: /headers: "" is not a valid header name/,
  },
  {
    name: "header value with CR LF (response splitting)",
    spec: placeholder({ headers: { "X-Note": "a\r\nSet-Cookie: evil=1" } }),
    refuse:
      /spec\.coldStart\.placeholder\.response\.headers\[X-Note\]: .*a header value must not contain control characters/,
  },
  {
    name: "header value with a bare LF, in a static route",
    spec: staticRoute({ headers: { "X-Note": "a\nb" } }),
    refuse:
      /spec\.staticRoutes\[0\]\.response\.headers\[X-Note\]: .*a header value must not contain control characters/,
  },
  {
    name: "header value with NUL",
    spec: placeholder({ headers: { "X-Note": "a\u0000b" } }),
    refuse:
      /spec\.coldStart\.placeholder\.response\.headers\[X-Note\]: .*a header value must not contain control characters/,
  },
  {
    name: "header value with an escape character (any control but tab)",
    spec: placeholder({ headers: { "X-Note": "a\u001bb" } }),
    refuse: /headers\[X-Note\]: .*a header value must not contain control characters/,
  },
  {
    name: "header value with a tab is fine",
    spec: placeholder({ headers: { "X-Note": "a\tb" } }),
    accept: true,
  },
  {
    name: "the same header name in two cases",
    spec: placeholder({ headers: { "Content-Type": "text/html", "content-type": "text/plain" } }),
    refuse: /a header name is set twice \(names are case-insensitive\); keep one/,
  },
  {
    name: "header value longer than 4000 characters",
    spec: placeholder({ headers: { "X-Note": "x".repeat(4001) } }),
    refuse: /spec\.coldStart\.placeholder\.response\.headers\.X-Note: Too long/,
  },
  {
    name: "more than 32 headers",
    spec: placeholder({
      headers: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`X-H${i}`, "1"])),
    }),
    refuse:
      /spec\.coldStart\.placeholder\.response\.headers: Too many: 33: must have at most 32 items/,
  },
  {
    name: "Content-Length header",
    spec: placeholder({ headers: { "Content-Length": "5" } }),
    refuse: /Content-Length is set by the interceptor from the body; remove it from headers/,
  },
  {
    name: "TRANSFER-ENCODING header (any case), in a static route",
    spec: staticRoute({ headers: { "TRANSFER-ENCODING": "chunked" } }),
    refuse:
      /spec\.staticRoutes\[0\]\.response\.headers: .*TRANSFER-ENCODING is set by the interceptor from the body; remove it from headers/,
  },
  ...["connection", "Keep-Alive", "Upgrade", "TE", "Trailer", "Proxy-Connection"].map((h) => ({
    name: `${h} header`,
    spec: placeholder({ headers: { [h]: "x" } }),
    refuse: new RegExp(`${h} is set by the interceptor from the body; remove it from headers`),
  })),

  // staticRoutes
  {
    name: "static route with an empty rules list",
    spec: spec({ staticRoutes: [{ rules: [], response: { body: "OK" } }] }),
    refuse: /spec\.staticRoutes\[0\]\.rules: Invalid value: 0: .*should have at least 1 items/,
  },
  {
    name: "static route without rules",
    spec: spec({ staticRoutes: [{ response: { body: "OK" } }] }),
    refuse: /spec\.staticRoutes\[0\]\.rules: Required value/,
  },
  {
    name: "static route without response",
    spec: spec({ staticRoutes: [{ rules: [{ paths: [{ value: "/healthz" }] }] }] }),
    refuse: /spec\.staticRoutes\[0\]\.response: Required value/,
  },
  {
    name: "static route responseMode Sometimes",
    spec: staticRoute({ body: "OK" }, { responseMode: "Sometimes" }),
    refuse:
      /spec\.staticRoutes\[0\]\.responseMode: Unsupported value: "Sometimes": supported values: "Always", "WhenUnavailable"/,
  },
  {
    name: "static route rule with duplicate hosts",
    spec: spec({
      staticRoutes: [{ rules: [{ hosts: ["a.example.com", "a.example.com"] }], response: {} }],
    }),
    refuse: /spec\.staticRoutes\[0\]\.rules\[0\]\.hosts\[1\]: Duplicate value: "a\.example\.com"/,
  },
  {
    name: "more than 64 static routes",
    spec: spec({
      staticRoutes: Array.from({ length: 65 }, (_, i) => ({
        rules: [{ paths: [{ value: `/s${i}` }] }],
        response: {},
      })),
    }),
    refuse: /spec\.staticRoutes: Too many: 65: must have at most 64 items/,
  },

  // rules
  {
    name: "rule with duplicate hosts (hosts is a set)",
    spec: rule({ hosts: ["a.example.com", "b.example.com", "a.example.com"] }),
    refuse: /spec\.rules\[0\]\.hosts\[2\]: Duplicate value: "a\.example\.com"/,
  },
  {
    name: "rule with more than 64 hosts",
    spec: rule({ hosts: Array.from({ length: 65 }, (_, i) => `h${i}.example.com`) }),
    refuse: /spec\.rules\[0\]\.hosts: Too many: 65: must have at most 64 items/,
  },
  {
    name: "rule with an empty path value",
    spec: rule({ paths: [{ value: "" }] }),
    refuse: /spec\.rules\[0\]\.paths\[0\]\.value: Invalid value: "": .*at least 1 chars long/,
  },
  {
    name: "rule with a path without value",
    spec: rule({ paths: [{}] }),
    refuse: /spec\.rules\[0\]\.paths\[0\]\.value: Required value/,
  },
  {
    name: "rule with duplicate header names",
    spec: rule({ headers: [{ name: "X-A", value: "1" }, { name: "X-A", value: "2" }] }),
    refuse: /spec\.rules\[0\]\.headers\[1\]: Duplicate value: .*"name":"X-A"/,
  },
  {
    name: "rule with an empty header name",
    spec: rule({ headers: [{ name: "" }] }),
    refuse: /spec\.rules\[0\]\.headers\[0\]\.name: Invalid value: "": .*at least 1 chars long/,
  },
  {
    name: "rule with a header without name",
    spec: rule({ headers: [{ value: "1" }] }),
    refuse: /spec\.rules\[0\]\.headers\[0\]\.name: Required value/,
  },
  {
    name: "more than 64 rules",
    spec: spec({ rules: Array.from({ length: 65 }, (_, i) => ({ hosts: [`h${i}.example.com`] })) }),
    refuse: /spec\.rules: Too many: 65: must have at most 64 items/,
  },
];

interface Table {
  columnDefinitions: Array<{ name: string }>;
  rows: Array<{ cells: unknown[] }>;
}

Deno.test({
  name: "InterceptorRoute CRD: accepts and refuses manifests on a real kube-apiserver",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await using cluster = await startCluster({ node: false });
    const client = cluster.client;

    await t.step(
      "the CRD: names, scope, version, status subresource, printer columns",
      async () => {
        const crd = await client.get<{
          spec: {
            group: string;
            scope: string;
            names: Json;
            versions: Array<{
              name: string;
              served: boolean;
              storage: boolean;
              subresources?: Json;
              additionalPrinterColumns?: Array<{ name: string; type: string; jsonPath: string }>;
            }>;
          };
          status?: { conditions?: Array<{ type: string; status: string }> };
        }>(CRD_PATH);
        assert.equal(crd.spec.group, "http.keda.sh");
        assert.equal(crd.spec.scope, "Namespaced");
        assert.deepEqual(crd.spec.names, {
          kind: "InterceptorRoute",
          listKind: "InterceptorRouteList",
          plural: "interceptorroutes",
          singular: "interceptorroute",
          shortNames: ["ir"],
        });
        assert.equal(crd.spec.versions.length, 1);
        const v = crd.spec.versions[0]!;
        assert.equal(v.name, "v1beta1");
        assert.ok(v.served && v.storage, "v1beta1 is served and stored");
        assert.deepEqual(v.subresources, { status: {} });
        assert.deepEqual(v.additionalPrinterColumns, [
          { name: "TargetService", type: "string", jsonPath: ".spec.target.service" },
          {
            name: "Ready",
            type: "string",
            jsonPath: '.status.conditions[?(@.type=="Ready")].status',
          },
          { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
        ]);
        assert.ok(
          crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True"),
          "the CRD is Established",
        );
        const discovery = await client.get<{
          resources: Array<
            { name: string; namespaced: boolean; kind: string; shortNames?: string[] }
          >;
        }>(GROUP_VERSION);
        const res = discovery.resources.find((r) => r.name === "interceptorroutes");
        assert.ok(res, "discovery lists interceptorroutes");
        assert.equal(res.namespaced, true);
        assert.equal(res.kind, "InterceptorRoute");
        assert.deepEqual(res.shortNames, ["ir"]);
        assert.ok(discovery.resources.some((r) => r.name === "interceptorroutes/status"));
      },
    );

    let accepted = 0;
    let refused = 0;
    for (const c of CASES) {
      await t.step(`${"accept" in c ? "accepts" : "refuses"}: ${c.name}`, async () => {
        const ns = await cluster.createNamespace("ir-crd");
        let created: { spec: Json };
        try {
          created = await client.create<{ spec: Json }>(routesPath(ns), route(ns, c.spec));
        } catch (e) {
          if ("accept" in c) throw e;
          assert.ok(e instanceof KubeError, `not an API error: ${e}`);
          assert.equal(e.status, 422, e.message);
          assert.match(e.message, c.refuse);
          refused++;
          return;
        }
        if ("refuse" in c) {
          throw new Error(`the API server accepted it; expected a refusal matching ${c.refuse}`);
        }
        const want = withDefaults(c.spec);
        assert.deepEqual(created.spec, want, "the created object is the input plus defaults");
        const read = await client.get<{ spec: Json }>(routesPath(ns, "route"));
        assert.deepEqual(read.spec, want, "the stored object is the input plus defaults");
        accepted++;
      });
    }

    await t.step("every case ran", () => {
      assert.equal(accepted + refused, CASES.length);
    });

    await t.step("the defaults the server applies", async () => {
      const ns = await cluster.createNamespace("ir-crd");
      const created = await client.create<{
        spec: {
          scalingMetric: { requestRate: { window: string; granularity: string } };
          staticRoutes: Array<{ responseMode: string }>;
        };
      }>(
        routesPath(ns),
        route(ns, {
          target: TARGET,
          scalingMetric: { requestRate: { targetValue: 5 } },
          staticRoutes: [
            { rules: [{ paths: [{ value: "/a" }] }], response: {} },
            { rules: [{ paths: [{ value: "/b" }] }], response: {}, responseMode: "Always" },
          ],
        }),
      );
      assert.equal(created.spec.scalingMetric.requestRate.window, "1m");
      assert.equal(created.spec.scalingMetric.requestRate.granularity, "1s");
      assert.equal(created.spec.staticRoutes[0]!.responseMode, "WhenUnavailable");
      assert.equal(created.spec.staticRoutes[1]!.responseMode, "Always");
    });

    await t.step("status subresource and the printer columns the server renders", async () => {
      const ns = await cluster.createNamespace("ir-crd");
      await client.create(routesPath(ns), route(ns, spec(), "shown"));
      const condition = {
        type: "Ready",
        status: "True",
        reason: "Reconciled",
        message: "",
        lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
        observedGeneration: 1,
      };
      // A condition lacking metav1.Condition's required fields is refused.
      await assert.rejects(
        client.patch(routesPath(ns, "shown") + "/status", {
          status: { conditions: [{ type: "Ready", status: "True" }] },
        }),
        (e: Error) => /status\.conditions\[0\]\.reason: Required value/.test(e.message),
      );
      // Through /status only status changes; the spec stays as it was.
      const patched = await client.patch<{ spec: Json; status: { conditions: Json[] } }>(
        routesPath(ns, "shown") + "/status",
        { spec: { target: { service: "other", port: 1 } }, status: { conditions: [condition] } },
      );
      assert.deepEqual(patched.status.conditions, [condition]);
      assert.deepEqual((patched.spec.target as Json).service, "app");

      const { caPem, certPem, keyPem, token } = client.credentials;
      using http = Deno.createHttpClient({
        caCerts: caPem ? [caPem] : undefined,
        ...(certPem && keyPem ? { cert: certPem, key: keyPem } : {}),
      });
      const res = await fetch(`${client.server}${routesPath(ns)}`, {
        client: http,
        headers: {
          accept: "application/json;as=Table;v=v1;g=meta.k8s.io",
          ...(token ? { authorization: `Bearer ${token.trim()}` } : {}),
        },
      });
      assert.equal(res.status, 200, await res.clone().text());
      const table = await res.json() as Table;
      const names = table.columnDefinitions.map((d) => d.name);
      assert.deepEqual(names, ["Name", "TargetService", "Ready", "Age"]);
      assert.equal(table.rows.length, 1);
      const [name, service, ready, age] = table.rows[0]!.cells;
      assert.equal(name, "shown");
      assert.equal(service, "app");
      assert.equal(ready, "True");
      assert.match(String(age), /^\d+s$/);
    });
  },
});
