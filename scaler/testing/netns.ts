/**
 * For tests (root only): a network namespace joined to the host by a veth
 * pair, with a few addresses from a /29 of 10.247.0.0/16 inside it (other
 * test helpers use 10.245/16, the local cluster 10.244/16 and 10.96/16).
 * EndpointSlices need addresses the API server accepts (not 127/8);
 * processes started in the namespace with `spawn` listen on them and the
 * host reaches them through the veth. Disposing deletes the namespace, which
 * deletes the veth pair; namespaces left by a test process that died are
 * removed by the next createTestNetns.
 */

async function ip(args: string[], allowFail = false): Promise<string> {
  const out = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success && !allowFail) {
    throw new Error(`ip ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return text;
}

function rand(n: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return [...crypto.getRandomValues(new Uint8Array(n))].map((b) => alphabet[b % 36]).join("");
}

export interface TestNetns extends AsyncDisposable {
  name: string;
  /** The host end's address. */
  hostAddress: string;
  /** Addresses inside the namespace. */
  addresses: string[];
  /** Starts a process inside the namespace. */
  spawn(cmd: string, args: string[], options?: Deno.CommandOptions): Deno.ChildProcess;
  close(): Promise<void>;
}

const PREFIX = "khds-";

function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Deletes namespaces (and their veth) of test processes that are gone. */
async function cleanupLeftovers(): Promise<void> {
  const list = await ip(["netns", "list"], true);
  for (const line of list.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const m = /^khds-(\d+)-([a-z0-9]+)$/.exec(name);
    if (m && !alive(Number(m[1]))) {
      await ip(["netns", "del", name], true);
      await ip(["link", "del", `ksh${m[2]}`], true);
    }
  }
}

export async function createTestNetns(addressCount: number): Promise<TestNetns> {
  if (Deno.uid() !== 0) throw new Error("createTestNetns needs root (ip netns, veth)");
  if (addressCount < 1 || addressCount > 5) throw new Error("createTestNetns: 1 to 5 addresses");
  await cleanupLeftovers();
  const used = await ip(["-4", "-o", "addr"]) + await ip(["-4", "route", "show"]);
  let base = "";
  for (let i = 0; i < 50 && base === ""; i++) {
    const [a, b] = crypto.getRandomValues(new Uint8Array(2));
    const candidate = `10.247.${a}.${(b! % 32) * 8}`;
    if (!used.includes(candidate.slice(0, candidate.lastIndexOf(".") + 1))) base = candidate;
  }
  if (base === "") throw new Error("no free /29 in 10.247.0.0/16 for a test network namespace");
  const prefix = base.slice(0, base.lastIndexOf(".") + 1);
  const first = Number(base.slice(base.lastIndexOf(".") + 1));
  const id = rand(6);
  const name = `${PREFIX}${Deno.pid}-${id}`;
  const hostIf = `ksh${id}`;
  const nsIf = `ksn${id}`;
  const hostAddress = `${prefix}${first + 1}`;
  const addresses = Array.from({ length: addressCount }, (_, i) => `${prefix}${first + 2 + i}`);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await ip(["netns", "del", name], true);
    await ip(["link", "del", hostIf], true);
  };
  try {
    await ip(["netns", "add", name]);
    await ip(["link", "add", hostIf, "type", "veth", "peer", "name", nsIf]);
    await ip(["link", "set", nsIf, "netns", name]);
    await ip(["addr", "add", `${hostAddress}/29`, "dev", hostIf]);
    await ip(["link", "set", hostIf, "up"]);
    for (const a of addresses) await ip(["-n", name, "addr", "add", `${a}/29`, "dev", nsIf]);
    await ip(["-n", name, "link", "set", nsIf, "up"]);
    await ip(["-n", name, "link", "set", "lo", "up"]);
  } catch (e) {
    await close();
    throw e;
  }
  return {
    name,
    hostAddress,
    addresses,
    spawn(cmd, args, options = {}) {
      return new Deno.Command("ip", {
        ...options,
        args: ["netns", "exec", name, cmd, ...args],
      }).spawn();
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
