/**
 * Throwaway network namespaces for tests that need root. A fresh namespace
 * is made quiet before any link exists in it: no IPv6 link-local addresses,
 * no router advertisements or SLAAC, no duplicate-address detection. Without
 * that the kernel keeps adding addresses and `local` routes for seconds
 * after a link comes up (later still on a busy machine), and any test that
 * compares snapshots of the namespace's state would race it.
 */
import { run } from "./run.ts";

/** IPv6 settings applied to `default` (inherited by new links) and `all`. */
const QUIET_IPV6: Record<string, string> = {
  addr_gen_mode: "1", // no link-local address generated
  accept_dad: "0",
  dad_transmits: "0",
  accept_ra: "0",
  autoconf: "0",
  router_solicitations: "0",
};

/** Runs a command inside the namespace; fails with its stderr when it exits non-zero. */
export async function inNamespace(ns: string, argv: string[]): Promise<string> {
  const r = await run("ip", ["netns", "exec", ns, ...argv]);
  if (r.code !== 0) {
    throw new Error(`[${ns}] ${argv.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** Creates a namespace with IPv6 autoconfiguration and DAD off. */
export async function addQuietNamespace(ns: string): Promise<void> {
  const r = await run("ip", ["netns", "add", ns]);
  if (r.code !== 0) throw new Error(`ip netns add ${ns}: ${r.stderr.trim()}`);
  const settings = ["all", "default"].flatMap((scope) =>
    Object.entries(QUIET_IPV6).map(([k, v]) => `net.ipv6.conf.${scope}.${k}=${v}`)
  );
  await inNamespace(ns, ["sysctl", "-q", "-w", ...settings]);
}

/**
 * Waits (bounded) until no IPv6 address in the namespace is tentative, so
 * the kernel has finished adding addresses and their routes. In a quiet
 * namespace this returns at once; it guards links made before the settings.
 */
export async function settleNamespace(ns: string, maxPolls = 500): Promise<void> {
  for (let i = 0; i < maxPolls; i++) {
    const out = await inNamespace(ns, ["ip", "-6", "addr", "show", "tentative"]);
    if (out.trim() === "") return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`[${ns}] IPv6 addresses still tentative after ${maxPolls} polls`);
}

/** Deletes the namespace; never throws (used in `finally`). */
export async function deleteNamespace(ns: string): Promise<void> {
  await run("ip", ["netns", "del", ns]).catch(() => {});
}
