/**
 * The dashboard page: one self-contained document (inline CSS and script,
 * nothing fetched from elsewhere) that follows /dashboard/events. Every value
 * from the cluster (hosts and paths are written by users) goes into the DOM
 * through textContent, never as markup.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>KEDA HTTP add-on - dashboard</title>
<style>
  :root { --fg: #1d2330; --dim: #667085; --line: #e3e6ec; --bg: #f6f7f9; --ok: #1a7f37;
    --warn: #b35900; --bad: #c62828; --wait: #2f6fdb; --pod: #8a63d2; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 13px/1.35 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
    color: var(--fg); background: var(--bg); }
  header { display: flex; align-items: baseline; gap: 16px; padding: 10px 16px;
    background: #fff; border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 1; }
  header h1 { font-size: 16px; margin: 0; }
  #conn { font-weight: 600; }
  #conn.live { color: var(--ok); } #conn.down { color: var(--bad); }
  .dim { color: var(--dim); }
  main { padding: 10px 16px 24px; display: grid; gap: 14px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 6px; overflow: auto; }
  section h2 { font-size: 13px; margin: 0; padding: 8px 10px; border-bottom: 1px solid var(--line);
    display: flex; gap: 10px; align-items: baseline; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line);
    vertical-align: top; white-space: nowrap; }
  th { font-weight: 600; color: var(--dim); font-size: 12px; background: #fafbfc; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.wrap { white-space: normal; max-width: 340px; overflow-wrap: anywhere; }
  tr:last-child td { border-bottom: 0; }
  .badge { display: inline-block; padding: 0 6px; border-radius: 9px; font-size: 11px;
    border: 1px solid var(--line); color: var(--dim); margin-left: 6px; }
  .held-on { color: var(--warn); font-weight: 700; }
  .ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); }
  .waiting { color: var(--wait); font-weight: 600; }
  .rule { display: block; }
  .bar { display: flex; width: 220px; height: 10px; border-radius: 3px; overflow: hidden;
    background: var(--line); margin-top: 3px; }
  .bar span { display: block; height: 100%; }
  .seg-wait { background: var(--wait); } .seg-pod { background: var(--pod); }
  .legend span { margin-right: 10px; }
  .swatch { display: inline-block; width: 9px; height: 9px; border-radius: 2px; margin-right: 4px; }
  .empty { padding: 10px; color: var(--dim); }
</style>
</head>
<body>
<header>
  <h1>KEDA HTTP add-on</h1>
  <span id="conn" class="down">connecting</span>
  <span class="dim">updated <span id="updated">never</span></span>
  <span class="dim" id="summary"></span>
</header>
<main>
  <section>
    <h2>Routes <span class="dim">in flight and held summed over all interceptors</span></h2>
    <table id="routes">
      <thead><tr>
        <th>route</th><th>rules (hosts / paths / headers)</th><th>target</th>
        <th class="num">in flight</th><th class="num">held</th><th class="num">req/s</th>
        <th class="num">replicas ready / pods</th>
        <th class="num" title="What KEDA's HPA computes from this scaler's metrics: the largest ceil(value / target), within the HTTPScaledObject's min/max; KEDA keeps 1 while active and goes to 0 after its cooldown">desired (HPA)</th>
        <th>metrics told to KEDA</th>
      </tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Cold starts <span class="dim">the last ones, newest first</span>
      <span class="legend dim"><span><i class="swatch seg-wait"></i>waiting for a pod</span><span><i class="swatch seg-pod"></i>pod starting until ready</span></span></h2>
    <table id="coldstarts">
      <thead><tr>
        <th>started</th><th>route</th><th>outcome</th><th class="num">duration</th>
        <th>where the time went</th><th class="num">held</th><th>interceptors</th>
      </tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Interceptor replicas</h2>
    <table id="interceptors">
      <thead><tr>
        <th>pod</th><th>admin URL</th><th>ready</th><th>health</th>
        <th class="num">last seen</th><th>route status</th><th>last error</th>
      </tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script>
"use strict";
(function () {
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function ms(n) {
    if (n === undefined || n === null) return "-";
    if (n < 1000) return Math.round(n) + " ms";
    if (n < 60000) return (n / 1000).toFixed(n < 10000 ? 2 : 1) + " s";
    return Math.floor(n / 60000) + " min " + Math.round((n % 60000) / 1000) + " s";
  }
  function fill(id, rows, empty, cols) {
    var body = document.querySelector("#" + id + " tbody");
    body.replaceChildren();
    if (rows.length === 0) {
      var tr = el("tr"); var td = el("td", empty, "empty"); td.colSpan = cols;
      tr.appendChild(td); body.appendChild(tr);
      return;
    }
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function routeRow(r) {
    var tr = el("tr"); tr.dataset.route = r.key; tr.className = "route";
    var name = el("td"); name.appendChild(el("span", r.key));
    name.appendChild(el("span", r.kind, "badge"));
    if (r.problem) { name.appendChild(el("div", r.problem, "bad")); }
    tr.appendChild(name);
    var rules = el("td", null, "wrap");
    (r.rules || []).forEach(function (rule) {
      var parts = [(rule.hosts.length ? rule.hosts.join(", ") : "any host"),
        (rule.paths.length ? rule.paths.join(", ") : "any path")];
      if (rule.headers.length) parts.push(rule.headers.join(", "));
      rules.appendChild(el("span", parts.join("  /  "), "rule"));
    });
    if (!r.rules) rules.textContent = "-";
    tr.appendChild(rules);
    tr.appendChild(el("td", r.target || "-"));
    tr.appendChild(el("td", r.inFlight, "num inflight"));
    tr.appendChild(el("td", r.held, "num held" + (r.held > 0 ? " held-on" : "")));
    tr.appendChild(el("td", r.rps.toFixed(r.rps < 10 ? 2 : 1), "num rps"));
    tr.appendChild(el("td", r.readyPods === null ? "-" : r.readyPods + " / " + r.pods, "num replicas"));
    var s = r.scaling;
    var desired = el("td", s.desired === null ? "-" : s.desired, "num desired");
    desired.title = s.bounds ? "within min " + s.bounds.min + ", max " + s.bounds.max
      : "min/max are in the ScaledObject, which this scaler does not read";
    if (s.active) desired.appendChild(el("span", "active", "badge"));
    tr.appendChild(desired);
    var m = el("td", null, "wrap");
    if (s.problem) m.appendChild(el("span", s.problem, "bad"));
    s.metrics.forEach(function (x) {
      m.appendChild(el("span", x.type + " " + (Math.round(x.value * 100) / 100) + " / target " + x.target, "rule"));
    });
    tr.appendChild(m);
    return tr;
  }
  function coldRow(c) {
    var tr = el("tr"); tr.dataset.route = c.route; tr.className = "cold-start " + c.outcome;
    tr.appendChild(el("td", new Date(c.heldAt).toLocaleTimeString()));
    tr.appendChild(el("td", c.route));
    var label = c.outcome === "ready" ? "ready (" + (c.readyBy === "probe" ? "interceptor's probe" : "kubelet") + ")"
      : c.outcome === "waiting" ? "waiting" : "gave up (held requests timed out or left)";
    tr.appendChild(el("td", label, c.outcome === "ready" ? "ok" : c.outcome === "waiting" ? "waiting" : "warn"));
    tr.appendChild(el("td", ms(c.durationMs), "num duration"));
    var where = el("td");
    var w = c.phases.waitingForPodMs, p = c.phases.podStartingMs;
    var text = [];
    if (w !== undefined) text.push("waiting for a pod " + ms(w));
    if (p !== undefined) text.push("pod starting " + ms(p));
    where.appendChild(el("span", text.length ? text.join(", ") : "-", "phases"));
    var total = (w || 0) + (p || 0);
    if (total > 0) {
      var bar = el("div", null, "bar");
      var a = el("span", null, "seg-wait"); a.style.width = (100 * (w || 0) / total) + "%";
      var b = el("span", null, "seg-pod"); b.style.width = (100 * (p || 0) / total) + "%";
      bar.appendChild(a); bar.appendChild(b); where.appendChild(bar);
    }
    tr.appendChild(where);
    tr.appendChild(el("td", c.held, "num"));
    tr.appendChild(el("td", c.interceptors.join(", "), "wrap"));
    return tr;
  }
  function podRow(p) {
    var tr = el("tr"); tr.dataset.pod = p.name;
    tr.appendChild(el("td", p.name));
    tr.appendChild(el("td", p.url, "dim"));
    tr.appendChild(el("td", p.ready ? "yes" : "no", p.ready ? "ok" : "warn"));
    tr.appendChild(el("td", p.health, p.health === "ok" ? "ok" : p.health === "down" ? "bad" : "warn"));
    tr.appendChild(el("td", p.lastSeenAgeMs === undefined ? "never" : ms(p.lastSeenAgeMs) + " ago", "num"));
    tr.appendChild(el("td", p.status, p.status === "ok" ? "ok" : "warn"));
    tr.appendChild(el("td", p.lastError || "", "wrap bad"));
    return tr;
  }
  function render(s) {
    fill("routes", s.routes.map(routeRow), "No HTTPScaledObject or InterceptorRoute yet.", 9);
    fill("coldstarts", s.coldStarts.map(coldRow), "No cold start seen since the interceptors started.", 7);
    fill("interceptors", s.interceptors.map(podRow), "No interceptor pod in the admin Service's endpoints.", 7);
    document.getElementById("updated").textContent = new Date(s.generatedAt).toLocaleTimeString();
    var held = 0, inflight = 0;
    s.routes.forEach(function (r) { held += r.held; inflight += r.inFlight; });
    document.getElementById("summary").textContent = s.routes.length + " routes, " + inflight +
      " in flight, " + held + " held, " + s.interceptors.length + " interceptors";
  }
  var conn = document.getElementById("conn");
  var path = location.pathname.replace(/\\/+$/, "") + "/events";
  var source = new EventSource(path);
  source.addEventListener("snapshot", function (e) {
    conn.textContent = "live"; conn.className = "live";
    render(JSON.parse(e.data));
  });
  source.onerror = function () {
    conn.textContent = "reconnecting"; conn.className = "down";
  };
})();
</script>
</body>
</html>
`;
