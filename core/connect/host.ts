/**
 * Host grammar of a CONNECT target: an IPv4 dotted quad, an IPv6 literal (the
 * caller strips the brackets), or a DNS hostname (RFC 1123 letters, digits,
 * hyphens), all per core/net's strict defaults: no zone ids, no trailing dot.
 * Each check throws ConnectError naming the fault.
 */
import { PharosError } from "../errors.ts";
import { NetError, parseHost } from "../net/mod.ts";

export { isHostname, isIpv4 as isIPv4, isIpv6 as isIPv6 } from "../net/mod.ts";

/**
 * Every CONNECT line failure. Codes are stable: too-long, bad-character,
 * no-newline, empty-host, missing-port, bad-port, port-out-of-range,
 * unbracketed-ipv6, bad-brackets, bad-ipv6, bad-ipv4, bad-hostname,
 * bad-argument.
 */
export class ConnectError extends PharosError {}

export type HostKind = "ipv4" | "ipv6" | "name";

const HOST_FAULTS: Record<string, string> = {
  "bad-ipv6": "is not a valid IPv6 address",
  "bad-ipv4": "is not a valid IPv4 address",
  "bad-hostname": "is not a valid hostname (letters, digits, hyphens; labels of 1-63)",
};

/** Classifies an unbracketed host or throws ConnectError. */
export function checkHost(host: string): HostKind {
  if (host.length === 0) throw new ConnectError("empty-host", "CONNECT target has an empty host");
  try {
    const parsed = parseHost(host);
    return parsed.kind === "name" ? "name" : parsed.address.family === 4 ? "ipv4" : "ipv6";
  } catch (e) {
    if (!(e instanceof NetError) || !(e.code in HOST_FAULTS)) throw e;
    throw new ConnectError(e.code, `CONNECT target host "${host}" ${HOST_FAULTS[e.code]}`);
  }
}
