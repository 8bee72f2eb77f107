/**
 * Back-off for failed logins, per account and per source (the calling
 * device's fingerprint, else its address), kept in `login_attempts` so
 * that it survives restarts and holds across processes. The first
 * FREE_FAILURES failures cost nothing; each further one locks the key for
 * twice as long as the last (1 s, 2 s, 4 s, … up to MAX_LOCK_MS). A
 * successful login clears the account's and the source's counters.
 */
import type { Actor, Service } from "../service/service.ts";
import { AccountError } from "./errors.ts";
import { statement } from "../db/sqlite.ts";

export const FREE_FAILURES = 5;
export const MAX_LOCK_MS = 15 * 60_000;

interface Row {
  key: string;
  failures: number;
  locked_until: string | null;
}

export class LoginLimits {
  constructor(private readonly service: Service, private readonly actor: Actor) {}

  /** Throws `rate-limited` while any of `keys` is locked at `now`. */
  check(keys: readonly string[], now: Date): void {
    for (const key of keys) {
      const row = this.#row(key);
      if (row?.locked_until && Date.parse(row.locked_until) > now.getTime()) {
        const wait = Math.ceil((Date.parse(row.locked_until) - now.getTime()) / 1000);
        throw new AccountError(
          "rate-limited",
          `too many failed logins; try again in ${wait} s`,
        );
      }
    }
  }

  /** Counts one failure against each key and locks those past the free ones. */
  fail(keys: readonly string[], now: Date): void {
    this.service.transaction(() => {
      for (const key of keys) {
        this.service.mutate(
          {
            actor: this.actor,
            action: "login_attempt.fail",
            target: { type: "login_attempt", id: key },
          },
          (tx) => {
            const failures = Number((tx.current as Row | undefined)?.failures ?? 0) + 1;
            const over = failures - FREE_FAILURES;
            const lockedUntil = over > 0
              ? new Date(now.getTime() + Math.min(1000 * 2 ** (over - 1), MAX_LOCK_MS))
                .toISOString()
              : null;
            if (tx.current) tx.update({ failures, locked_until: lockedUntil });
            else tx.insert({ failures, locked_until: lockedUntil });
          },
        );
      }
    });
  }

  /** Clears the counters of `keys` (after a successful login). */
  clear(keys: readonly string[]): void {
    this.service.transaction(() => {
      for (const key of keys) {
        if (!this.#row(key)) continue;
        this.service.mutate(
          {
            actor: this.actor,
            action: "login_attempt.clear",
            target: { type: "login_attempt", id: key },
          },
          (tx) => tx.remove(),
        );
      }
    });
  }

  #row(key: string): Row | undefined {
    return statement(this.service.db, "SELECT * FROM login_attempts WHERE key = ?").get(key) as
      | Row
      | undefined;
  }
}
