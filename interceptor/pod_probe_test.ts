import assert from "node:assert/strict";
import type { V1Pod } from "@kubernetes/client-node";
import { attempt, type ProbeCheck, probePath, probePlanOf } from "./pod_probe.ts";

function pod(container: Record<string, unknown>, status?: Record<string, unknown>): V1Pod {
  return {
    metadata: { name: "p", namespace: "n" },
    spec: { containers: [{ name: "app", image: "x", ...container }] },
    ...(status ? { status } : {}),
  } as V1Pod;
}

Deno.test("probePlanOf: httpGet with a named port, headers and path", () => {
  const plan = probePlanOf(
    pod({
      ports: [{ name: "http", containerPort: 8080 }],
      readinessProbe: {
        httpGet: { path: "ready", port: "http", httpHeaders: [{ name: "X-A", value: "1" }] },
        successThreshold: 2,
        timeoutSeconds: 5,
      },
    }),
    8080,
  );
  assert.ok(!("reason" in plan));
  assert.equal(plan.readiness.kind, "http");
  assert.equal(plan.readiness.port, 8080);
  assert.equal(plan.readiness.path, "/ready");
  assert.deepEqual(plan.readiness.headers, [["X-A", "1"]]);
  assert.equal(plan.readiness.successes, 2);
  assert.equal(plan.readiness.timeoutMs, 1000, "one attempt is bounded by 1 s");
  assert.equal(plan.startup, null);
  assert.equal(plan.notBefore, 0);
});

Deno.test("probePlanOf: what waits for the kubelet, and why", () => {
  const reason = (c: Record<string, unknown>, s?: Record<string, unknown>) => {
    const p = probePlanOf(pod(c, s), 8080);
    return "reason" in p ? p.reason : "";
  };
  assert.match(reason({ readinessProbe: { exec: { command: ["true"] } } }), /exec/);
  assert.match(reason({}), /no readiness probe/);
  assert.match(
    reason({ readinessProbe: { httpGet: { port: 8080, scheme: "HTTPS" } } }),
    /HTTPS/,
  );
  assert.match(reason({ readinessProbe: { httpGet: { port: "web" } } }), /no container port named/);
  assert.match(
    reason({ readinessProbe: { tcpSocket: { port: 8080 }, initialDelaySeconds: 3 } }),
    /waiting for the container to start/,
  );
  assert.match(
    reason({
      readinessProbe: { tcpSocket: { port: 8080 } },
      startupProbe: { exec: { command: ["true"] } },
    }),
    /startup probe is exec/,
  );
});

Deno.test("probePlanOf: a path's control bytes are percent-encoded; a header that is not HTTP waits", async () => {
  const plan = probePlanOf(
    pod({
      readinessProbe: {
        httpGet: { port: 8080, path: "/ok HTTP/1.1\r\nHost: x\r\n\r\nPOST /routing_ping é" },
      },
    }),
    8080,
  );
  assert.ok(!("reason" in plan));
  assert.equal(
    plan.readiness.path,
    "/ok%20HTTP/1.1%0D%0AHost:%20x%0D%0A%0D%0APOST%20/routing_ping%20%C3%A9",
  );
  // On the wire: one request line, nothing smuggled after it.
  const seen: string[] = [];
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await l.accept();
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    seen.push(new TextDecoder().decode(buf.subarray(0, n ?? 0)));
    await conn.write(new TextEncoder().encode("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    conn.close();
  })();
  const ok = await attempt("127.0.0.1", { ...plan.readiness, port: l.addr.port }, {
    signal: new AbortController().signal,
  });
  await served;
  l.close();
  assert.equal(ok, true);
  assert.equal(seen[0]!.split("\r\n\r\n").length, 2, JSON.stringify(seen[0]));
  assert.ok(!seen[0]!.includes("POST /routing_ping"), JSON.stringify(seen[0]));
  for (const h of [{ name: "X-A", value: "1\r\nX-B: 2" }, { name: "Bad Name", value: "1" }]) {
    const p = probePlanOf(
      pod({ readinessProbe: { httpGet: { port: 8080, httpHeaders: [h] } } }),
      8080,
    );
    assert.match("reason" in p ? p.reason : "", /header that is not valid HTTP/, JSON.stringify(h));
  }
});

Deno.test("probePlanOf: initialDelaySeconds counts from the container's start; startup first", () => {
  const started = "2026-12-03T10:00:00Z";
  const plan = probePlanOf(
    pod(
      {
        readinessProbe: { tcpSocket: { port: 8080 }, initialDelaySeconds: 2 },
        startupProbe: { grpc: { port: 9000, service: "s" } },
      },
      { containerStatuses: [{ name: "app", state: { running: { startedAt: started } } }] },
    ),
    8080,
  );
  assert.ok(!("reason" in plan));
  assert.equal(plan.notBefore, new Date(started).getTime() + 2000);
  assert.equal(plan.startup?.kind, "grpc");
  assert.equal(plan.startup?.service, "s");
});

function check(kind: ProbeCheck["kind"], port: number, path = "/"): ProbeCheck {
  return { kind, port, path, headers: [], service: "", timeoutMs: 1000, successes: 1 };
}

Deno.test("attempt: HTTP status 200-399 passes (redirects not followed), others fail", async () => {
  const seen: Array<{ path: string; ua: string | null }> = [];
  await using server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    seen.push({ path, ua: req.headers.get("user-agent") });
    if (path === "/ok") return new Response("ok");
    if (path === "/moved") return new Response(null, { status: 302, headers: { location: "/x" } });
    return new Response("starting", { status: 503 });
  });
  const port = server.addr.port;
  const signal = new AbortController().signal;
  assert.equal(await attempt("127.0.0.1", check("http", port, "/ok"), { signal }), true);
  assert.equal(await attempt("127.0.0.1", check("http", port, "/moved"), { signal }), true);
  assert.equal(await attempt("127.0.0.1", check("http", port, "/no"), { signal }), false);
  assert.deepEqual(seen.map((s) => s.path), ["/ok", "/moved", "/no"]);
  assert.match(seen[0]!.ua ?? "", /^kube-probe\//);
});

Deno.test("attempt: TCP passes on connect, fails on a closed port; never throws", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = (l.addr as Deno.NetAddr).port;
  const signal = new AbortController().signal;
  assert.equal(await attempt("127.0.0.1", check("tcp", open), { signal }), true);
  l.close();
  assert.equal(await attempt("127.0.0.1", check("tcp", open), { signal }), false);
  assert.equal(await attempt("127.0.0.1", check("http", open), { signal }), false);
});

Deno.test("attempt: gRPC passes on SERVING for the service asked", async () => {
  const grpc = await import("@grpc/grpc-js");
  const { Buffer } = await import("node:buffer");
  const asked: string[] = [];
  const server = new grpc.Server();
  server.addService({
    Check: {
      path: "/grpc.health.v1.Health/Check",
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Uint8Array) => Buffer.from(b),
      requestDeserialize: (b: Uint8Array) => new Uint8Array(b),
      responseSerialize: (b: Uint8Array) => Buffer.from(b),
      responseDeserialize: (b: Uint8Array) => new Uint8Array(b),
    },
  }, {
    Check: (call: { request: Uint8Array }, cb: (e: null, r: Uint8Array) => void) => {
      const name = new TextDecoder().decode(call.request.subarray(2));
      asked.push(name);
      cb(null, Uint8Array.from([8, name === "up" ? 1 : 2]));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (e, p) => (e ? reject(e) : resolve(p)),
    )
  );
  try {
    const signal = new AbortController().signal;
    const c = (service: string) => ({ ...check("grpc", port), service });
    assert.equal(await attempt("127.0.0.1", c("up"), { signal }), true);
    assert.equal(await attempt("127.0.0.1", c("down"), { signal }), false);
    assert.deepEqual(asked, ["up", "down"]);
  } finally {
    server.forceShutdown();
  }
});

Deno.test("probePath: as the kubelet's URL writes it; bounded; odd headers as the kubelet treats them", () => {
  assert.equal(probePath("healthz"), "/healthz");
  assert.equal(probePath("/a#frag?x"), "/a");
  assert.equal(probePath("/a%zz%41?q=1&r=%2"), "/a%25zz%41?q=1&r=%252");
  assert.equal(probePath('/a"<>{}|\\^`b'), "/a%22%3C%3E%7B%7D%7C%5C%5E%60b");
  assert.equal(probePath("/\u{1F600}"), "/%F0%9F%98%80");
  assert.equal(probePath("/\ud800"), null);
  const long = probePlanOf(
    pod({ readinessProbe: { httpGet: { port: 8080, path: "/" + "\u4e00".repeat(3_000) } } }),
    8080,
  );
  assert.match("reason" in long ? long.reason : "", /longer than 8192 bytes/);
  const plan = probePlanOf(
    pod({
      readinessProbe: {
        httpGet: {
          port: 8080,
          httpHeaders: [
            { name: "Host", value: "a.example" },
            { name: "Host", value: "b.example" },
            { name: "Transfer-Encoding", value: "chunked" },
            { name: "Content-Length", value: "5" },
            { name: "X-Ok", value: "1" },
          ],
        },
      },
    }),
    8080,
  );
  assert.ok(!("reason" in plan));
  assert.deepEqual(plan.readiness.headers, [["Host", "a.example"], ["X-Ok", "1"]]);
  const big = probePlanOf(
    pod({
      readinessProbe: {
        httpGet: { port: 8080, httpHeaders: [{ name: "X-Big", value: "v".repeat(17_000) }] },
      },
    }),
    8080,
  );
  assert.match("reason" in big ? big.reason : "", /headers are longer/);
});
