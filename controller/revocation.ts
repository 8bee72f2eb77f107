/**
 * The controller's one list of revoked certificates (devices, relays,
 * nodes, controller certificates), kept in the `revoked_certificates` table.
 * The in-memory RevocationList it maintains is the one every controller-side
 * verifier holds (the gRPC guard, relay dials, the embedded relay) and the
 * one pushed to remote relays. Subscribers hear about each new entry so that
 * live sessions of a revoked relay can be closed and relays told at once.
 *
 * Rows are never removed by this module; they are written through the
 * service layer (audited). Entries written by another process on the same
 * database (e.g. a CLI command) are picked up by `sync()`, which the
 * controller runs on a short interval.
 */
import { PharosError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { RevocationList } from "../core/pki/mod.ts";
import { type Db, statement } from "./db/sqlite.ts";
import { type Actor, Service, SYSTEM_ACTOR } from "./service/service.ts";

export class RevocationError extends PharosError {}

export type RevokedKind = "device" | "relay" | "node" | "controller";
const KINDS: readonly RevokedKind[] = ["device", "relay", "node", "controller"];

export interface RevokedEntry {
  serial: string;
  kind: RevokedKind;
  subject: string | null;
}

export interface RevokeOptions {
  subject?: string;
  reason?: string;
  /** The certificate's expiry (kept to prune the pushed list later). */
  notAfter?: Date;
  now?: Date;
  /** Who revokes (audit log); the controller itself by default. */
  actor?: Actor;
}

interface Row {
  rowid: number;
  serial: string;
  kind: RevokedKind;
  subject: string | null;
  not_after: string | null;
}

/**
 * Records a revocation through the service layer (idempotent: an already
 * revoked serial writes nothing and returns false). Inside a caller's
 * transaction it joins it; `Revocations.sync()` publishes it after commit.
 */
export function recordRevocation(
  service: Service,
  actor: Actor,
  serial: string,
  kind: RevokedKind,
  opts: Omit<RevokeOptions, "actor"> = {},
): boolean {
  if (!KINDS.includes(kind)) {
    throw new RevocationError("bad-kind", `"${kind}" is not a certificate kind`);
  }
  const s = RevocationList.normalize(serial);
  if (!/^[0-9a-f]{1,40}$/.test(s)) {
    throw new RevocationError(
      "bad-serial",
      `"${serial.slice(0, 60)}" is not a certificate serial`,
    );
  }
  return service.mutate(
    { actor, action: "certificate.revoke", target: { type: "certificate", id: s } },
    (tx) => {
      if (tx.current !== undefined) return false;
      tx.insert({
        kind,
        subject: opts.subject ?? null,
        reason: opts.reason ?? null,
        not_after: opts.notAfter?.toISOString() ?? null,
        revoked_at: (opts.now ?? new Date(tx.now)).toISOString(),
      });
      return true;
    },
  );
}

export class Revocations {
  readonly list = new RevocationList();
  #lastRowid = 0;
  #kinds = new Map<string, RevokedKind>();
  #listeners = new Set<(added: RevokedEntry[]) => void>();
  readonly #service: Service;

  constructor(private readonly db: Db, private readonly log?: Logger) {
    this.#service = new Service(db);
    this.sync();
  }

  /** Revokes one certificate by serial and publishes it. Returns false if it already was. */
  revoke(serial: string, kind: RevokedKind, opts: RevokeOptions = {}): boolean {
    const known = this.list.has(serial);
    recordRevocation(this.#service, opts.actor ?? SYSTEM_ACTOR, serial, kind, opts);
    this.sync();
    return !known;
  }

  has(serial: string): boolean {
    return this.list.has(serial);
  }

  /** The kind recorded for a revoked serial. */
  kindOf(serial: string): RevokedKind | undefined {
    return this.#kinds.get(RevocationList.normalize(serial));
  }

  /** Registers a callback for newly revoked certificates; returns the unsubscribe function. */
  subscribe(fn: (added: RevokedEntry[]) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * Loads entries written since the last call (by this process or another),
   * adds them to the list and tells subscribers. Entries of certificates
   * that have expired are left out of the list: no verifier accepts them.
   */
  sync(now: Date = new Date()): RevokedEntry[] {
    const rows = statement(
      this.db,
      `SELECT rowid, serial, kind, subject, not_after FROM revoked_certificates
       WHERE rowid > ? ORDER BY rowid`,
    ).all(this.#lastRowid) as unknown as Row[];
    const added: RevokedEntry[] = [];
    for (const r of rows) {
      this.#lastRowid = Math.max(this.#lastRowid, r.rowid);
      if (r.not_after !== null && Date.parse(r.not_after) < now.getTime()) continue;
      if (this.list.has(r.serial)) continue;
      this.list.add(r.serial);
      this.#kinds.set(RevocationList.normalize(r.serial), r.kind);
      added.push({ serial: RevocationList.normalize(r.serial), kind: r.kind, subject: r.subject });
    }
    if (added.length > 0) {
      for (const fn of [...this.#listeners]) {
        try {
          fn(added);
        } catch (e) {
          this.log?.error("revocation subscriber failed", {
            code: "revocation-subscriber",
            error: e,
          });
        }
      }
    }
    return added;
  }
}
