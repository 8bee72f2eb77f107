/**
 * The agent's typed error: a stable `code` for logs and tests, an
 * operator-actionable message, and the gRPC status a NodeControl call that
 * fails with it answers (CONTRACTS.md §1.4 fixes several of them).
 */
import { PharosError } from "../core/errors.ts";
import { DataplaneError } from "../core/dataplane/mod.ts";

/** gRPC status codes the agent answers with (the numbers are the wire values). */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcCode = typeof GrpcCode[keyof typeof GrpcCode];

export class AgentError extends PharosError {
  constructor(
    code: string,
    message: string,
    readonly status: GrpcCode = GrpcCode.INTERNAL,
    options?: ErrorOptions,
  ) {
    super(code, message, options);
  }
}

/** A rejected field of a push: INVALID_ARGUMENT, naming the field. */
export function invalid(code: string, message: string): AgentError {
  return new AgentError(code, message, GrpcCode.INVALID_ARGUMENT);
}

/**
 * Maps any error to an AgentError: a DataplaneError (a bad field) becomes
 * INVALID_ARGUMENT with its code; an AgentError stays as it is; anything
 * else is INTERNAL.
 */
export function asAgentError(e: unknown, prefix = ""): AgentError {
  if (e instanceof AgentError) return e;
  if (e instanceof DataplaneError) {
    return new AgentError(e.code, prefix + e.message, GrpcCode.INVALID_ARGUMENT, { cause: e });
  }
  if (e instanceof PharosError) {
    return new AgentError(e.code, prefix + e.message, GrpcCode.INTERNAL, { cause: e });
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new AgentError("internal", prefix + msg, GrpcCode.INTERNAL, { cause: e });
}
