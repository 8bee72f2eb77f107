/**
 * The data plane's view of core/net: IP addresses, CIDR prefixes, host names
 * and `host:port` endpoints parsed strictly and re-serialised canonically,
 * with faults reported as DataplaneError naming the config field. Whatever
 * reaches a config file or an argv has been through one of these functions,
 * so it can contain nothing but the characters of its canonical form
 * (CONTRACTS.md §7.6).
 */
import * as net from "../net/mod.ts";
import type { Cidr, Endpoint, IpAddress } from "../net/mod.ts";
import { DataplaneError } from "./errors.ts";

export type { Cidr, Endpoint, IpAddress } from "../net/mod.ts";
export { formatCidr, formatEndpoint, formatIp } from "../net/mod.ts";

/**
 * Destinations a node never forwards client traffic to (CONTRACTS.md §7.12):
 * "this network", RFC 1918, CGNAT, loopback, link-local (including the cloud
 * metadata service 169.254.169.254), IPv6 loopback, ULA and link-local.
 */
export const NON_PUBLIC_DESTINATIONS = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "::1/128",
  "fc00::/7",
  "fe80::/10",
] as const;

/** Runs a core/net parser, re-throwing its NetError as a DataplaneError on `field`. */
function checked<T>(field: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof net.NetError) throw new DataplaneError(e.code, field, e.message);
    throw e;
  }
}

/** Parses an IPv4 dotted quad (no leading zeros) or an IPv6 address (no zone). */
export function parseIp(value: unknown, field: string): IpAddress {
  return checked(field, () => net.parseIp(value));
}

/**
 * Parses `address/prefix`. The prefix is mandatory. Unless `allowHostBits`
 * is set (interface addresses such as `10.8.0.2/24`), bits beyond the prefix
 * must be zero, as `ip route` and `wg show` would otherwise disagree with
 * the config.
 */
export function parseCidr(
  value: unknown,
  field: string,
  options: { allowHostBits?: boolean } = {},
): Cidr {
  return checked(field, () => net.parseCidr(value, options));
}

/** Parses and re-serialises a CIDR prefix; see {@link parseCidr}. */
export function canonicalCidr(
  value: unknown,
  field: string,
  options: { allowHostBits?: boolean } = {},
): string {
  return net.formatCidr(parseCidr(value, field, options));
}

/**
 * Checks a DNS host name: dot-separated labels of letters, digits and inner
 * hyphens, 1-63 characters each, 253 in all, no trailing dot, last label not
 * all digits. Returns it in lower case.
 */
export function parseHostname(value: unknown, field: string): string {
  return checked(field, () => net.parseHostname(value));
}

/**
 * Parses `ipv4:port`, `[ipv6]:port` or, when `allowHostname` is set,
 * `name:port`.
 */
export function parseEndpoint(
  value: unknown,
  field: string,
  options: { allowHostname?: boolean } = {},
): Endpoint {
  return checked(field, () => net.parseEndpoint(value, { allowHostname: options.allowHostname }));
}

/** Parses and re-serialises an endpoint; see {@link parseEndpoint}. */
export function canonicalEndpoint(
  value: unknown,
  field: string,
  options: { allowHostname?: boolean } = {},
): string {
  return net.formatEndpoint(parseEndpoint(value, field, options));
}

/** Returns an IP literal in canonical form, or a checked lower-case host name. */
export function canonicalHost(value: unknown, field: string): string {
  try {
    return net.formatHost(net.parseHost(value));
  } catch (e) {
    if (!(e instanceof net.NetError)) throw e;
    // The data plane calls a malformed IPv4 "bad-ip" and any other bad host,
    // a broken IPv6 literal included, "bad-hostname".
    if (e.code === "bad-ipv4") throw new DataplaneError("bad-ip", field, e.message);
    if (e.code !== "bad-ipv6") throw new DataplaneError(e.code, field, e.message);
    throw new DataplaneError("bad-hostname", field, `${JSON.stringify(value)} is not a host name`);
  }
}
