/**
 * The relay policy documents the controller sends: the revoked serials (the
 * controller's one revocation list) and the egress allow-list, numbered from
 * a counter in the database (`relay_policy_revision`, one row) that only
 * grows: each document takes the next number in a transaction, so
 * revisions stay monotonic across restarts and clock changes.
 *
 * A relay answers `stale: N` when it holds revision N ≥ the one sent
 * (another controller instance, or a database restored from an older
 * backup). `catchUp(N)` then moves the counter past N, by at most
 * MAX_CATCH_UP at a time so that a lying relay cannot run the fleet-wide
 * counter out of numbers, and the caller sends a fresh document once more.
 */
import { type PolicyDocument, targetKey } from "../../core/relay_policy.ts";
import { type Db, statement, transaction } from "../db/sqlite.ts";
import type { Revocations } from "../revocation.ts";

export const MAX_CATCH_UP = 1_000_000;

/** Takes the next policy revision (strictly greater than every one before). */
export function nextPolicyRevision(db: Db): number {
  return transaction(db, () => {
    statement(
      db,
      `UPDATE relay_policy_revision SET revision = revision + 1, version = version + 1,
         updated_at = ? WHERE id = 1`,
    ).run(new Date().toISOString());
    const row = statement(db, "SELECT revision FROM relay_policy_revision WHERE id = 1").get() as
      | { revision: number }
      | undefined;
    if (!row) throw new Error("relay_policy_revision has no row; the database is damaged");
    return Number(row.revision);
  });
}

/** The current (last issued) revision. */
export function currentPolicyRevision(db: Db): number {
  const row = statement(db, "SELECT revision FROM relay_policy_revision WHERE id = 1").get() as
    | { revision: number }
    | undefined;
  return Number(row?.revision ?? 0);
}

/**
 * Raises the counter to `relayRevision` if that is ahead of it but within
 * MAX_CATCH_UP. Returns true when the counter moved.
 */
export function catchUpPolicyRevision(db: Db, relayRevision: number): boolean {
  if (!Number.isSafeInteger(relayRevision)) return false;
  return transaction(db, () => {
    const current = currentPolicyRevision(db);
    if (relayRevision <= current || relayRevision - current > MAX_CATCH_UP) return false;
    statement(
      db,
      `UPDATE relay_policy_revision SET revision = ?, version = version + 1, updated_at = ?
       WHERE id = 1`,
    ).run(relayRevision, new Date().toISOString());
    return true;
  });
}

/**
 * The egress allow-list from the node table: `host:control_port` of every
 * node (not disabled) reached through relay `relayId`, or through any relay
 * when no relay is named (a caller that cannot tell which relay it talks to).
 * Sorted, so that an unchanged table gives an unchanged list.
 */
export function egressAllowFromNodes(db: Db, relayId?: string): string[] {
  const rows = statement(
    db,
    `SELECT DISTINCT host, control_port FROM nodes
     WHERE via_relay IS NOT NULL AND status != 'disabled'${
      relayId === undefined ? "" : " AND via_relay = ?"
    }`,
  ).all(...(relayId === undefined ? [] : [relayId])) as { host: string; control_port: number }[];
  return [...new Set(rows.map((r) => targetKey(r.host, Number(r.control_port))))].sort();
}

/** The relays table's id of the relay at `host` (tunnel targets are named by host). */
export function relayIdByHost(db: Db, host: string): string | undefined {
  const row = statement(db, "SELECT id FROM relays WHERE host = ?").get(host) as
    | { id: string }
    | undefined;
  return row?.id;
}

export class PolicySource {
  constructor(
    private readonly db: Db,
    private readonly revocations: Revocations,
    /** Overrides the allow-list taken from the node table. */
    private readonly egressAllow?: () => string[],
  ) {}

  /** The allow-list for relay `relayId` (every relayed node when undefined). */
  egressAllowFor(relayId?: string): string[] {
    return this.egressAllow ? this.egressAllow() : egressAllowFromNodes(this.db, relayId);
  }

  /** A fresh document with the next revision, for relay `relayId` (see egressAllowFor). */
  document(relayId?: string): PolicyDocument {
    return {
      v: 1,
      revision: nextPolicyRevision(this.db),
      revoked_serials: this.revocations.list.toArray(),
      egress_allow: this.egressAllowFor(relayId),
    };
  }

  catchUp(relayRevision: number): boolean {
    return catchUpPolicyRevision(this.db, relayRevision);
  }
}
