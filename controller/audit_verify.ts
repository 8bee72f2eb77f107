/**
 * Proves the audit chain (audit.ts): walks every entry in seq order and
 * reports the first break, located and named:
 *
 * - `deleted`: a seq is missing;
 * - `rewritten`: an entry follows a hash no entry has any more (the one
 *   before it was edited and re-hashed, or deleted and the rest renumbered);
 * - `inserted`: an entry follows an older one than its predecessor (the
 *   entries between do not belong);
 * - `reordered`: an entry follows a newer one;
 * - `edited`: an entry's fields do not match its hash;
 * - `truncated` / `appended` / `head`: the log does not end where
 *   `audit_head` says.
 *
 * Limit: the chain has no secret, so someone who can write the database and
 * recomputes every later hash and the head leaves a consistent log. Keep a
 * copy of `audit verify`'s last hash elsewhere (the SIEM stream will carry
 * every entry) to catch that.
 */
import { type AuditEntry, AuditError, auditHash, GENESIS_HASH, readAuditHead } from "./audit.ts";
import type { Db } from "./db/sqlite.ts";

export type AuditBreak =
  | "deleted"
  | "rewritten"
  | "inserted"
  | "reordered"
  | "edited"
  | "truncated"
  | "appended"
  | "head";

export type AuditVerdict =
  | { ok: true; count: number; lastSeq: number; lastHash: string }
  | { ok: false; seq: number; kind: AuditBreak; detail: string };

export function verifyAudit(db: Db): AuditVerdict {
  const head = readAuditHead(db);
  if (!head) {
    throw new AuditError(
      "damaged",
      "the audit_head row is missing: the database was tampered with or damaged; restore it from a backup",
    );
  }
  const bySeqOfHash = db.prepare("SELECT seq FROM audit_log WHERE hash = ? ORDER BY seq LIMIT 1");
  const rows = db.prepare("SELECT * FROM audit_log ORDER BY seq").iterate() as IterableIterator<
    AuditEntry
  >;
  let expected = 1;
  let prevHash = GENESIS_HASH;
  let count = 0;
  for (const e of rows) {
    const seq = Number(e.seq);
    if (seq !== expected) {
      return broken(
        expected,
        "deleted",
        seq === expected + 1
          ? `seq ${expected} is missing (deleted)`
          : `seqs ${expected}-${seq - 1} are missing (deleted)`,
      );
    }
    if (e.prev_hash !== prevHash) {
      const follows = bySeqOfHash.get(e.prev_hash) as { seq: number } | undefined;
      const before = seq - 1;
      if (follows === undefined && before === 0) {
        return broken(seq, "edited", "seq 1 does not start the chain (its prev_hash is not zero)");
      }
      if (follows === undefined) {
        return broken(
          seq,
          "rewritten",
          `seq ${seq} follows an entry that is no longer in the log: seq ${before} was edited and re-hashed, or an entry before seq ${seq} was deleted and the rest renumbered`,
        );
      }
      const f = Number(follows.seq);
      return f < before
        ? broken(
          f + 1,
          "inserted",
          `seq ${seq} follows seq ${f}: ${
            f + 1 === before ? `seq ${before} was` : `seqs ${f + 1}-${before} were`
          } inserted`,
        )
        : broken(seq, "reordered", `seq ${seq} follows seq ${f}, which comes after it: reordered`);
    }
    if (auditHash(e) !== e.hash) {
      return broken(seq, "edited", `seq ${seq} does not match its hash: edited`);
    }
    prevHash = e.hash;
    count++;
    expected++;
  }
  const lastSeq = expected - 1;
  if (lastSeq < head.last_seq) {
    return broken(
      lastSeq + 1,
      "truncated",
      `the log ends at seq ${lastSeq} but the head records ${head.last_seq}: the last ${
        head.last_seq - lastSeq
      } entries were deleted`,
    );
  }
  if (lastSeq > head.last_seq) {
    return broken(
      head.last_seq + 1,
      "appended",
      `the head ends at seq ${head.last_seq}, but the log goes on to seq ${lastSeq}: entries were added outside the service layer`,
    );
  }
  if (prevHash !== head.last_hash || count !== head.count) {
    return broken(
      lastSeq,
      "head",
      `seq ${lastSeq} and the head disagree (hash ${prevHash.slice(0, 16)}… vs ${
        head.last_hash.slice(0, 16)
      }…, ${count} vs ${head.count} entries): the last entry or the head was rewritten`,
    );
  }
  return { ok: true, count, lastSeq, lastHash: prevHash };
}

function broken(seq: number, kind: AuditBreak, detail: string): AuditVerdict {
  return { ok: false, seq, kind, detail };
}
