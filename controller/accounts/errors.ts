/**
 * Typed errors of the accounts service. Each code maps to one gRPC status
 * (grpc_service.ts); messages for refused credentials are collapsed so a
 * caller cannot tell an unknown e-mail, a wrong password or a used ticket
 * apart.
 */
import { PharosError } from "../../core/errors.ts";

export type AccountErrorCode =
  /** Bad input; nothing was consumed or written. */
  | "invalid"
  /** Credentials, token, ticket or device refused (one message per kind). */
  | "unauthenticated"
  /** Too many failed logins: back off. */
  | "rate-limited"
  | "not-found"
  /** The state does not allow it yet (no keys enrolled, no signing key). */
  | "precondition";

export class AccountError extends PharosError {
  constructor(
    override readonly code: AccountErrorCode,
    message: string,
    /** Extra gRPC trailing metadata (e.g. a key-replacement challenge). */
    readonly metadata: Record<string, string> = {},
  ) {
    super(code, message);
  }
}

/** The one message for any refused login (no enumeration of accounts). */
export const INVALID_CREDENTIALS = "invalid credentials";
/** The one message for an unknown, expired or used enrollment ticket. */
export const TICKET_REFUSED =
  "enrollment ticket refused (unknown, expired or already used); ask the administrator for a new one";
/** The one message for a missing, expired or foreign session token. */
export const SESSION_REFUSED =
  "session refused (missing, expired or issued to another device); log in again";
