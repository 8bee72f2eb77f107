/**
 * One-time enrollment tickets (CONTRACTS.md §4.8): a random token (only
 * its SHA-256 stored), scoped to one user, short-lived (15 min by default)
 * and redeemed by exactly one claim — the redeeming statement is a single
 * `UPDATE … WHERE used_at IS NULL AND expires_at > now`, so of two
 * concurrent claims one changes the row and the other changes nothing.
 *
 * A bound ticket (§7.3 c) also has a link secret, returned once with the
 * token; only the MAC key derived from it is stored, and a claim must carry
 * a MAC made with it (core/profile/claim_binding.ts).
 */
import { enrollmentTokenHash, newEnrollmentToken } from "../../core/profile/mod.ts";
import { claimMacKey, newLinkSecret } from "../../core/profile/claim_binding.ts";
import type { Actor, Service } from "../service/service.ts";
import { AccountError, TICKET_REFUSED } from "./errors.ts";
import { statement } from "../db/sqlite.ts";

export const TICKET_TTL_MS = 15 * 60_000;
/** Longest ticket lifetime an operator may ask for. */
export const MAX_TICKET_TTL_MS = 7 * 24 * 3600_000;
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

export interface Ticket {
  id: string;
  userId: string;
  expiresAt: Date;
  usedAt: Date | null;
  deviceId: string | null;
  /** MAC key of a bound ticket's link secret; null for an unbound ticket. */
  claimMacKey: Uint8Array | null;
}

interface Row {
  id: string;
  user_id: string;
  expires_at: string;
  used_at: string | null;
  device_id: string | null;
  claim_mac_key: Uint8Array | null;
}

function fromRow(r: Row): Ticket {
  return {
    id: r.id,
    userId: r.user_id,
    expiresAt: new Date(r.expires_at),
    usedAt: r.used_at === null ? null : new Date(r.used_at),
    deviceId: r.device_id,
    claimMacKey: r.claim_mac_key === null ? null : new Uint8Array(r.claim_mac_key),
  };
}

export class Tickets {
  constructor(private readonly service: Service) {}

  /**
   * Makes a ticket for `userId`; the token (and, for a bound ticket, the
   * link secret) is returned once and never stored.
   */
  create(
    actor: Actor,
    userId: string,
    now: Date,
    ttlMs = TICKET_TTL_MS,
    bound = true,
  ): { ticket: Ticket; token: string; bind?: string } {
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0 || ttlMs > MAX_TICKET_TTL_MS) {
      throw new AccountError(
        "invalid",
        `a ticket lives between 1 ms and ${MAX_TICKET_TTL_MS / 3600_000} h`,
      );
    }
    const token = newEnrollmentToken();
    const bind = bound ? newLinkSecret() : undefined;
    const id = crypto.randomUUID();
    this.service.mutate(
      { actor, action: "ticket.create", target: { type: "ticket", id }, expectVersion: 0 },
      (tx) =>
        tx.insert({
          user_id: userId,
          token_hash: enrollmentTokenHash(token),
          created_by: actor,
          created_at: now.toISOString(),
          expires_at: new Date(now.getTime() + ttlMs).toISOString(),
          claim_mac_key: bind === undefined ? null : claimMacKey(bind),
        }),
    );
    return { ticket: this.get(id)!, token, bind };
  }

  get(id: string): Ticket | undefined {
    const row = statement(this.service.db, "SELECT * FROM enrollment_tickets WHERE id = ?").get(
      id,
    ) as
      | Row
      | undefined;
    return row ? fromRow(row) : undefined;
  }

  /**
   * A read-only look at the ticket of `token`: throws `unauthenticated`
   * unless it exists, is unused and unexpired. A claim checks this before
   * signing anything, and redeems atomically afterwards.
   */
  peek(token: string, now: Date): Ticket {
    const row = this.#byToken(token);
    if (!row || row.used_at !== null || Date.parse(row.expires_at) <= now.getTime()) {
      throw new AccountError("unauthenticated", TICKET_REFUSED);
    }
    return fromRow(row);
  }

  /**
   * Redeems the ticket of `token` for `deviceId`, inside the caller's
   * transaction. Exactly one caller wins; every other gets `unauthenticated`.
   */
  redeem(actor: Actor, token: string, deviceId: string, now: Date): Ticket {
    const row = this.#byToken(token);
    if (!row) throw new AccountError("unauthenticated", TICKET_REFUSED);
    return this.service.mutate(
      { actor, action: "ticket.redeem", target: { type: "ticket", id: row.id } },
      (tx) => {
        const won = statement(
          tx.db,
          `UPDATE enrollment_tickets SET used_at = ?
           WHERE id = ? AND used_at IS NULL AND expires_at > ?`,
        ).run(now.toISOString(), row.id, now.toISOString());
        if (Number(won.changes) !== 1) throw new AccountError("unauthenticated", TICKET_REFUSED);
        tx.update({ device_id: deviceId });
        return this.get(row.id)!;
      },
    );
  }

  #byToken(token: string): Row | undefined {
    if (typeof token !== "string" || !TOKEN.test(token)) return undefined;
    return statement(this.service.db, "SELECT * FROM enrollment_tickets WHERE token_hash = ?")
      .get(enrollmentTokenHash(token)) as Row | undefined;
  }
}
