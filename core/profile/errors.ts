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
  /**
   * Not the expected kind of document: `fmt` is not the expected format name
   * (not a `.pharos` / `.pharosid`), or a profile payload is not a JSON object.
   */
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
  /** A profile entry has no node with a protocol this reader supports; see `path`. */
  | "no-usable-node"
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

/** The codes a {@link ProfileFieldError} carries. */
export type ProfileFieldErrorCode = "invalid-field" | "no-usable-node";

/**
 * A schema violation (`invalid-field`) or an unusable profile entry
 * (`no-usable-node`); `path` names the field, e.g. `profiles[0].nodes[1].endpoints`.
 */
export class ProfileFieldError extends ProfileError {
  declare readonly code: ProfileFieldErrorCode;
  constructor(
    readonly path: string,
    problem: string,
    code: ProfileFieldErrorCode = "invalid-field",
  ) {
    super(code, `${path || "(document)"}: ${problem}`);
  }
}
