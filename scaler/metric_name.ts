/**
 * The metric name KEDA sees for a route: `http-<namespace>/<name>` with every
 * character outside [-.0-9A-Za-z] written as `_` + the hex of its UTF-8 bytes,
 * at least four digits (so "/" becomes "_002F"). This is byte for byte what
 * the Go add-on's `fmt.Sprintf("_%04X", r)` produces, so HPA metric names do
 * not change when users move over.
 */

const SAFE = /^[-.0-9A-Za-z]$/;
const encoder = new TextEncoder();

function escapeChar(ch: string): string {
  if (SAFE.test(ch)) return ch;
  const hex = Array.from(encoder.encode(ch), (b) => b.toString(16).toUpperCase().padStart(2, "0"))
    .join("");
  return "_" + hex.padStart(4, "0");
}

/** Escapes every character outside [-.0-9A-Za-z]. */
export function escapeMetricName(name: string): string {
  let out = "";
  // for…of walks code points, so a character outside the BMP is one escape.
  for (const ch of name) out += escapeChar(ch);
  return out;
}

/** `http-<namespace>/<name>`, escaped. */
export function metricNameFor(namespace: string, name: string): string {
  return escapeMetricName(`http-${namespace}/${name}`);
}

/**
 * The metric names of an InterceptorRoute, as the Go add-on v0.15 writes
 * them: `http_<name>_concurrency` and `http_<name>_rate`, the name as it is
 * (Go does not escape it; a Kubernetes object name is only lower-case
 * letters, digits, `-` and `.`).
 */
export function concurrencyMetricName(routeName: string): string {
  return `http_${routeName}_concurrency`;
}

export function rateMetricName(routeName: string): string {
  return `http_${routeName}_rate`;
}
