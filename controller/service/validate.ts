/** Input checks shared by the service modules; failures are ServiceError `invalid`. */
import { formatHost, NetError, parseHost } from "../../core/net/mod.ts";
import { ServiceError } from "./errors.ts";

/** An IP address or DNS name in canonical form (lower case, IPv6 compressed). */
export function hostField(value: string, what: string): string {
  try {
    return formatHost(parseHost(value));
  } catch (e) {
    if (e instanceof NetError) throw new ServiceError("invalid", `${what}: ${e.message}`);
    throw e;
  }
}
