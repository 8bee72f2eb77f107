/**
 * Typed failures of the reference client flow. Each code names one refusal
 * a user or operator can act on; tests match on the code, never the text.
 */
import { PharosError } from "../errors.ts";

/** Stable machine-readable codes of {@link ClientError}. */
export type ClientErrorCode =
  /** The relay's certificate chain does not reach the pinned root, or is not a relay's. */
  | "relay-untrusted"
  /** The claim answer names another root CA or Fleet CA than the one verified on the wire. */
  | "fleet-mismatch"
  /** The controller's profile-signing key differs from the one pinned at enrollment. */
  | "signing-key-changed"
  /** A field of a controller answer is missing or has the wrong shape. */
  | "bad-response"
  /** The controller (or relay) refused the call; `grpcCode` says how. */
  | "rejected"
  /** The relay or controller could not be reached. */
  | "unreachable"
  /** The profile names no node this client can dial (no AmneziaWG entry). */
  | "no-usable-node"
  /** The profile needs the account passphrase (it is sealed to the account key). */
  | "passphrase-required"
  /** The client state file is missing, unreadable or not this format. */
  | "bad-state"
  /** The account has a key this device never held, so it cannot prove it to replace it. */
  | "account-key-unknown"
  /** The account key this device holds is no longer the account's (replaced elsewhere). */
  | "account-key-stale"
  /** A key challenge names another key than the one this device asked to install. */
  | "key-challenge-mismatch";

/**
 * Error of core/client; `grpcCode` is set for `rejected`, `trailers` holds
 * the refusal's string trailers (e.g. a key-replacement challenge).
 */
export class ClientError extends PharosError {
  declare readonly code: ClientErrorCode;
  constructor(
    code: ClientErrorCode,
    message: string,
    options?: ErrorOptions & { grpcCode?: number; trailers?: Readonly<Record<string, string>> },
  ) {
    super(code, message, options);
    this.grpcCode = options?.grpcCode;
    this.trailers = options?.trailers ?? {};
  }
  readonly grpcCode?: number;
  readonly trailers: Readonly<Record<string, string>>;
}
