/**
 * Host and path-prefix normalisation, shared by the routing table builder
 * and the interceptor's matcher. No imports, so the interceptor's data-plane
 * isolates can use it without loading zod and the HTTPScaledObject schemas.
 */

/** Lower-cases a host and strips a port; keeps IPv6 brackets. */
export function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    return end >= 0 ? h.slice(0, end + 1) : h;
  }
  const colon = h.lastIndexOf(":");
  if (colon >= 0 && h.indexOf(":") === colon) h = h.slice(0, colon);
  if (h.endsWith(".")) h = h.slice(0, -1);
  return h;
}

/** "/api/" -> "/api", "api" -> "/api", "" -> "/". Matching is on whole segments. */
export function normalizePathPrefix(prefix: string): string {
  let p = prefix.trim();
  if (!p.startsWith("/")) p = "/" + p;
  while (p.length > 1 && p.endsWith("/")) p = p.slice(0, -1);
  return p;
}
