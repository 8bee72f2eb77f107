/**
 * Typed failures of core/seal. Every distinct failure has its own stable
 * `code` (see {@link SealErrorCode}) so callers and tests can tell a wrong
 * passphrase from a forged bundle without parsing messages.
 */
import { PharosError } from "../errors.ts";

/** Stable machine-readable codes of {@link SealError}. */
export type SealErrorCode =
  /** The passphrase does not open the wrapped key (or the blob was altered). */
  | "wrong-passphrase"
  /** The bundle's data key is not wrapped to the private key used to open it. */
  | "wrong-recipient"
  /** The Ed25519 signature does not verify under the pinned signing key. */
  | "bad-signature"
  /** The signature verified but the profile ciphertext does not decrypt. */
  | "tampered-ciphertext"
  /** The sealed bundle is not the JSON object of CONTRACTS.md §4.2. */
  | "malformed-bundle"
  /** The passphrase-wrapped key is not the JSON object of CONTRACTS.md §4.4. */
  | "malformed-wrapped-key"
  /** A `v` other than 1. */
  | "unknown-version"
  /** Input larger than the documented bound; rejected before parsing. */
  | "input-too-large"
  /** A key passed by the caller has the wrong length or is unusable. */
  | "bad-key"
  /** An injected randomness source returned the wrong number of bytes. */
  | "bad-randomness";

/** Error thrown by every function of core/seal. */
export class SealError extends PharosError {
  declare readonly code: SealErrorCode;
  constructor(code: SealErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}
