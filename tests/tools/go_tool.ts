/**
 * Go programs the tests and benchmarks run, built into ~/.cache/keda-http-deno
 * when their sources change (their hash is kept beside the binary), never into
 * the checkout: they are build products. Two shapes of tool module directory:
 *
 * - a small program: go.mod, go.sum and main.go, built with `go build .`;
 * - a published command: go.mod and go.sum only, whose go.mod pins it with a
 *   `tool <package>` directive (`go get -tool <package>@<version>`), built with
 *   `go build <package>` (pass `pkg`). The build never edits go.mod
 *   (-mod=readonly): the version is the one the checkout pins.
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
  /**
   * A package path the module's go.mod pins with a `tool` directive, built
   * instead of the directory's own main.go (which it then need not have).
   */
  pkg?: string;
  /** -ldflags for the build (e.g. `-X <pkg>.version=v1.2.3`); part of the cache key. */
  ldflags?: string[];
}): Promise<string> {
  const bin = `${CACHE_DIR}/${opts.name}`;
  const stamp = `${bin}.sha256`;
  const parts: Uint8Array[] = [];
  const files = opts.pkg === undefined ? ["go.mod", "go.sum", "main.go"] : ["go.mod", "go.sum"];
  for (const f of files) {
    parts.push(new TextEncoder().encode(`${f}\n`), await Deno.readFile(opts.srcDir + f));
  }
  // Without pkg the hash input is what it always was, so existing stamps stay valid.
  if (opts.pkg !== undefined) parts.push(new TextEncoder().encode(`pkg ${opts.pkg}\n`));
  if (opts.ldflags?.length) {
    parts.push(new TextEncoder().encode(`ldflags ${opts.ldflags.join(" ")}\n`));
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) all.set(p, (at += p.length) - p.length);
  const hash = [...new Uint8Array(await crypto.subtle.digest("SHA-256", all))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const have = await Deno.readTextFile(stamp).catch(() => "");
  const exists = await Deno.stat(bin).then(() => true, () => false);
  if (have.trim() === hash && exists) return bin;
  if (opts.pkg !== undefined) {
    const mod = await Deno.readTextFile(opts.srcDir + "go.mod");
    if (!new RegExp(`^tool\\s+${opts.pkg.replaceAll(".", "\\.")}\\s*$`, "m").test(mod)) {
      throw new Error(
        `${opts.srcDir}go.mod has no "tool ${opts.pkg}" directive: run ` +
          `\`go get -tool ${opts.pkg}@<version>\` in ${opts.srcDir}`,
      );
    }
  }
  await Deno.mkdir(CACHE_DIR, { recursive: true });
  const go = await goBinary();
  // A per-process name: concurrent builds never write one file.
  const tmp = `${bin}.${Deno.pid}.tmp`;
  const r = await new Deno.Command(go, {
    args: [
      "build",
      ...(opts.ldflags?.length ? ["-ldflags", opts.ldflags.join(" ")] : []),
      "-o",
      tmp,
      opts.pkg ?? ".",
    ],
    cwd: opts.srcDir,
    env: { CGO_ENABLED: "0", GOFLAGS: opts.pkg === undefined ? "-mod=mod" : "-mod=readonly" },
    stdout: "piped",
    stderr: "piped",
  }).output().catch((e) => {
    throw new Error(
      `cannot run ${go} to build ${opts.what} (${e}): install Go (go.dev/dl) or put go on PATH`,
    );
  });
  if (!r.success) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(
      `building ${opts.what} with ${go} failed (it needs ${opts.needs} from the module proxy` +
        ` ($GOPROXY, default proxy.golang.org) or the Go module cache):\n${
          new TextDecoder().decode(r.stderr)
        }`,
    );
  }
  await Deno.rename(tmp, bin);
  await Deno.writeTextFile(stamp, hash + "\n");
  return bin;
}
