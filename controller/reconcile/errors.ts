/**
 * Errors of the reconcile loop. Codes: `bad-interval` (a sweep interval out
 * of range), `bad-psk` (a preshared key that is not 32 bytes), `bad-answer`
 * (a node answered something the contract does not allow). A failed
 * NodeControl call keeps the fleet driver's error.
 */
import { PharosError } from "../../core/errors.ts";

export class ReconcileError extends PharosError {}
