/**
 * The TLS options of the Go add-on's listener (KEDA_HTTP_PROXY_TLS_MIN_VERSION,
 * _MAX_VERSION, _CIPHER_SUITES, _CURVE_PREFERENCES), checked against what
 * Deno can do. Versions are honoured (node:tls minVersion/maxVersion). Deno's
 * node:tls ignores `ciphers` and `ecdhCurve` (rustls negotiates its own set;
 * tls_test.ts shows both), so a list is accepted only when it allows every
 * suite or group Deno may negotiate: then what is negotiated is within it, as
 * configured. A list that would restrict Deno is refused at start rather than
 * silently not applied.
 */

/** The spellings Go HEAD's parseTLSVersion accepts. */
export const TLS_VERSIONS = ["1.2", "1.3"] as const;
export type TlsVersion = typeof TLS_VERSIONS[number];

/** node:tls's name for a version. */
export function nodeTlsVersion(v: TlsVersion): "TLSv1.2" | "TLSv1.3" {
  return v === "1.2" ? "TLSv1.2" : "TLSv1.3";
}

/** Go's tls.CipherSuites() (the names Go HEAD accepts), with their OpenSSL names. */
export const GO_CIPHER_SUITES: Record<string, { openssl: string; tls13: boolean }> = {
  TLS_AES_128_GCM_SHA256: { openssl: "TLS_AES_128_GCM_SHA256", tls13: true },
  TLS_AES_256_GCM_SHA384: { openssl: "TLS_AES_256_GCM_SHA384", tls13: true },
  TLS_CHACHA20_POLY1305_SHA256: { openssl: "TLS_CHACHA20_POLY1305_SHA256", tls13: true },
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: { openssl: "ECDHE-ECDSA-AES128-SHA", tls13: false },
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: { openssl: "ECDHE-ECDSA-AES256-SHA", tls13: false },
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: { openssl: "ECDHE-RSA-AES128-SHA", tls13: false },
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: { openssl: "ECDHE-RSA-AES256-SHA", tls13: false },
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: {
    openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
    tls13: false,
  },
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: {
    openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
    tls13: false,
  },
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: { openssl: "ECDHE-RSA-AES128-GCM-SHA256", tls13: false },
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: { openssl: "ECDHE-RSA-AES256-GCM-SHA384", tls13: false },
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: {
    openssl: "ECDHE-RSA-CHACHA20-POLY1305",
    tls13: false,
  },
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: {
    openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
    tls13: false,
  },
};

/** The TLS 1.2 suites Deno's server negotiates (probed with openssl s_client). */
export const DENO_TLS12_SUITES = [
  "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
  "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
  "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
  "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
  "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
  "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/** Go HEAD's curve names (its constants and the standard names) to one canonical name. */
export const GO_CURVES: Record<string, string> = {
  CurveP256: "CurveP256",
  CurveP384: "CurveP384",
  CurveP521: "CurveP521",
  X25519: "X25519",
  X25519MLKEM768: "X25519MLKEM768",
  "P-256": "CurveP256",
  "P-384": "CurveP384",
  "P-521": "CurveP521",
};

/** The groups Deno's server negotiates (X25519MLKEM768 only in TLS 1.3; P-521 never). */
const DENO_GROUPS = ["X25519", "CurveP256", "CurveP384"];
const DENO_GROUPS_TLS13 = ["X25519MLKEM768"];

function allows(min: TlsVersion | "", max: TlsVersion | "", v: TlsVersion): boolean {
  return (min === "" || min <= v) && (max === "" || max >= v);
}

/** The minimum and maximum versions; throws when no version is left. */
export function checkVersions(min: TlsVersion | "", max: TlsVersion | ""): void {
  if (min !== "" && max !== "" && min > max) {
    throw new Error(
      `KEDA_HTTP_PROXY_TLS_MIN_VERSION (${min}) is above KEDA_HTTP_PROXY_TLS_MAX_VERSION (${max}): no TLS version is left; lower the minimum or raise the maximum`,
    );
  }
}

/**
 * Checks KEDA_HTTP_PROXY_TLS_CIPHER_SUITES: every name must be one Go accepts,
 * and the list must allow every TLS 1.2 suite Deno negotiates (when TLS 1.2 is
 * allowed). TLS 1.3 names are accepted and change nothing, as in Go.
 */
export function checkCipherSuites(
  names: string[],
  min: TlsVersion | "",
  max: TlsVersion | "",
): void {
  const unknown = names.filter((n) => !(n in GO_CIPHER_SUITES));
  if (unknown.length > 0) {
    throw new Error(
      `unknown cipher suite${unknown.length > 1 ? "s" : ""} ${
        unknown.join(", ")
      }: use Go's names, one of ${Object.keys(GO_CIPHER_SUITES).join(", ")}`,
    );
  }
  if (names.length === 0 || !allows(min, max, "1.2")) return;
  const missing = DENO_TLS12_SUITES.filter((s) => !names.includes(s));
  if (missing.length > 0) {
    throw new Error(
      `Deno's TLS cannot be restricted to these cipher suites (it ignores the setting and negotiates ${
        DENO_TLS12_SUITES.join(", ")
      } in TLS 1.2); this list leaves out ${
        missing.join(", ")
      }: add them, unset the variable, or set KEDA_HTTP_PROXY_TLS_MIN_VERSION=1.3`,
    );
  }
}

/** Checks KEDA_HTTP_PROXY_TLS_CURVE_PREFERENCES likewise: Go's names, allowing every group Deno uses. */
export function checkCurves(names: string[], min: TlsVersion | "", max: TlsVersion | ""): void {
  const unknown = names.filter((n) => !(n in GO_CURVES));
  if (unknown.length > 0) {
    throw new Error(
      `unknown curve${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}: use one of ${
        Object.keys(GO_CURVES).join(", ")
      }`,
    );
  }
  if (names.length === 0) return;
  const have = new Set(names.map((n) => GO_CURVES[n]!));
  const used = [...DENO_GROUPS, ...(allows(min, max, "1.3") ? DENO_GROUPS_TLS13 : [])];
  const missing = used.filter((g) => !have.has(g));
  if (missing.length > 0) {
    throw new Error(
      `Deno's TLS cannot be restricted to these curves (it ignores the setting and negotiates ${
        used.join(", ")
      }); this list leaves out ${missing.join(", ")}: add them or unset the variable`,
    );
  }
}
