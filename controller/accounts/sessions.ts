/**
 * Session tokens: base64url of 32 random bytes, handed out once and kept
 * only as hex SHA-256; they expire (SESSION_TTL_MS) and are bound to the
 * device whose certificate carried the login, so a token copied to another
 * device (or replayed by a relay with another device's fingerprint) is
 * refused.
 */
import { toBase64Url, toHex } from "../../core/encoding.ts";
import { sha256 } from "@noble/hashes/sha2.js";
import { utf8 } from "../../core/encoding.ts";
import type { Actor, Service } from "../service/service.ts";
import { AccountError, SESSION_REFUSED } from "./errors.ts";
import { statement } from "../db/sqlite.ts";

export const SESSION_TTL_MS = 12 * 3600_000;
/** Longest token looked up (a real one is 43 characters). */
const MAX_TOKEN = 128;

export type SessionMethod = "password" | "device";

export interface Session {
  id: string;
  userId: string;
  deviceId: string;
  method: SessionMethod;
  expiresAt: Date;
}

interface Row {
  id: string;
  user_id: string;
  device_id: string;
  method: SessionMethod;
  expires_at: string;
}

export function tokenHash(token: string): string {
  return toHex(sha256(utf8.encode(token)));
}

export class Sessions {
  constructor(
    private readonly service: Service,
    private readonly actor: Actor,
    private readonly ttlMs = SESSION_TTL_MS,
  ) {}

  /** Starts a session; returns the token (never stored) and the session. */
  create(
    userId: string,
    deviceId: string,
    method: SessionMethod,
    now: Date,
  ): { token: string; session: Session } {
    const token = toBase64Url(crypto.getRandomValues(new Uint8Array(32)));
    const id = crypto.randomUUID();
    const expiresAt = new Date(now.getTime() + this.ttlMs);
    this.service.transaction(() => {
      this.#pruneExpired(deviceId, now);
      this.service.mutate(
        {
          actor: this.actor,
          action: "session.create",
          target: { type: "session", id },
          expectVersion: 0,
        },
        (tx) =>
          tx.insert({
            token_hash: tokenHash(token),
            user_id: userId,
            device_id: deviceId,
            method,
            created_at: now.toISOString(),
            expires_at: expiresAt.toISOString(),
          }),
      );
    });
    return { token, session: { id, userId, deviceId, method, expiresAt } };
  }

  /**
   * The session of `token` if it is unexpired and bound to `deviceId`;
   * throws `unauthenticated` (one message) otherwise.
   */
  resolve(token: string, deviceId: string, now: Date): Session {
    if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN) {
      throw new AccountError("unauthenticated", SESSION_REFUSED);
    }
    const row = statement(this.service.db, "SELECT * FROM sessions WHERE token_hash = ?")
      .get(tokenHash(token)) as Row | undefined;
    if (!row || row.device_id !== deviceId || Date.parse(row.expires_at) <= now.getTime()) {
      throw new AccountError("unauthenticated", SESSION_REFUSED);
    }
    return {
      id: row.id,
      userId: row.user_id,
      deviceId: row.device_id,
      method: row.method,
      expiresAt: new Date(row.expires_at),
    };
  }

  /** Ends every session of a device (revocation). */
  endForDevice(deviceId: string): void {
    const ids = statement(this.service.db, "SELECT id FROM sessions WHERE device_id = ?")
      .all(deviceId) as { id: string }[];
    for (const { id } of ids) this.#remove(id, "session.end");
  }

  #pruneExpired(deviceId: string, now: Date): void {
    const ids = statement(
      this.service.db,
      "SELECT id FROM sessions WHERE device_id = ? AND expires_at <= ?",
    ).all(deviceId, now.toISOString()) as { id: string }[];
    for (const { id } of ids) this.#remove(id, "session.expire");
  }

  #remove(id: string, action: string): void {
    this.service.mutate(
      { actor: this.actor, action, target: { type: "session", id } },
      (tx) => {
        if (tx.current) tx.remove();
      },
    );
  }
}
