/**
 * The one error type of core/dataplane. Every message starts with the name of
 * the field that was rejected, so an operator can find the bad value at once.
 */
import { PharosError } from "../errors.ts";

/** A value that cannot go into a data-plane config, argv or parser result. */
export class DataplaneError extends PharosError {
  constructor(code: string, readonly field: string, message: string) {
    super(code, `${field}: ${message}`);
  }
}
