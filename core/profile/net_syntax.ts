/**
 * Syntax checks for network strings that end up in configs and links: IP
 * literals, host names, CIDRs and `host:port`, per core/net. Checks only;
 * nothing is resolved.
 */
import * as net from "../net/mod.ts";

export { isIpv4, isIpv6, joinHostPort } from "../net/mod.ts";

/** Profiles carry names as other tools wrote them: a root dot and numeric TLDs have always passed. */
const PROFILE_NAMES: net.HostnameOptions = { trailingDot: true, numericLastLabel: true };

/** An IP literal (v4 or v6) or a DNS host name of LDH labels. */
export function isHost(s: string): boolean {
  return net.isHost(s, PROFILE_NAMES);
}

/** `address/prefix` with an IP literal and a prefix length in range (host bits allowed). */
export function isCidr(s: string): boolean {
  return net.isCidr(s, { allowHostBits: true });
}

/** Splits `host:port` (IPv6 hosts bracketed); undefined when malformed. The host is as written. */
export function splitHostPort(s: string): { host: string; port: number } | undefined {
  try {
    const { port } = net.parseEndpoint(s, { allowHostname: true, ...PROFILE_NAMES });
    const host = s.startsWith("[") ? s.slice(1, s.indexOf("]")) : s.slice(0, s.lastIndexOf(":"));
    return { host, port };
  } catch (e) {
    if (e instanceof net.NetError) return undefined;
    throw e;
  }
}
