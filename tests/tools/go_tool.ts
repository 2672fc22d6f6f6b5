/**
 * Small Go programs the tests and benchmarks run (a Go module directory with
 * go.mod, go.sum and main.go), built into ~/.cache/keda-http-deno when their
 * sources change (their hash is kept beside the binary), never into the
 * checkout: they are build products.
 */

export const CACHE_DIR = `${Deno.env.get("HOME") ?? "/root"}/.cache/keda-http-deno`;

/** The Go toolchain: on PATH, else where its tarball installs. */
async function goBinary(): Promise<string> {
  const out = await new Deno.Command("sh", { args: ["-c", "command -v go"], stdout: "piped" })
    .output();
  const p = new TextDecoder().decode(out.stdout).trim();
  return out.success && p ? p : "/usr/local/go/bin/go";
}

/** The binary `name` built from `srcDir` (ending in /); `what` names it and its needs in errors. */
export async function buildGoTool(opts: {
  name: string;
  srcDir: string;
  what: string;
  /** What the build fetches from the module proxy, for the error message. */
  needs: string;
}): Promise<string> {
  const bin = `${CACHE_DIR}/${opts.name}`;
  const stamp = `${bin}.sha256`;
  const parts: Uint8Array[] = [];
  for (const f of ["go.mod", "go.sum", "main.go"]) {
    parts.push(new TextEncoder().encode(`${f}\n`), await Deno.readFile(opts.srcDir + f));
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) all.set(p, (at += p.length) - p.length);
  const hash = [...new Uint8Array(await crypto.subtle.digest("SHA-256", all))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const have = await Deno.readTextFile(stamp).catch(() => "");
  const exists = await Deno.stat(bin).then(() => true, () => false);
  if (have.trim() === hash && exists) return bin;
  await Deno.mkdir(CACHE_DIR, { recursive: true });
  const go = await goBinary();
  // A per-process name: concurrent builds never write one file.
  const tmp = `${bin}.${Deno.pid}.tmp`;
  const r = await new Deno.Command(go, {
    args: ["build", "-o", tmp, "."],
    cwd: opts.srcDir,
    env: { CGO_ENABLED: "0", GOFLAGS: "-mod=mod" },
    stdout: "piped",
    stderr: "piped",
  }).output().catch((e) => {
    throw new Error(
      `cannot run ${go} to build ${opts.what} (${e}): install Go (go.dev/dl) or put go on PATH`,
    );
  });
  if (!r.success) {
    throw new Error(
      `building ${opts.what} with ${go} failed (it needs ${opts.needs} from the module proxy):\n${
        new TextDecoder().decode(r.stderr)
      }`,
    );
  }
  await Deno.rename(tmp, bin);
  await Deno.writeTextFile(stamp, hash + "\n");
  return bin;
}
