/**
 * Errors of the service layer. Codes: `invalid` (a value the operator
 * must correct), `not-found`, `exists`, `conflict` (ConflictError: a stale
 * expected version, HTTP 409), `busy` (another writer held the database
 * too long), `database` (SQLite refused the statement).
 */
import { PharosError } from "../../core/errors.ts";
import type { Row } from "./canonical.ts";

export class ServiceError extends PharosError {}

export interface TargetRef {
  type: string;
  id: string;
}

/**
 * The caller edited what it loaded at `expected`, but the row is now at
 * another version (or gone: `current` null). Nothing was written; the
 * caller reloads `current` and decides again.
 */
export class ConflictError extends ServiceError {
  constructor(
    readonly target: TargetRef,
    readonly expected: number,
    readonly current: Row | null,
  ) {
    super(
      "conflict",
      current === null
        ? `${target.type} ${target.id} no longer exists (you loaded version ${expected}); nothing was changed`
        : `${target.type} ${target.id} is at version ${current.version}, not ${expected}: someone else changed it; reload it and try again (nothing was changed)`,
    );
  }
}
