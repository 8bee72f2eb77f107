/**
 * For the running controller: the relays table is the source of the
 * tunnels it dials. `watchRelayTargets` polls `relayTunnelTargets(db)` and
 * reports relays that appeared or went away, so that the tunnel set follows
 * `cox relays add` (from another process) without a restart.
 */
import type { Db } from "../db/sqlite.ts";
import { type RelayTunnelTarget, relayTunnelTargets } from "../service/relays.ts";

export interface RelayTargetChange {
  added: RelayTunnelTarget[];
  /** Gone, or now at another host:port (then also in `added`). */
  removed: RelayTunnelTarget[];
}

const key = (t: RelayTunnelTarget) => `${t.id} ${t.target} ${t.kind}`;

export function diffRelayTargets(
  before: readonly RelayTunnelTarget[],
  after: readonly RelayTunnelTarget[],
): RelayTargetChange {
  const was = new Set(before.map(key));
  const now = new Set(after.map(key));
  return {
    added: after.filter((t) => !was.has(key(t))),
    removed: before.filter((t) => !now.has(key(t))),
  };
}

/**
 * Calls `onChange` at once with every current target (as added), then after
 * each poll that found a difference. A failed read is reported to `onError`
 * and retried at the next poll. Returns the function that stops it.
 */
export function watchRelayTargets(
  db: Db,
  opts: {
    intervalMs?: number;
    onChange(change: RelayTargetChange): void;
    onError?(e: unknown): void;
  },
): () => void {
  let last: RelayTunnelTarget[] = [];
  const poll = () => {
    try {
      const next = relayTunnelTargets(db);
      const change = diffRelayTargets(last, next);
      last = next;
      if (change.added.length > 0 || change.removed.length > 0) opts.onChange(change);
    } catch (e) {
      opts.onError?.(e);
    }
  };
  poll();
  const timer = setInterval(poll, opts.intervalMs ?? 5000);
  return () => clearInterval(timer);
}
