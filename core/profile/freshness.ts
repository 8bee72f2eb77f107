/**
 * Freshness and binding checks a client applies after opening a profile
 * (CONTRACTS.md §7.9): the bundle signature covers neither recipient nor
 * revision, but the payload inside it names the user, the fleet, a revision
 * and an expiry, so checking those refuses rollbacks, expired profiles and
 * profiles cut for someone else.
 */
import { ProfileError } from "./errors.ts";
import type { ProfileDocument } from "./schema.ts";

/** What the device knows from enrollment and earlier syncs. */
export interface FreshnessExpectations {
  /** Highest revision accepted before; a lower one is refused (equal = re-delivery, accepted). */
  lastRevision?: number;
  /** The user the device is enrolled for. */
  user?: string;
  /** The fleet the device is enrolled in. */
  fleetId?: string;
  /** Clock for the expiry check; default now. */
  now?: Date;
  /** Refuse profiles without a real `expires_at` (the original writes the zero time). */
  requireExpiry?: boolean;
}

/** The zero time Go writes for an unset `time.Time`. */
const ZERO_TIME = "0001-01-01T00:00:00Z";

/**
 * Throws `stale-revision`, `expired` or `wrong-owner` when `doc` must not
 * replace what the device has; returns normally otherwise.
 */
export function checkProfileFreshness(doc: ProfileDocument, expect: FreshnessExpectations): void {
  if (expect.user !== undefined && doc.user !== expect.user) {
    throw new ProfileError(
      "wrong-owner",
      `profile is for user "${doc.user}", this device belongs to "${expect.user}"`,
    );
  }
  if (expect.fleetId !== undefined && doc.fleet_id !== expect.fleetId) {
    throw new ProfileError(
      "wrong-owner",
      `profile is for fleet "${doc.fleet_id}", this device is enrolled in "${expect.fleetId}"`,
    );
  }
  if (expect.lastRevision !== undefined && doc.revision < expect.lastRevision) {
    throw new ProfileError(
      "stale-revision",
      `profile revision ${doc.revision} is older than revision ${expect.lastRevision} already in use (rollback refused)`,
    );
  }
  const expires = doc.expires_at;
  if (expires === undefined || expires === ZERO_TIME) {
    if (expect.requireExpiry) {
      throw new ProfileError("expired", "profile carries no expiry and one is required");
    }
    return;
  }
  const at = Date.parse(expires);
  const now = (expect.now ?? new Date()).getTime();
  if (!Number.isFinite(at) || at <= now) {
    throw new ProfileError("expired", `profile expired at ${expires}; sync to get a fresh one`);
  }
}
