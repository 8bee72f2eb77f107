/**
 * Alerts (table `alerts`): conditions an operator should see, opened by the
 * controller and resolved when the condition ends. At most one open alert
 * of a kind per target (a unique index); opening one that is already open
 * and resolving one that is not are no-ops, so callers need not remember
 * what they did before a restart. Every change goes through the service
 * layer (audited).
 */
import type { Actor, Service } from "../service/service.ts";
import type { TargetType } from "../service/targets.ts";
import { statement } from "../db/sqlite.ts";

export type AlertSeverity = "info" | "warning" | "critical";

export interface Alert {
  id: string;
  kind: string;
  targetType: TargetType;
  targetId: string;
  severity: AlertSeverity;
  message: string;
  openedAt: Date;
  resolvedAt: Date | null;
  version: number;
}

interface Row {
  id: string;
  kind: string;
  target_type: TargetType;
  target_id: string;
  severity: AlertSeverity;
  message: string;
  opened_at: string;
  resolved_at: string | null;
  version: number;
}

function fromRow(r: Row): Alert {
  return {
    id: r.id,
    kind: r.kind,
    targetType: r.target_type,
    targetId: r.target_id,
    severity: r.severity,
    message: r.message,
    openedAt: new Date(r.opened_at),
    resolvedAt: r.resolved_at ? new Date(r.resolved_at) : null,
    version: r.version,
  };
}

export interface AlertSubject {
  kind: string;
  targetType: TargetType;
  targetId: string;
}

export class Alerts {
  constructor(private readonly service: Service) {}

  /** The open alert of this kind on this target, if any. */
  open(s: AlertSubject): Alert | undefined {
    const row = statement(
      this.service.db,
      `SELECT * FROM alerts WHERE kind = ? AND target_type = ? AND target_id = ?
       AND resolved_at IS NULL`,
    ).get(s.kind, s.targetType, s.targetId) as Row | undefined;
    return row ? fromRow(row) : undefined;
  }

  /** Open alerts, newest first (all targets, or one). */
  list(filter: { targetType?: TargetType; targetId?: string; openOnly?: boolean } = {}): Alert[] {
    const where: string[] = [];
    const args: string[] = [];
    if (filter.targetType) where.push("target_type = ?"), args.push(filter.targetType);
    if (filter.targetId) where.push("target_id = ?"), args.push(filter.targetId);
    if (filter.openOnly ?? true) where.push("resolved_at IS NULL");
    const sql = `SELECT * FROM alerts ${
      where.length ? `WHERE ${where.join(" AND ")}` : ""
    } ORDER BY opened_at DESC, id`;
    return (statement(this.service.db, sql).all(...args) as unknown as Row[]).map(fromRow);
  }

  /** Opens the alert unless one is open already; returns the open one. */
  raise(actor: Actor, s: AlertSubject, severity: AlertSeverity, message: string): Alert {
    return this.service.transaction(() => {
      const existing = this.open(s);
      if (existing) return existing;
      const id = crypto.randomUUID();
      this.service.mutate(
        { actor, action: "alert.open", target: { type: "alert", id }, expectVersion: 0 },
        (tx) =>
          tx.insert({
            kind: s.kind,
            target_type: s.targetType,
            target_id: s.targetId,
            severity,
            message: message.slice(0, 1000),
            opened_at: tx.now,
          }),
      );
      return this.open(s)!;
    });
  }

  /** Resolves the open alert, if any; returns whether there was one. */
  resolve(actor: Actor, s: AlertSubject): boolean {
    return this.service.transaction(() => {
      const existing = this.open(s);
      if (!existing) return false;
      this.service.mutate(
        {
          actor,
          action: "alert.resolve",
          target: { type: "alert", id: existing.id },
          expectVersion: existing.version,
        },
        (tx) => tx.update({ resolved_at: tx.now }),
      );
      return true;
    });
  }
}
