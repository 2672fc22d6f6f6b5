/**
 * `deno task image:build` / `deno task image:push`: one image per program,
 * named by KEDAHTTP_SCALER_IMAGE, KEDAHTTP_INTERCEPTOR_IMAGE and
 * KEDAHTTP_OPERATOR_IMAGE (required). A `<keda-git-sha>` suffix becomes
 * `sha-` plus the short git hash, as in the Go add-on's build.
 */
import { type Program, PROGRAMS, repoPath } from "./programs.ts";
import { createLogger } from "../shared/log.ts";

const log = createLogger({ fields: { component: "image" } });

export const IMAGE_ENV: Record<Program, string> = {
  interceptor: "KEDAHTTP_INTERCEPTOR_IMAGE",
  scaler: "KEDAHTTP_SCALER_IMAGE",
  operator: "KEDAHTTP_OPERATOR_IMAGE",
};

async function run(cmd: string, args: string[]): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { args, cwd: repoPath("."), stderr: "inherit" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${cmd} is not installed; install it and retry`);
    }
    throw e;
  }
  if (out.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed with exit code ${out.code}`);
  return new TextDecoder().decode(out.stdout).trim();
}

/** Image names from the environment; every missing variable is reported at once. */
export async function imageNames(env = Deno.env.toObject()): Promise<Record<Program, string>> {
  const missing = PROGRAMS.filter((p) => !env[IMAGE_ENV[p]]);
  if (missing.length) {
    throw new Error(
      `set ${missing.map((p) => IMAGE_ENV[p]).join(", ")} (e.g. ghcr.io/you/keda-http-${
        missing[0]
      }:<keda-git-sha>)`,
    );
  }
  let sha: string | undefined;
  const names = {} as Record<Program, string>;
  for (const p of PROGRAMS) {
    let name = env[IMAGE_ENV[p]]!;
    if (name.endsWith("<keda-git-sha>")) {
      sha ??= await run("git", ["rev-parse", "--short", "HEAD"]);
      name = name.slice(0, -"<keda-git-sha>".length) + `sha-${sha}`;
    }
    names[p] = name;
  }
  return names;
}

if (import.meta.main) {
  const action = Deno.args[0];
  try {
    if (action !== "build" && action !== "push") throw new Error("usage: image.ts build|push");
    const names = await imageNames();
    for (const p of PROGRAMS) {
      if (action === "build") {
        log.info("building image", { program: p, image: names[p] });
        await run("docker", ["build", "--build-arg", `PROGRAM=${p}`, "-t", names[p], "."]);
      } else {
        log.info("pushing image", { program: p, image: names[p] });
        await run("docker", ["push", names[p]]);
      }
    }
  } catch (e) {
    log.error((e as Error).message);
    Deno.exit(1);
  }
}
