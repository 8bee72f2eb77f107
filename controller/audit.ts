/**
 * The hash-chained audit log (`audit_log`, `audit_head`). Entries are
 * appended only by the service layer, in the transaction of the change they
 * record; `audit_verify.ts` proves the chain.
 *
 * Entry hash (version 1), lowercase hex:
 *
 *   SHA-256(UTF-8(JSON.stringify(["pharos-audit/1", seq, time, actor,
 *     action, target_type, target_id, before_digest, after_digest,
 *     prev_hash])))
 *
 * seq is an integer, the digests are hex strings or null, every other field
 * a string; `prev_hash` of seq 1 is 64 zeros (GENESIS_HASH). A JSON array
 * of strings, integers and nulls has one spelling, so the encoding is
 * canonical. The digests are SHA-256 of the target row's canonical JSON
 * (service/canonical.ts) before and after the change: the log names what
 * changed without holding any of it.
 *
 * `audit_head` (one row) holds the entry count, last seq and last hash,
 * updated with every append, so deleting the newest entries is detected.
 */
import { PharosError } from "../core/errors.ts";
import { type Db, statement } from "./db/sqlite.ts";
import { sha256Hex } from "./service/canonical.ts";

/** Codes: `damaged` (audit_head missing), `broken` (see audit_verify.ts). */
export class AuditError extends PharosError {}

export const GENESIS_HASH = "0".repeat(64);
export const AUDIT_HASH_TAG = "pharos-audit/1";

export interface AuditEntry {
  seq: number;
  time: string;
  actor: string;
  action: string;
  target_type: string;
  target_id: string;
  before_digest: string | null;
  after_digest: string | null;
  prev_hash: string;
  hash: string;
}

export interface AuditHead {
  count: number;
  last_seq: number;
  last_hash: string;
}

/** The hash of an entry (every field but `hash`). */
export function auditHash(e: Omit<AuditEntry, "hash">): string {
  return sha256Hex(JSON.stringify([
    AUDIT_HASH_TAG,
    e.seq,
    e.time,
    e.actor,
    e.action,
    e.target_type,
    e.target_id,
    e.before_digest,
    e.after_digest,
    e.prev_hash,
  ]));
}

export function readAuditHead(db: Db): AuditHead | undefined {
  return statement(db, "SELECT count, last_seq, last_hash FROM audit_head WHERE id = 1").get() as
    | AuditHead
    | undefined;
}

/**
 * Appends one entry after the head and moves the head. Must run inside the
 * caller's write transaction (the service layer's).
 */
export function appendAudit(
  db: Db,
  e: Omit<AuditEntry, "seq" | "prev_hash" | "hash">,
): AuditEntry {
  const head = readAuditHead(db);
  if (!head) {
    throw new AuditError(
      "damaged",
      "the audit_head row is missing: the database was tampered with or damaged; restore it from a backup",
    );
  }
  const unhashed = { ...e, seq: head.last_seq + 1, prev_hash: head.last_hash };
  const entry: AuditEntry = { ...unhashed, hash: auditHash(unhashed) };
  statement(
    db,
    `INSERT INTO audit_log (seq, time, actor, action, target_type, target_id, before_digest,
       after_digest, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(
    entry.seq,
    entry.time,
    entry.actor,
    entry.action,
    entry.target_type,
    entry.target_id,
    entry.before_digest,
    entry.after_digest,
    entry.prev_hash,
    entry.hash,
  );
  statement(
    db,
    `UPDATE audit_head SET count = count + 1, last_seq = ?, last_hash = ?, version = version + 1,
       updated_at = ? WHERE id = 1`,
  ).run(entry.seq, entry.hash, entry.time);
  return entry;
}

/** The newest `n` entries, oldest first. */
export function auditTail(db: Db, n: number): AuditEntry[] {
  const rows = statement(
    db,
    "SELECT * FROM (SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?) ORDER BY seq",
  ).all(n) as unknown as AuditEntry[];
  return rows.map((r) => ({ ...r }));
}
