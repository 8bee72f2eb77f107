/**
 * Which peers are trusted reverse proxies: a list of IP addresses and CIDR
 * prefixes (`--trusted-proxies`), compiled once into a predicate over the
 * socket's peer address. IPv4-mapped IPv6 peers (`::ffff:10.0.0.2`) count
 * as their IPv4 address; anything unparsable is not trusted.
 */
import { type Cidr, parseCidr, parseIp } from "../../core/net/address.ts";

/** Compiles the list; a bad entry throws NetError naming it. */
export function proxyMatcher(list: readonly string[]): (peer: string | undefined) => boolean {
  const prefixes: Cidr[] = list.map((e) => {
    if (e.includes("/")) return parseCidr(e);
    const address = parseIp(e);
    return { address, prefix: address.bytes.length * 8 };
  });
  if (prefixes.length === 0) return () => false;
  return (peer) => {
    if (peer === undefined) return false;
    let address;
    try {
      address = parseIp(peer.replace(/^::ffff:(?=\d+\.)/i, ""));
    } catch {
      return false;
    }
    return prefixes.some((p) => inPrefix(address.bytes, p));
  };
}

function inPrefix(bytes: Uint8Array, p: Cidr): boolean {
  if (bytes.length !== p.address.bytes.length) return false;
  for (let bit = 0; bit < p.prefix; bit += 8) {
    const i = bit / 8;
    const keep = Math.min(8, p.prefix - bit);
    const mask = (0xff << (8 - keep)) & 0xff;
    if ((bytes[i] & mask) !== (p.address.bytes[i] & mask)) return false;
  }
  return true;
}
