/**
 * The controller side of the reconcile tests and benchmark: a state
 * directory with its database (all migrations) and keystore, nodes made
 * active, and desired peers written through the service layer as the
 * accounts code writes them.
 */
import { openDatabase } from "../../controller/db/sqlite.ts";
import { Keystore } from "../../controller/keystore.ts";
import { peerPskLabel, sealPsk } from "../../controller/reconcile/psk.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import type { Db } from "../../controller/db/sqlite.ts";

export const ACTOR = "cli:test";

export interface ControllerFixture {
  dir: string;
  db: Db;
  service: Service;
  nodes: Nodes;
  keystore: Keystore;
  close(): void;
}

/** A fresh state directory under `parent`. */
export async function controllerFixture(parent: string): Promise<ControllerFixture> {
  const dir = `${parent}/controller`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const db = openDatabase(`${dir}/pharos.db`);
  const service = new Service(db);
  return {
    dir,
    db,
    service,
    nodes: new Nodes(service),
    keystore: await Keystore.create(dir),
    close: () => db.close(),
  };
}

/** A node row made active with a certificate (as onboarding leaves it); returns its id. */
export function addNode(f: ControllerFixture, name: string, host = "192.0.2.10"): string {
  const n = f.nodes.create(ACTOR, { name, host });
  f.service.mutate(
    { actor: ACTOR, action: "node.onboard", target: { type: "node", id: n.id } },
    (tx) => tx.update({ status: "active", onboarding: "done", cert_pem: "(test: not used)" }),
  );
  return n.id;
}

export interface PeerInput {
  publicKey: string;
  allowedIps: string[];
  psk?: string;
  protocol?: "awg" | "xray";
  pathId?: string;
}

/** A desired peer (node_peers row, PSK sealed); returns its id. */
export async function addPeer(f: ControllerFixture, nodeId: string, p: PeerInput): Promise<string> {
  const id = crypto.randomUUID();
  const sealed = p.psk ? await sealPsk(f.keystore, p.psk, peerPskLabel(id)) : null;
  f.service.mutate(
    {
      actor: ACTOR,
      action: "node_peer.create",
      target: { type: "node_peer", id },
      expectVersion: 0,
    },
    (tx) =>
      tx.insert({
        node_id: nodeId,
        public_key: p.publicKey,
        psk_sealed: sealed,
        allowed_ips: JSON.stringify(p.allowedIps),
        protocol: p.protocol ?? "awg",
        path_id: p.pathId ?? null,
        created_at: tx.now,
      }),
  );
  return id;
}

export interface HealRow {
  id: string;
  node_id: string;
  sweep: number;
  actions: Record<string, unknown>[];
}

/** The heal records of a node, oldest first. */
export function healsOf(db: Db, nodeId: string): HealRow[] {
  return (db.prepare(
    "SELECT id, node_id, sweep, actions FROM reconcile_heals WHERE node_id = ? ORDER BY sweep, created_at",
  ).all(nodeId) as unknown as (Omit<HealRow, "actions"> & { actions: string })[]).map((r) => ({
    ...r,
    actions: JSON.parse(r.actions),
  }));
}

/** The audit entry of a heal record (action node.heal), if any. */
export function healAudit(db: Db, healId: string): { seq: number; actor: string } | undefined {
  return db.prepare(
    "SELECT seq, actor FROM audit_log WHERE action = 'node.heal' AND target_type = 'reconcile_heal' AND target_id = ?",
  ).get(healId) as { seq: number; actor: string } | undefined;
}
