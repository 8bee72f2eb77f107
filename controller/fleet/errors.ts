/**
 * Why a call to a node failed. Codes:
 * - `unknown-node`: no such node in the table, or not driven (disabled, not onboarded);
 * - `bad-certificate`: the node's pinned certificate is not a valid, unrevoked
 *   Fleet-CA node certificate (re-onboard the node);
 * - `identity-mismatch`: the server at the node's address presents another
 *   certificate than the pinned one;
 * - `unreachable`: no connection (refused, reset, TLS failed);
 * - `timeout`: no answer before the deadline;
 * - `node-error`: the agent answered with a gRPC error (`grpcCode`);
 * - `worker-restarted`: the driver's gRPC worker process died during the
 *   call (it is restarted at once): retry;
 * - `stopped`: the driver was stopped.
 */
import { PharosError } from "../../core/errors.ts";

export type FleetErrorCode =
  | "unknown-node"
  | "bad-certificate"
  | "identity-mismatch"
  | "unreachable"
  | "timeout"
  | "node-error"
  | "worker-restarted"
  | "stopped";

const RETRYABLE: ReadonlySet<string> = new Set([
  "unreachable",
  "timeout",
  "worker-restarted",
]);

export class FleetError extends PharosError {
  constructor(
    code: FleetErrorCode,
    message: string,
    /** gRPC status code, when the node answered one. */
    readonly grpcCode?: number,
  ) {
    super(code, message);
  }

  /** True when the same call may succeed if simply made again. */
  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}
