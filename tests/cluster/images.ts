/**
 * Container image → local command. The node agent has no container runtime:
 * it runs each container as a local process inside the pod's network
 * namespace, and this table says which program an image stands for.
 *
 * | image reference contains                  | runs                                        |
 * |-------------------------------------------|---------------------------------------------|
 * | `kedacore/keda-metrics-apiserver`          | KEDA metrics adapter binary (cache, below)  |
 * | `kedacore/keda-admission-webhooks`         | KEDA admission webhooks binary              |
 * | `kedacore/keda` (`:tag`)                   | KEDA operator binary                        |
 * | `interceptor`                              | `deno run <perms> interceptor/main.ts`      |
 * | `scaler`                                   | `deno run <perms> scaler/main.ts`           |
 * | `operator`                                 | `deno run <perms> operator/main.ts`         |
 * | `demo-app`, `demo_app`, `keda-http-deno/demo` | `deno run -A tests/fixtures/demo_app.ts` |
 * | `grpc-app`, `grpc_app`                     | `deno run -A tests/fixtures/grpc_app.ts`    |
 * | anything else, with `command:` set         | that command, as a host binary              |
 *
 * `<perms>` are the permissions of the program's run task in deno.json (the
 * same the compiled executable gets), so the deploy test exercises them.
 *
 * First match wins (KEDA's images come first: "keda-operator" would match
 * `operator` otherwise). The container's `args` replace the default args;
 * its `command` replaces the entrypoint only for unmapped images and for
 * paths listed in `commands` (e.g. `/keda` in KEDA's own manifests). KEDA
 * binaries are looked up in $KEDAHTTP_KEDA_BIN_DIR, then
 * ~/.cache/keda-http-deno/keda-<tag>/bin/ (tag from the image, e.g. 2.20.2 →
 * v2.20.2).
 *
 * Pods cannot reach the internet, so the agent runs `deno cache` on the host
 * for each Deno entrypoint before a container first starts.
 */

import { cacheDir, REPO_ROOT } from "./paths.ts";
import { type Program, programSpecs } from "../../build/programs.ts";

/** Our programs run with the permissions of their deno.json run tasks, as the compiled images do. */
function permissionsOf(program: Program): string[] {
  return programSpecs().find((p) => p.name === program)!.permissions;
}

export interface ResolvedImage {
  /** argv[0..] of the entrypoint (before args). */
  entrypoint: string[];
  /** Default args (the image's CMD). */
  args: string[];
  cwd: string;
  env: Record<string, string>;
  /** Deno modules to `deno cache` on the host first. */
  denoCache: string[];
  /** What the table matched, for logs. */
  description: string;
}

export interface ImageMapping {
  description: string;
  matches(image: string): boolean;
  resolve(image: string): ResolvedImage;
  /** Entrypoint paths inside the real image that map to this program. */
  commands?: string[];
}

function denoProgram(
  description: string,
  entry: string,
  permissions: string[] = ["-A"],
): ImageMapping["resolve"] {
  const path = `${REPO_ROOT}/${entry}`;
  return () => ({
    entrypoint: [
      Deno.execPath(),
      "run",
      ...permissions,
      "--quiet",
      `--config=${REPO_ROOT}/deno.json`,
      path,
    ],
    args: [],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    denoCache: [path],
    description,
  });
}

function imageName(image: string): string {
  // Drop a digest and a tag (a colon after the last slash is a tag).
  const noDigest = image.split("@")[0] ?? image;
  const slash = noDigest.lastIndexOf("/");
  const colon = noDigest.lastIndexOf(":");
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

function imageTag(image: string): string | undefined {
  const noDigest = image.split("@")[0] ?? image;
  const slash = noDigest.lastIndexOf("/");
  const colon = noDigest.lastIndexOf(":");
  return colon > slash ? noDigest.slice(colon + 1) : undefined;
}

function kedaBinary(names: string[], description: string): ImageMapping["resolve"] {
  return (image) => {
    const tag = imageTag(image);
    const version = tag ? (tag.startsWith("v") ? tag : `v${tag}`) : undefined;
    const dirs = [
      Deno.env.get("KEDAHTTP_KEDA_BIN_DIR"),
      version ? `${cacheDir()}/keda-${version}/bin` : undefined,
    ].filter((d): d is string => Boolean(d));
    for (const dir of dirs) {
      for (const name of names) {
        try {
          if (Deno.statSync(`${dir}/${name}`).isFile) {
            return {
              entrypoint: [`${dir}/${name}`],
              args: [],
              cwd: "/",
              env: {},
              denoCache: [],
              description,
            };
          }
        } catch {
          // Try the next candidate.
        }
      }
    }
    throw new Error(
      `image ${image} needs the ${description} binary (${names.join(" or ")}) in ${
        dirs.join(" or ") || "KEDAHTTP_KEDA_BIN_DIR"
      }; build KEDA first (tests/keda) or set KEDAHTTP_KEDA_BIN_DIR`,
    );
  };
}

export const IMAGE_TABLE: ImageMapping[] = [
  {
    description: "KEDA metrics API server",
    matches: (i) => imageName(i).endsWith("kedacore/keda-metrics-apiserver"),
    resolve: kedaBinary(["keda-adapter", "keda-metrics-apiserver"], "KEDA metrics API server"),
    commands: ["/keda-adapter"],
  },
  {
    description: "KEDA admission webhooks",
    matches: (i) => imageName(i).endsWith("kedacore/keda-admission-webhooks"),
    resolve: kedaBinary(["keda-admission-webhooks"], "KEDA admission webhooks"),
    commands: ["/keda-admission-webhooks"],
  },
  {
    description: "KEDA operator",
    matches: (i) => imageName(i).endsWith("kedacore/keda"),
    resolve: kedaBinary(["keda-operator", "keda"], "KEDA operator"),
    commands: ["/keda"],
  },
  {
    description: "interceptor",
    matches: (i) => imageName(i).includes("interceptor"),
    resolve: denoProgram("interceptor", "interceptor/main.ts", permissionsOf("interceptor")),
  },
  {
    description: "scaler",
    matches: (i) => imageName(i).includes("scaler"),
    resolve: denoProgram("scaler", "scaler/main.ts", permissionsOf("scaler")),
  },
  {
    description: "operator",
    matches: (i) => imageName(i).includes("operator"),
    resolve: denoProgram("operator", "operator/main.ts", permissionsOf("operator")),
  },
  {
    description: "demo app",
    matches: (i) => /demo[-_]app|keda-http-deno\/demo/.test(imageName(i)),
    resolve: denoProgram("demo app", "tests/fixtures/demo_app.ts"),
  },
  {
    description: "gRPC app",
    matches: (i) => /grpc[-_]app/.test(imageName(i)),
    resolve: denoProgram("gRPC app", "tests/fixtures/grpc_app.ts"),
  },
];

/** The image name the demo app answers to, for test manifests. */
export const DEMO_APP_IMAGE = "keda-http-deno/demo-app:dev";

/** The image name the gRPC test app (echo.Echo, h2c) answers to. */
export const GRPC_APP_IMAGE = "keda-http-deno/grpc-app:dev";

export interface ContainerCommand {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  denoCache: string[];
  description: string;
}

/**
 * The local command for a container: image table entry, then the
 * container's command/args overrides. Throws (with what to do) when the
 * image is unknown and the container has no command.
 */
export function containerCommand(
  container: { image?: string; command?: string[]; args?: string[] },
): ContainerCommand {
  const image = container.image ?? "";
  const mapping = IMAGE_TABLE.find((m) => m.matches(image));
  if (!mapping) {
    if (container.command?.length) {
      return {
        argv: [...container.command, ...(container.args ?? [])],
        cwd: "/",
        env: {},
        denoCache: [],
        description: "host command",
      };
    }
    throw new Error(
      `no local program for image "${image}": add it to tests/cluster/images.ts ` +
        `or give the container a command (run as a host binary)`,
    );
  }
  const r = mapping.resolve(image);
  const cmd = container.command;
  let entrypoint = r.entrypoint;
  if (cmd?.length) {
    // The image's own entrypoint path (`/keda`) maps to the local binary; any
    // other command runs as is (e.g. `sh -c …` in a mapped image).
    entrypoint = (mapping.commands ?? []).includes(cmd[0]!)
      ? [...r.entrypoint, ...cmd.slice(1)]
      : cmd;
  }
  return {
    argv: [...entrypoint, ...(container.args ?? r.args)],
    cwd: r.cwd,
    env: r.env,
    denoCache: r.denoCache,
    description: r.description,
  };
}
