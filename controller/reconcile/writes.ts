/**
 * Every database write reconcile makes, each through the service layer (so
 * each is an audit entry, actor `system:reconcile`):
 *
 * - inner-link allocations (table node_links), one per (entry, exit) edge a
 *   path uses (CONTRACTS.md §5.6): the smallest free slot on the entry, a
 *   fresh preshared key (sealed), revision 1; a row whose edge no path uses
 *   any more stays until its link is down on the entry (`removeLink`);
 * - revisions raised above what a node reports, for nodes and links;
 * - heal records (table reconcile_heals): one row per node and pass listing
 *   what was healed. A row of its own, rather than an update of the node,
 *   keeps heals from moving the node's `version` under an operator's edit
 *   (a false 409), and the list stays queryable; the audit entry's
 *   after-digest makes it tamper-evident;
 * - the endpoint ranges a node confirmed (table node_endpoint_confirmations,
 *   endpoint_confirmations.ts), written only when they changed: observed
 *   state like a heal, so a row of its own for the same reasons;
 * - the newest confirmation a finished profile reseal covered (a settings
 *   row outside the editable settings, `recordResealedThrough`).
 */
import { allocateInnerLink } from "../../core/dataplane/mod.ts";
import type { Actor, Service } from "../service/service.ts";
import { type FleetRows, pathEdges } from "./desired.ts";
import { linkPskLabel, newPsk, type Sealer, sealPsk } from "./psk.ts";
import { statement } from "../db/sqlite.ts";
import type { PortRangeForward } from "../../core/dataplane/mod.ts";
import { rangesJson, RESEALED_THROUGH_KEY } from "./endpoint_confirmations.ts";

/** Creates the node_links rows missing for the paths' edges; returns how many it made. */
export async function allocateLinks(
  service: Service,
  sealer: Sealer,
  actor: Actor,
  rows: FleetRows,
): Promise<number> {
  const have = new Set(rows.links.map((l) => `${l.entry_node_id}>${l.exit_node_id}`));
  let made = 0;
  for (const [key, edge] of pathEdges(rows.paths)) {
    if (have.has(key)) continue;
    const id = crypto.randomUUID();
    const pskSealed = await sealPsk(sealer, newPsk(), linkPskLabel(id));
    service.mutate(
      { actor, action: "node_link.create", target: { type: "node_link", id }, expectVersion: 0 },
      (tx) => {
        const used = (statement(tx.db, "SELECT link_index FROM node_links WHERE entry_node_id = ?")
          .all(edge.entry) as { link_index: number }[]).map((r) => r.link_index);
        tx.insert({
          entry_node_id: edge.entry,
          exit_node_id: edge.exit,
          link_index: allocateInnerLink(used).index,
          psk_sealed: pskSealed,
          revision: 1,
          created_at: tx.now,
        });
      },
    );
    made++;
  }
  return made;
}

/** Raises a link's ConfigureInnerLink revision to at least `revision`; returns the new one. */
export function raiseLinkRevision(
  service: Service,
  actor: Actor,
  linkId: string,
  revision: number,
): number {
  return service.mutate(
    { actor, action: "node_link.revision", target: { type: "node_link", id: linkId } },
    (tx) => {
      const cur = Number(tx.current?.revision ?? 0);
      if (cur >= revision) return cur;
      tx.update({ revision });
      return revision;
    },
  );
}

/** Deletes the row of a link that is down on its entry node. */
export function removeLink(service: Service, actor: Actor, linkId: string): void {
  service.mutate(
    { actor, action: "node_link.remove", target: { type: "node_link", id: linkId } },
    (tx) => {
      if (tx.current !== undefined) tx.remove();
    },
  );
}

/** Raises a node's desired revision to at least `revision` (a push above the node's). */
export function raiseNodeRevision(
  service: Service,
  actor: Actor,
  nodeId: string,
  revision: number,
): void {
  service.mutate(
    { actor, action: "node.revision", target: { type: "node", id: nodeId } },
    (tx) => {
      if (Number(tx.current?.desired_revision ?? 0) < revision) {
        tx.update({ desired_revision: revision });
      }
    },
  );
}

/**
 * Records what was healed on a node in one pass: one reconcile_heals row,
 * so one audit entry (action `node.heal`) whose after-digest covers the list.
 */
export function recordHeal(
  service: Service,
  actor: Actor,
  nodeId: string,
  pass: number,
  actions: Record<string, unknown>[],
): string {
  const id = crypto.randomUUID();
  service.mutate(
    { actor, action: "node.heal", target: { type: "reconcile_heal", id }, expectVersion: 0 },
    (tx) =>
      tx.insert({
        node_id: nodeId,
        sweep: pass,
        actions: JSON.stringify(actions),
        created_at: tx.now,
      }),
  );
  return id;
}

/**
 * Records the endpoint ranges a node answered it DNATs; returns whether
 * they differ from the recorded ones (a node's first answer always does,
 * an empty one included). The same list again writes nothing.
 */
export function recordConfirmedRanges(
  service: Service,
  actor: Actor,
  nodeId: string,
  ranges: readonly PortRangeForward[],
): boolean {
  const json = rangesJson(ranges);
  return service.mutate(
    {
      actor,
      action: "node_endpoint_confirmation.record",
      target: { type: "node_endpoint_confirmation", id: nodeId },
    },
    (tx) => {
      if (tx.current === undefined) {
        tx.insert({ ranges: json, confirmed_at: tx.now });
        return true;
      }
      if (tx.current.ranges === json) return false;
      tx.update({ ranges: json, confirmed_at: tx.now });
      return true;
    },
  );
}

/**
 * Records that profiles were resealed (or tried until the retries were
 * used up) after every confirmation up to `through`; never moves back.
 */
export function recordResealedThrough(service: Service, actor: Actor, through: string): void {
  const json = JSON.stringify(through);
  service.mutate(
    {
      actor,
      action: "setting.set",
      target: { type: "setting", id: RESEALED_THROUGH_KEY },
    },
    (tx) => {
      if (tx.current === undefined) {
        tx.insert({ value: json });
        return;
      }
      let old: unknown = null;
      try {
        old = JSON.parse(String(tx.current.value));
      } catch { /* replaced */ }
      if (typeof old === "string" && old >= through) return;
      tx.update({ value: json });
    },
  );
}
