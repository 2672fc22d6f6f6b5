/**
 * Route matching: an index over the routing table's entries, built once per
 * table change and then only read, so a lookup is a handful of Map gets.
 *
 * Order of the search (the first route that accepts the request wins):
 *  1. host level: the exact host, then wildcard hosts from most to least
 *     specific ("*.a.example.com" before "*.example.com"; a wildcard covers
 *     any number of labels), then catch-all routes (no hosts, or "*");
 *  2. within a host level, path prefixes on whole segments, longest first;
 *  3. within a prefix, routes whose headers all match (ANDed), those with
 *     more header conditions first, then more conditions with a value, then
 *     by rank (older routes first, as in the Go add-on), then by key - so
 *     ties are deterministic across interceptor replicas.
 * The index holds rules: a route with several rules (an InterceptorRoute)
 * is found through any of them.
 * A prefix whose routes all reject the headers falls back to shorter
 * prefixes, and a host level with no accepting route falls back to the next.
 */
import type { RouteRule } from "../shared/routing_table.ts";
import { normalizeHost } from "../shared/host_path.ts";

/**
 * A request's Host as the table keys it (lower-case, port and trailing dot
 * stripped, IPv6 brackets kept). shared/host_path.ts has no imports, so the
 * data-plane isolates do not load zod for it.
 */
export const hostKey: (host: string) => string = normalizeHost;

/** Where lookups read request headers; `get` takes a lower-case name. */
export interface HeaderSource {
  /** The value, or the values joined with ", " when repeated; null when absent. */
  get(name: string): string | null;
}

/** One rule of a route, as the index needs it. */
export interface Routable extends RouteRule {
  key: string;
  /** Tie-break after header specificity, compared as text, lower first (absent = ""). */
  rank?: string;
}

/** A rule in the index, pointing back at its route. */
export interface RuleOf<R> extends Routable {
  route: R;
}

/** Every rule of every route, for a RouteIndex; a route without rules is never matched. */
export function ruleEntriesOf<R extends { key: string; rank?: string; rules: RouteRule[] }>(
  routes: Iterable<R>,
): RuleOf<R>[] {
  const out: RuleOf<R>[] = [];
  for (const route of routes) {
    for (const rule of route.rules) {
      const e: RuleOf<R> = {
        key: route.key,
        hosts: rule.hosts,
        pathPrefixes: rule.pathPrefixes,
        headers: rule.headers,
        route,
      };
      if (route.rank !== undefined) e.rank = route.rank;
      out.push(e);
    }
  }
  return out;
}

/** Routes sharing one host level and one path prefix, in match order. */
type Candidates<T> = T[];

/** Path prefix -> candidates, for one host level. */
class PathIndex<T> extends Map<string, Candidates<T>> {
  /** The longest prefix indexed: a lookup never cuts a longer one out of the path. */
  maxLen = 0;
}

function compareRoutes(a: Routable, b: Routable): number {
  // More header conditions = more specific, so it is tried first.
  const d = b.headers.length - a.headers.length;
  if (d !== 0) return d;
  const v = valued(b) - valued(a);
  if (v !== 0) return v;
  const ra = a.rank ?? "", rb = b.rank ?? "";
  if (ra !== rb) return ra < rb ? -1 : 1;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

function valued(r: Routable): number {
  let n = 0;
  for (const h of r.headers) if (h.value !== undefined) n++;
  return n;
}

function addTo<T extends Routable>(index: PathIndex<T>, prefixes: string[], route: T): void {
  const list = prefixes.length === 0 ? ["/"] : prefixes;
  for (const prefix of list) {
    if (prefix.length > index.maxLen) index.maxLen = prefix.length;
    const existing = index.get(prefix);
    if (existing) existing.push(route);
    else index.set(prefix, [route]);
  }
}

function headerValueMatches(actual: string, expected: string): boolean {
  if (actual === expected) return true;
  // Repeated headers arrive joined; accept a match on any one of them.
  if (actual.indexOf(",") < 0) return false;
  for (const part of actual.split(",")) if (part.trim() === expected) return true;
  return false;
}

/** True when every header condition of the route holds. */
export function headersMatch(route: Pick<RouteRule, "headers">, headers: HeaderSource): boolean {
  const conds = route.headers;
  for (let i = 0; i < conds.length; i++) {
    const c = conds[i]!;
    const v = headers.get(c.name);
    if (v === null) return false;
    if (c.value !== undefined && !headerValueMatches(v, c.value)) return false;
  }
  return true;
}

/** Why a host of a route was not indexed (it can never match). */
export interface IndexProblem {
  key: string;
  host: string;
  problem: string;
}

export class RouteIndex<T extends Routable = Routable> {
  readonly #exact = new Map<string, PathIndex<T>>();
  /** Suffix after "*." -> routes; the lookup walks suffixes of the host. */
  readonly #wildcard = new Map<string, PathIndex<T>>();
  readonly #catchAll = new PathIndex<T>();
  readonly problems: IndexProblem[] = [];
  readonly size: number;

  constructor(routes: Iterable<T>) {
    let n = 0;
    for (const route of routes) {
      n++;
      if (route.hosts.length === 0) {
        addTo(this.#catchAll, route.pathPrefixes, route);
        continue;
      }
      for (const raw of route.hosts) {
        const host = hostKey(raw);
        if (host === "" || host === "*") {
          addTo(this.#catchAll, route.pathPrefixes, route);
        } else if (host.startsWith("*.")) {
          const suffix = host.slice(2);
          if (suffix.includes("*")) {
            this.problems.push({
              key: route.key,
              host: raw,
              problem: 'only one leading "*." label is allowed in a wildcard host',
            });
            continue;
          }
          let idx = this.#wildcard.get(suffix);
          if (!idx) this.#wildcard.set(suffix, idx = new PathIndex());
          addTo(idx, route.pathPrefixes, route);
        } else if (host.includes("*")) {
          this.problems.push({
            key: route.key,
            host: raw,
            problem: 'a wildcard must be the whole first label, e.g. "*.example.com"',
          });
        } else {
          let idx = this.#exact.get(host);
          if (!idx) this.#exact.set(host, idx = new PathIndex());
          addTo(idx, route.pathPrefixes, route);
        }
      }
    }
    this.size = n;
    for (const idx of this.#allPathIndexes()) {
      for (const list of idx.values()) {
        // A route listed twice under one prefix (duplicate hosts) is tried once.
        list.sort(compareRoutes);
        for (let i = list.length - 1; i > 0; i--) if (list[i] === list[i - 1]) list.splice(i, 1);
      }
    }
  }

  *#allPathIndexes(): Iterable<PathIndex<T>> {
    yield* this.#exact.values();
    yield* this.#wildcard.values();
    yield this.#catchAll;
  }

  /**
   * The route for a request. `host` may carry a port and any case; `path` is
   * the request target's path (a query string is ignored).
   */
  lookup(host: string, path: string, headers: HeaderSource): T | undefined {
    const h = hostKey(host);
    const q = path.indexOf("?");
    const p = q >= 0 ? path.slice(0, q) : path;
    const exact = this.#exact.get(h);
    if (exact) {
      const r = matchPath(exact, p, headers);
      if (r) return r;
    }
    if (this.#wildcard.size > 0) {
      let dot = h.indexOf(".");
      while (dot >= 0) {
        const idx = this.#wildcard.get(h.slice(dot + 1));
        if (idx) {
          const r = matchPath(idx, p, headers);
          if (r) return r;
        }
        dot = h.indexOf(".", dot + 1);
      }
    }
    if (this.#catchAll.size > 0) return matchPath(this.#catchAll, p, headers);
    return undefined;
  }
}

function firstAccepting<T extends Routable>(
  list: Candidates<T> | undefined,
  headers: HeaderSource,
): T | undefined {
  if (!list) return undefined;
  for (let i = 0; i < list.length; i++) {
    const r = list[i]!;
    if (r.headers.length === 0 || headersMatch(r, headers)) return r;
  }
  return undefined;
}

/** Longest whole-segment prefix first, then shorter ones, ending at "/". */
function matchPath<T extends Routable>(
  idx: PathIndex<T>,
  path: string,
  headers: HeaderSource,
): T | undefined {
  // Only prefixes as long as the longest indexed one are looked up, so a
  // hostile path of 60,000 "/" costs one scan, not a hash of every prefix.
  const max = idx.maxLen;
  if (path.length > 1 && path.length <= max && path.charCodeAt(path.length - 1) !== 47) {
    const r = firstAccepting(idx.get(path), headers);
    if (r) return r;
  }
  // "/a/b/" has the whole-segment prefixes "/a/b", "/a", "/".
  let end = path.lastIndexOf("/", Math.min(path.length - 1, max));
  while (end > 0) {
    const r = firstAccepting(idx.get(path.slice(0, end)), headers);
    if (r) return r;
    end = path.lastIndexOf("/", end - 1);
  }
  return firstAccepting(idx.get("/"), headers);
}

/** True when `host` (normalised) is one of the rule's hosts: exact, "*", or under a "*." wildcard. */
function hostMatches(hosts: string[], host: string): boolean {
  if (hosts.length === 0) return true;
  for (const h of hosts) {
    if (h === host || h === "*" || h === "") return true;
    // "*.example.com" covers any name ending in ".example.com" (any depth).
    if (h.startsWith("*.") && host.length > h.length - 1 && host.endsWith(h.slice(1))) return true;
  }
  return false;
}

const HEX = /^[0-9A-Fa-f]{2}$/;
const NON_ASCII = /[\x80-\xff]/;
const DECODED_DOT_SEGMENT = /(^|[/\\])\.\.?([/\\]|$)/;
const UTF8 = new TextDecoder();

/**
 * The path routes and static routes are matched against, from a request
 * target: the query dropped, percent-escapes decoded (as Go's r.URL.Path,
 * which the Go add-on matches, and as apps read it), and dot segments
 * removed first, exactly as WHATWG URL does (split on "/" and "\\", "%2e"
 * is a dot), so "/%61dmin", "/x/../admin", "/x\\..\\admin", "/x%2fy/../admin"
 * and "/./admin" meet a rule where the app's URL parser puts them. null
 * when the target cannot be read one way only (a fragment, a malformed
 * escape, an escaped separator beside a dot segment): answered 400.
 */
export function routingPath(target: string): string | null {
  const q = target.indexOf("?");
  let p = q >= 0 ? target.slice(0, q) : target;
  if (p.indexOf("#") >= 0) return null;
  const escaped = p.indexOf("%") >= 0;
  if (escaped) {
    for (let i = p.indexOf("%"); i >= 0; i = p.indexOf("%", i + 1)) {
      if (!HEX.test(p.slice(i + 1, i + 3))) return null;
    }
  }
  // Dot segments first, on the separators WHATWG URL splits on ("/" and "\\",
  // never an escaped one), with "%2e" as a dot: so the segment ".." removes
  // is the one the app's URL parser removes.
  if (p.indexOf("\\") >= 0) p = p.replaceAll("\\", "/");
  if (p.indexOf("/.") >= 0 || p.startsWith(".") || /\/%2e/i.test(p) || /^%2e/i.test(p)) {
    p = removeDotSegments(p);
  }
  if (escaped || NON_ASCII.test(p)) {
    // The head is a binary string (bytes as code units): unescape to bytes, then read
    // them as UTF-8, invalid sequences as U+FFFD (no rule can name those bytes).
    const bin = unescape(p);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i) & 0xff;
    p = UTF8.decode(bytes);
    // An escaped separator next to a dot ("/x%2f..%2fadmin") reads one way to an app that
    // decodes once and another to one that resolves first: refuse it rather than pick one.
    if (DECODED_DOT_SEGMENT.test(p)) return null;
  }
  return p;
}

function dotKind(seg: string): 0 | 1 | 2 {
  if (seg.length > 6) return 0;
  const s = seg.toLowerCase().replaceAll("%2e", ".");
  return s === "." ? 1 : s === ".." ? 2 : 0;
}

/** RFC 3986 5.2.4 over "/"-separated segments, "%2e" counted as ".". */
function removeDotSegments(p: string): string {
  const out: string[] = [];
  const parts = p.split("/");
  for (let i = 0; i < parts.length; i++) {
    const seg = parts[i]!;
    const kind = dotKind(seg);
    if (kind === 1) {
      if (i === parts.length - 1) out.push("");
    } else if (kind === 2) {
      if (out.length > 1) out.pop();
      if (i === parts.length - 1) out.push("");
    } else out.push(seg);
  }
  const joined = out.join("/");
  return joined.startsWith("/") ? joined : "/" + joined;
}

/** True when `path` (query ignored) is under one of the prefixes, on whole segments. */
function pathMatches(prefixes: string[], rawPath: string): boolean {
  if (prefixes.length === 0) return true;
  const q = rawPath.indexOf("?");
  const path = q >= 0 ? rawPath.slice(0, q) : rawPath;
  for (const p of prefixes) {
    if (p === "/" || path === p) return true;
    if (path.startsWith(p) && path.charCodeAt(p.length) === 47) return true;
  }
  return false;
}

/**
 * One rule against one request (static routes inside a route, tried in
 * order): every part the rule sets must match; an unset part matches all.
 */
export function ruleMatches(
  rule: RouteRule,
  host: string,
  path: string,
  headers: HeaderSource,
): boolean {
  return hostMatches(rule.hosts, hostKey(host)) && pathMatches(rule.pathPrefixes, path) &&
    (rule.headers.length === 0 || headersMatch(rule, headers));
}

/** Headers from a plain record (tests, the admin API); names any case. */
export function headerSourceOf(record: Record<string, string>): HeaderSource {
  const m = new Map<string, string>();
  for (const [k, v] of Object.entries(record)) {
    const n = k.toLowerCase();
    const prev = m.get(n);
    m.set(n, prev === undefined ? v : `${prev}, ${v}`);
  }
  return { get: (name) => m.get(name) ?? null };
}
