/** The error type of core/net. */
import { PharosError } from "../errors.ts";

/**
 * What a core/net parser rejected: `not-a-string`, `bad-ip`, `bad-ipv4`,
 * `bad-ipv6`, `bad-hostname`, `bad-cidr`, `bad-endpoint`.
 */
export type NetFault =
  | "not-a-string"
  | "bad-ip"
  | "bad-ipv4"
  | "bad-ipv6"
  | "bad-hostname"
  | "bad-cidr"
  | "bad-endpoint";

/**
 * A string that is not the address, name, prefix or endpoint it should be.
 * The modules built on core/net re-throw it as their own error type.
 */
export class NetError extends PharosError {
  constructor(override readonly code: NetFault, message: string) {
    super(code, message);
  }
}
