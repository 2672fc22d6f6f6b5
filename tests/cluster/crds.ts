/**
 * CustomResourceDefinitions every test cluster gets: ours (k8s/crd/*.yaml)
 * and KEDA's real ones, taken from KEDA's published Go module (pinned in
 * paths.ts) via `go mod download`, so nothing of KEDA is vendored here.
 */

import type { Logger } from "../../shared/log.ts";
import { sleep } from "../../shared/lifetime.ts";
import { type KubeClient, type KubeObject, parseManifests } from "./kube_client.ts";
import { cacheDir, KEDA_MODULE, KEDA_VERSION, REPO_ROOT } from "./paths.ts";
import { run } from "./processes.ts";

async function yamlFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && /\.ya?ml$/.test(e.name)) files.push(`${dir}/${e.name}`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return files.sort();
}

/**
 * Directory holding KEDA's CRD YAML: $KEDAHTTP_KEDA_CRD_DIR, else
 * config/crd/bases of the pinned module.
 */
export async function kedaCrdDir(): Promise<string> {
  const explicit = Deno.env.get("KEDAHTTP_KEDA_CRD_DIR");
  if (explicit) return explicit;
  // `go mod download` takes noticeable time even when cached; remember the answer.
  const memo = `${cacheDir()}/keda-${KEDA_VERSION}.crd-dir`;
  try {
    const dir = (await Deno.readTextFile(memo)).trim();
    if ((await yamlFiles(dir)).length) return dir;
  } catch {
    // Not memoised yet.
  }
  const out = await run("go", ["mod", "download", "-json", `${KEDA_MODULE}@${KEDA_VERSION}`], {
    what: `go mod download ${KEDA_MODULE}@${KEDA_VERSION} (needs Go and the Go module proxy)`,
    env: { GOFLAGS: "-mod=mod" },
  });
  const info = JSON.parse(out.stdout) as { Dir?: string; Error?: string };
  if (!info.Dir) {
    throw new Error(`go mod download ${KEDA_MODULE}@${KEDA_VERSION}: ${info.Error ?? "no Dir"}`);
  }
  const dir = `${info.Dir}/config/crd/bases`;
  await Deno.mkdir(cacheDir(), { recursive: true });
  await Deno.writeTextFile(memo, dir);
  return dir;
}

/** Reads all CRD manifests to install (ours, then KEDA's). */
export async function crdManifests(): Promise<KubeObject[]> {
  const files = [
    ...await yamlFiles(`${REPO_ROOT}/k8s/crd`),
    ...await yamlFiles(await kedaCrdDir()),
  ];
  const objects: KubeObject[] = [];
  for (const f of files) {
    try {
      objects.push(
        ...parseManifests(await Deno.readTextFile(f)).filter((o) =>
          o.kind === "CustomResourceDefinition"
        ),
      );
    } catch (e) {
      throw new Error(`CRD file ${f}: ${(e as Error).message}`);
    }
  }
  return objects;
}

/** Applies the CRDs and waits until each is Established. */
export async function installCrds(
  client: KubeClient,
  log: Logger,
  options: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<string[]> {
  const crds = await crdManifests();
  await Promise.all(
    crds.map((crd) =>
      client.apply(crd, { fieldManager: "keda-http-deno-cluster" }).catch((e) => {
        throw new Error(`installing CRD ${crd.metadata?.name}: ${(e as Error).message}`);
      })
    ),
  );
  const names = crds.map((c) => c.metadata!.name!);
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  let pending = [...names];
  while (pending.length) {
    options.signal?.throwIfAborted();
    const still: string[] = [];
    for (const name of pending) {
      const crd = await client.get<
        { status?: { conditions?: Array<{ type: string; status: string }> } }
      >(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
      const ok = crd.status?.conditions?.some((c) =>
        c.type === "Established" && c.status === "True"
      );
      if (!ok) still.push(name);
    }
    pending = still;
    if (!pending.length) break;
    if (Date.now() > deadline) {
      throw new Error(`CRDs not Established in time: ${pending.join(", ")}`);
    }
    await sleep(100, options.signal);
  }
  log.debug("CRDs established", { crds: names });
  return names;
}
