import { PharosError } from "../errors.ts";

/**
 * Every PKI failure. Codes are stable:
 * malformed, too-large, empty, unsupported-key, bad-csr, unknown-issuer,
 * bad-signature, expired, not-yet-valid, revoked, not-a-ca, leaf-is-ca,
 * bad-key-usage, wrong-usage, no-role, wrong-role.
 */
export class PkiError extends PharosError {}
