/**
 * Base of every typed error in core/. `code` is stable and machine-readable
 * (tests and API responses match on it); `message` tells the operator what
 * went wrong and, where possible, what to do about it.
 */
export class PharosError extends Error {
  constructor(readonly code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}
