/**
 * `deno task deploy`: installs k8s/ with kubectl, images and namespace
 * substituted: KEDAHTTP_*_IMAGE (see image.ts) and KEDAHTTP_NAMESPACE
 * (default kedahttp). `--dry-run=server` validates without changing anything;
 * `--render` prints the manifests instead of applying them.
 */
import { stringify } from "yaml";
import { imageNames } from "./image.ts";
import { PROGRAMS, repoPath } from "./programs.ts";
import { createLogger } from "../shared/log.ts";

const log = createLogger({ fields: { component: "deploy" } });

/** The overlay kustomization that points at the k8s/ base. */
export function overlay(
  images: Record<string, string>,
  namespace: string,
  baseRel: string,
): Record<string, unknown> {
  return {
    apiVersion: "kustomize.config.k8s.io/v1beta1",
    kind: "Kustomization",
    namespace,
    resources: [baseRel],
    images: PROGRAMS.map((p) => {
      const ref = images[p]!;
      // Split "registry:5000/repo/name:tag" (or @digest) into name and tag.
      const at = ref.indexOf("@");
      if (at >= 0) {
        return {
          name: `keda-http-deno/${p}`,
          newName: ref.slice(0, at),
          digest: ref.slice(at + 1),
        };
      }
      const slash = ref.lastIndexOf("/");
      const colon = ref.lastIndexOf(":");
      return colon > slash
        ? {
          name: `keda-http-deno/${p}`,
          newName: ref.slice(0, colon),
          newTag: ref.slice(colon + 1),
        }
        : { name: `keda-http-deno/${p}`, newName: ref, newTag: "latest" };
    }),
    patches: [{
      target: { group: "keda.sh", kind: "ScaledObject", name: "keda-add-ons-http-interceptor" },
      patch: stringify([{
        op: "replace",
        path: "/spec/triggers/0/metadata/scalerAddress",
        value: `keda-add-ons-http-external-scaler.${namespace}:9090`,
      }]),
    }],
  };
}

/** Writes the overlay under dist/ and returns its directory. */
export async function writeOverlay(env = Deno.env.toObject()): Promise<string> {
  const namespace = env.KEDAHTTP_NAMESPACE || "kedahttp";
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namespace) || namespace.length > 63) {
    throw new Error(
      `KEDAHTTP_NAMESPACE="${namespace}" is not a valid namespace name (lower-case letters, digits, '-')`,
    );
  }
  const images = await imageNames(env);
  const dir = repoPath("dist/deploy");
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/kustomization.yaml`,
    stringify(overlay(images, namespace, "../../k8s")),
  );
  return dir;
}

if (import.meta.main) {
  try {
    const dir = await writeOverlay();
    const kubectl = Deno.env.get("KUBECTL") ?? "kubectl";
    const render = Deno.args.includes("--render");
    const args = render
      ? ["kustomize", dir]
      : ["apply", "--server-side", "--force-conflicts", "-k", dir, ...Deno.args];
    log.info(render ? "rendering" : "applying", { overlay: dir, kubectl });
    let status: Deno.CommandStatus;
    try {
      status = await new Deno.Command(kubectl, { args, stdout: "inherit", stderr: "inherit" })
        .spawn().status;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new Error(
          `${kubectl} not found: install kubectl, or set KUBECTL to its path (tests/cluster builds one)`,
        );
      }
      throw e;
    }
    if (!status.success) Deno.exit(status.code);
  } catch (e) {
    log.error((e as Error).message);
    Deno.exit(1);
  }
}
