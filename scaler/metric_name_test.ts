import assert from "node:assert/strict";
import {
  concurrencyMetricName,
  escapeMetricName,
  metricNameFor,
  rateMetricName,
} from "./metric_name.ts";

Deno.test("metricNameFor escapes the slash as _002F like the Go add-on", () => {
  assert.equal(metricNameFor("default", "myapp"), "http-default_002Fmyapp");
  assert.equal(metricNameFor("team-a", "api.v2"), "http-team-a_002Fapi.v2");
});

Deno.test("escapeMetricName keeps [-.0-9A-Za-z] and hex-escapes everything else", () => {
  assert.equal(escapeMetricName("Az09-."), "Az09-.");
  assert.equal(escapeMetricName("a_b:c d"), "a_005Fb_003Ac_0020d");
  // Multi-byte characters: the UTF-8 bytes in hex, as Go's %04X of a string.
  assert.equal(escapeMetricName("é"), "_C3A9");
  assert.equal(escapeMetricName("€"), "_E282AC");
  assert.equal(escapeMetricName("😀"), "_F09F9880");
});

Deno.test("InterceptorRoute metric names are Go v0.15's, the name as it is", () => {
  assert.equal(concurrencyMetricName("myapp"), "http_myapp_concurrency");
  assert.equal(rateMetricName("api.v2"), "http_api.v2_rate");
});
