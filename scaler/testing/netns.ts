/**
 * For tests (root only): a network namespace joined to the host by a veth
 * pair, with a few 10.245.X.Y addresses inside it. EndpointSlices need
 * addresses the API server accepts (not 127/8); processes started in the
 * namespace with `spawn` listen on them and the host reaches them through the
 * veth. Disposing deletes the namespace, which deletes the veth pair.
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

export async function createTestNetns(addressCount: number): Promise<TestNetns> {
  if (Deno.uid() !== 0) throw new Error("createTestNetns needs root (ip netns, veth)");
  const routes = await ip(["-4", "route", "show"]);
  let subnet = 0;
  for (let i = 0; i < 50 && subnet === 0; i++) {
    const x = 1 + (crypto.getRandomValues(new Uint8Array(1))[0]! % 250);
    if (!routes.includes(`10.245.${x}.`)) subnet = x;
  }
  if (subnet === 0) throw new Error("no free 10.245.X.0/24 subnet for a test network namespace");
  const id = rand(6);
  const name = `khds-${id}`;
  const hostIf = `ksh${id}`;
  const nsIf = `ksn${id}`;
  const hostAddress = `10.245.${subnet}.1`;
  const addresses = Array.from({ length: addressCount }, (_, i) => `10.245.${subnet}.${i + 2}`);
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
    await ip(["addr", "add", `${hostAddress}/24`, "dev", hostIf]);
    await ip(["link", "set", hostIf, "up"]);
    for (const a of addresses) await ip(["-n", name, "addr", "add", `${a}/24`, "dev", nsIf]);
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
