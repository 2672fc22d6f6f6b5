/**
 * `deno task compile [program...]`: one standalone executable per program
 * under dist/, with the same permissions as the run tasks.
 *
 * deno compile needs its runtime (denort). It downloads it unless DENORT_BIN
 * points at a local copy; where the download is impossible this says so and
 * how to provide DENORT_BIN, instead of failing with a network stack trace.
 */
import { type Program, PROGRAMS, programSpecs, repoPath } from "./programs.ts";
import { createLogger } from "../shared/log.ts";

const log = createLogger({ fields: { component: "compile" } });

/** The one line of deno's error chain that says what failed (e.g. the download). */
function said(stderr: string): string {
  // deno prints a cause chain ("0: …", "1: error sending request …") then a backtrace.
  // deno colours its errors; strip the ANSI escapes (ESC is char code 27).
  const plain = stderr.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g"), "");
  const line = plain.split("\n").map((l) => l.trim()).find((l) =>
    /error sending request|dns error|denort/i.test(l)
  );
  return line ?? plain.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";
}

function denortHint(): string {
  return [
    "deno compile could not get its runtime (denort) and no DENORT_BIN was given.",
    "On a machine without access to dl.deno.land, download denort for this Deno version",
    `(${Deno.version.deno}, e.g. denort-x86_64-unknown-linux-gnu.zip from the Deno release page)`,
    "elsewhere, unzip it, and run: DENORT_BIN=/path/to/denort deno task compile",
  ].join("\n");
}

async function compile(program: Program, target?: string): Promise<void> {
  const spec = programSpecs().find((p) => p.name === program)!;
  const denort = Deno.env.get("DENORT_BIN");
  if (denort) {
    try {
      const st = Deno.statSync(denort);
      if (!st.isFile) throw new Error("not a file");
    } catch (e) {
      throw new Error(
        `DENORT_BIN=${denort} is not a readable file (${
          (e as Error).message
        }); point it at a denort binary`,
      );
    }
  }
  const out = repoPath(`dist/${program}`);
  const args = [
    "compile",
    "--quiet",
    ...spec.permissions,
    "--include",
    repoPath("proto/"),
    ...(target ? ["--target", target] : []),
    "--output",
    out,
    repoPath(spec.entry),
  ];
  log.info("compiling", {
    program,
    out,
    permissions: spec.permissions,
    denort: denort ?? "(download)",
  });
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "inherit", stderr: "piped" })
    .spawn();
  const { code, stderr } = await child.output();
  const text = new TextDecoder().decode(stderr);
  if (code !== 0) {
    if (
      !denort &&
      /denort|dl\.deno\.land|download|dns error|error sending request|failed to fetch/i.test(text)
    ) {
      throw new Error(
        `${program}: ${denortHint()}\n\ndeno said: ${said(text)}`,
      );
    }
    throw new Error(`${program}: deno compile failed (exit ${code}):\n${text}`);
  }
  log.info("compiled", { program, out });
}

if (import.meta.main) {
  const asked = Deno.args.filter((a) => !a.startsWith("--"));
  const target = Deno.args.find((a) => a.startsWith("--target="))?.slice("--target=".length);
  const unknown = asked.filter((a) => !(PROGRAMS as readonly string[]).includes(a));
  if (unknown.length) {
    log.error(`unknown program ${unknown.join(", ")}; choose from ${PROGRAMS.join(", ")}`);
    Deno.exit(2);
  }
  try {
    for (const p of (asked.length ? asked : PROGRAMS) as Program[]) await compile(p, target);
  } catch (e) {
    log.error((e as Error).message);
    Deno.exit(1);
  }
}
