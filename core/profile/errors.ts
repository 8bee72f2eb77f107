/**
 * Typed failures of the `.pharos` container, the profile payload schema and
 * the `.pharosid` identity bundle.
 */
import { PharosError } from "../errors.ts";

/** Stable machine-readable codes of {@link ProfileError}. */
export type ProfileErrorCode =
  /** Input larger than the documented bound; rejected before parsing. */
  | "input-too-large"
  /** Not JSON (or not UTF-8). */
  | "not-json"
  /** `fmt` is not the expected format name (not a `.pharos` / `.pharosid`). */
  | "wrong-format"
  /** `v` other than 1. */
  | "unknown-version"
  /** `enc` is not none / password / account. */
  | "unknown-encryption"
  /** The file's `enc` is not one the caller accepts (downgrade). */
  | "downgrade-refused"
  /** Header fields inconsistent with `enc`, or a payload of the wrong shape. */
  | "header-mismatch"
  /** KDF parameters other than the fixed v1 Argon2id ones (checked before any work). */
  | "kdf-rejected"
  /** The password does not open the file, or its header/payload was altered. */
  | "wrong-password"
  /** A secret needed for this `enc` was not supplied. */
  | "secret-missing"
  /** A field of the payload or header is missing or has a bad value; see `path`. */
  | "invalid-field"
  /** The profile's revision is lower than one already accepted (rollback, §7.9). */
  | "stale-revision"
  /** The profile's `expires_at` has passed, or it has none where one is required. */
  | "expired"
  /** The profile names another user or fleet than the device is enrolled for. */
  | "wrong-owner";

/** Error thrown by the `.pharos`, profile schema and `.pharosid` code. */
export class ProfileError extends PharosError {
  declare readonly code: ProfileErrorCode;
  constructor(code: ProfileErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** A schema violation; `path` names the field, e.g. `profiles[0].nodes[1].endpoints`. */
export class ProfileFieldError extends ProfileError {
  constructor(readonly path: string, problem: string) {
    super("invalid-field", `${path || "(document)"}: ${problem}`);
  }
}
