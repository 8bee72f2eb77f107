/**
 * Support of the accounts end-to-end suite: the link that makes the node's
 * namespace a host the controller reaches like a real one, and read-only
 * views of what the controller's own fleet driver and reconcile loop did
 * (heal records, the node's peers as the node lists them). Nothing here
 * writes a key, a peer or an endpoint: the controller does all of that.
 */
import type { RunningController } from "../../controller/serve.ts";
import { parseAwgPeers } from "../../controller/reconcile/observed.ts";
import { AWG } from "../../controller/reconcile/requests.ts";
import { INTERVAL_SETTING } from "../../controller/reconcile/reconciler.ts";
import type { Service } from "../../controller/service/service.ts";
import type { Db } from "../../controller/db/sqlite.ts";
import { eventually, type Lab } from "./agent_harness.ts";
import { run } from "./run.ts";

/**
 * A veth pair between the host's (root) namespace and `ns`, so that `ns`
 * has an address the test process dials like a node's public address. The
 * pair goes when the namespace is deleted (Lab.cleanup). The /30 is made
 * from the lab's random id, so parallel labs do not collide.
 */
export async function rootLink(lab: Lab, ns: string): Promise<{ hostIp: string; nsIp: string }> {
  const b = Uint8Array.fromHex(lab.id);
  const net = `10.${200 + (b[0] % 50)}.${b[1]}.${b[2] & 0xfc}`.split(".").map(Number);
  const hostIp = `${net[0]}.${net[1]}.${net[2]}.${net[3] + 1}`;
  const nsIp = `${net[0]}.${net[1]}.${net[2]}.${net[3] + 2}`;
  const hostDev = `r${lab.id}h`;
  const nsDev = `r${lab.id}n`;
  const steps: string[][] = [
    ["link", "add", hostDev, "type", "veth", "peer", "name", nsDev, "netns", ns],
    ["addr", "add", `${hostIp}/30`, "dev", hostDev],
    ["link", "set", hostDev, "up"],
  ];
  for (const s of steps) {
    const r = await run("ip", s);
    if (r.code !== 0) throw new Error(`ip ${s.join(" ")}: ${r.stderr.trim()}`);
  }
  await lab.exec(ns, ["ip", "addr", "add", `${nsIp}/30`, "dev", nsDev]);
  await lab.exec(ns, ["ip", "link", "set", nsDev, "up"]);
  return { hostIp, nsIp };
}

/** Sets the reconcile loop's sweep interval (the setting the Reconciler reads). */
export function setReconcileInterval(service: Service, ms: number, actor: string): void {
  const value = JSON.stringify(ms);
  service.mutate(
    { actor, action: "setting.set", target: { type: "setting", id: INTERVAL_SETTING } },
    (tx) => (tx.current ? tx.update({ value }) : tx.insert({ value })),
  );
}

/** One action of a reconcile heal record (reconcile/steps.ts describe). */
export interface HealAction {
  kind: string;
  public_key?: string;
  reason?: string;
  revision?: number;
}

/** Every action the reconcile loop recorded as a heal of `nodeId`, oldest first. */
export function healActions(db: Db, nodeId: string): HealAction[] {
  const rows = db.prepare(
    "SELECT actions FROM reconcile_heals WHERE node_id = ? ORDER BY created_at, rowid",
  ).all(nodeId) as { actions: string }[];
  return rows.flatMap((r) => JSON.parse(r.actions) as HealAction[]);
}

/**
 * Waits (bounded) until a heal row written after the first `before` actions
 * of `nodeId` holds a peer change for `peerKey` (`kind`, or a whole
 * PushConfig): the row is written once the node's pass is over, a moment
 * after the node already shows the change. Fails naming what was healed.
 */
export async function assertHealed(
  db: Db,
  nodeId: string,
  before: number,
  kind: "add-peer" | "remove-peer",
  peerKey: string,
): Promise<void> {
  let seen: HealAction[] = [];
  const found = () =>
    (seen = healActions(db, nodeId).slice(before)).some((a) =>
      (a.kind === kind && a.public_key === peerKey) || a.kind === "push-config"
    );
  if (!await eventually(found, 30_000)) {
    throw new Error(`no heal of the reconcile loop did ${kind}: ${JSON.stringify(seen)}`);
  }
}

/** The AmneziaWG public keys the node lists now, asked through the controller's fleet driver. */
export async function nodePeerKeys(ctl: RunningController, nodeId: string): Promise<Set<string>> {
  const res = await ctl.fleet.call(nodeId, "ListPeers", { protocol: AWG }, { timeoutMs: 10_000 });
  return new Set(parseAwgPeers(res).keys());
}

/** The node's AmneziaWG public key as it reports it (GetStatus through the fleet driver). */
export async function reportedNodeKey(ctl: RunningController, nodeId: string): Promise<string> {
  const res = await ctl.fleet.call(nodeId, "GetStatus", {}, { timeoutMs: 10_000 });
  return String((res.amneziawg as { public_key?: string } | undefined)?.public_key ?? "");
}

/** The controller-side public key of the device's peer on `nodeId` (node_peers). */
export function devicePeerKey(db: Db, deviceId: string, nodeId: string): string | undefined {
  const row = db.prepare(
    "SELECT public_key FROM node_peers WHERE device_id = ? AND node_id = ? AND protocol = 'awg'",
  ).get(deviceId, nodeId) as { public_key: string } | undefined;
  return row?.public_key;
}
