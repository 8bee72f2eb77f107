/** `cox audit verify|tail`. */
import type { CliIo } from "../../relay/host/cli_support.ts";
import { AuditError, auditTail } from "../audit.ts";
import { verifyAudit } from "../audit_verify.ts";
import { formatTable } from "./format.ts";
import { withService } from "./with_state.ts";

/** The most `audit tail -n` prints. */
export const MAX_TAIL = 10_000;

/** Exit 0 with "audit log OK …", or exit 1 naming the first broken entry. */
export async function auditVerify(state: string, io: CliIo): Promise<number> {
  const v = await withService(state, (svc) => verifyAudit(svc.db));
  if (!v.ok) {
    throw new AuditError("broken", `audit log broken at seq ${v.seq} (${v.kind}): ${v.detail}`);
  }
  io.out(`audit log OK: ${v.count} entries, last seq ${v.lastSeq}, last hash ${v.lastHash}\n`);
  return 0;
}

const short = (digest: string | null) => digest === null ? "-" : digest.slice(0, 12);

export async function auditTailCmd(state: string, n: number, io: CliIo): Promise<number> {
  const entries = await withService(state, (svc) => auditTail(svc.db, n));
  if (entries.length === 0) {
    io.out("the audit log is empty\n");
    return 0;
  }
  io.out(formatTable(
    ["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "BEFORE", "AFTER", "HASH"],
    entries.map((e) => [
      String(e.seq),
      e.time,
      e.actor,
      e.action,
      `${e.target_type}:${e.target_id}`,
      short(e.before_digest),
      short(e.after_digest),
      short(e.hash),
    ]),
  ));
  return 0;
}
