/**
 * Login back-off (table `login_throttle`), per account and per source
 * address. Each key gets a free allowance of failures; past it, every
 * further failure blocks the key for twice as long as the one before
 * (base, 2×base, …, capped). While a key is blocked no password is even
 * checked, so a blocked attacker learns nothing. A success clears the
 * account's key (not the source's: one good account must not launder an
 * address that is guessing others). Failures older than `forgetMs` start
 * over. Writes go through the service layer, so each failure is audited.
 */
import type { Row } from "../service/canonical.ts";
import type { Service } from "../service/service.ts";
import { ApiError } from "./errors.ts";

export interface ThrottlePolicy {
  /** Failures before back-off starts, per account / per source. */
  accountFree: number;
  sourceFree: number;
  baseMs: number;
  maxMs: number;
  forgetMs: number;
}

export const THROTTLE: ThrottlePolicy = {
  accountFree: 5,
  sourceFree: 20,
  baseMs: 1000,
  maxMs: 15 * 60_000,
  forgetMs: 24 * 3600_000,
};

const ACTOR = "system:api";

export function accountKey(emailKey: string): string {
  return `account:${emailKey.slice(0, 240)}`;
}

/** IPv6 sources are counted per /64 (one host usually holds the whole prefix). */
export function sourceKey(address: string): string {
  if (address.includes(":") && !address.startsWith("::ffff:")) {
    const groups = expandV6(address);
    if (groups?.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) {
      const prefix = groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16));
      return `source:${prefix.join(":")}::/64`;
    }
  }
  return `source:${address.replace(/^::ffff:/, "").slice(0, 64)}`;
}

function expandV6(a: string): string[] | undefined {
  const [head, tail] = a.split("::");
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  if (a.includes("::")) {
    const fill = 8 - h.length - t.length;
    if (fill < 0) return undefined;
    return [...h, ...Array(fill).fill("0"), ...t];
  }
  return h.length === 8 ? h : undefined;
}

export class LoginThrottle {
  constructor(
    private readonly service: Service,
    private readonly clock: () => Date,
    private readonly policy: ThrottlePolicy = THROTTLE,
  ) {}

  /** Refuses (429, Retry-After) when any key is blocked now. */
  check(keys: string[]): void {
    const now = this.clock().getTime();
    let until = 0;
    for (const key of keys) {
      const row = this.service.get({ type: "login_throttle", id: key });
      const blocked = row?.blocked_until ? Date.parse(String(row.blocked_until)) : 0;
      if (blocked > now) until = Math.max(until, blocked);
    }
    if (until > 0) {
      const secs = Math.max(1, Math.ceil((until - now) / 1000));
      throw new ApiError(
        429,
        "rate-limited",
        `too many failed sign-ins; try again in ${secs} s`,
        undefined,
        { "retry-after": String(secs) },
      );
    }
  }

  /** Counts one failure against each key and sets its back-off. */
  fail(keys: string[]): void {
    const now = this.clock();
    this.service.transaction(() => {
      for (const key of keys) {
        const free = key.startsWith("account:") ? this.policy.accountFree : this.policy.sourceFree;
        this.service.mutate(
          {
            actor: ACTOR,
            action: "login_throttle.fail",
            target: { type: "login_throttle", id: key },
          },
          (tx) => {
            const failures = this.#live(tx.current, now) + 1;
            const over = failures - free;
            const blocked = over > 0
              ? new Date(
                now.getTime() + Math.min(this.policy.maxMs, this.policy.baseMs * 2 ** (over - 1)),
              ).toISOString()
              : null;
            const values = {
              failures,
              last_failure_at: now.toISOString(),
              blocked_until: blocked,
            };
            if (tx.current) tx.update(values);
            else tx.insert(values);
          },
        );
      }
    });
  }

  /** Clears a key (the account after a full sign-in). */
  clear(key: string): void {
    if (!this.service.get({ type: "login_throttle", id: key })) return;
    this.service.mutate(
      { actor: ACTOR, action: "login_throttle.clear", target: { type: "login_throttle", id: key } },
      (tx) => {
        if (tx.current) tx.remove();
      },
    );
  }

  /** Failures still counted (older ones are forgotten). */
  #live(row: Row | undefined, now: Date): number {
    if (!row) return 0;
    const last = Date.parse(String(row.last_failure_at));
    return now.getTime() - last > this.policy.forgetMs ? 0 : Number(row.failures);
  }
}
