/**
 * Strict parsing and canonical text of IP addresses (IPv6 per RFC 5952),
 * DNS host names, CIDR prefixes and `host:port` endpoints. Nothing is
 * resolved. A string accepted here holds only the characters of its grammar:
 * no spaces, newlines, zone ids (`%eth0`) or shell metacharacters
 * (CONTRACTS.md §7.6). Faults are {@link NetError}s whose message quotes the
 * rejected text.
 */
import { NetError } from "./errors.ts";

/** A parsed IP address: 4 or 16 bytes in network order. */
export interface IpAddress {
  family: 4 | 6;
  bytes: Uint8Array;
}

/** A parsed CIDR prefix. */
export interface Cidr {
  address: IpAddress;
  prefix: number;
}

/** A parsed host: an IP literal or a DNS host name. */
export type Host = { kind: "ip"; address: IpAddress } | { kind: "name"; name: string };

/** A parsed endpoint: a host and a port 1-65535. */
export interface Endpoint {
  host: Host;
  port: number;
}

/**
 * Relaxations of the host name grammar. By default a name has no trailing
 * dot and its last label is not all digits (RFC 1123 §2.1), so that a
 * malformed IPv4 address never passes as a name.
 */
export interface HostnameOptions {
  /** Accept one trailing dot (the DNS root), e.g. `example.com.`. */
  trailingDot?: boolean;
  /** Accept an all-digit last label, e.g. `a.123`. */
  numericLastLabel?: boolean;
}

/** Options of {@link parseEndpoint}: which hosts besides IP literals it takes. */
export interface EndpointOptions extends HostnameOptions {
  /** Accept `name:port` as well as IP literals. */
  allowHostname?: boolean;
}

const IPV4_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
const IPV4 = new RegExp(`^${IPV4_OCTET}(?:\\.${IPV4_OCTET}){3}$`);
const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const DIGITS_AND_DOTS = /^[0-9.]+$/;
const DECIMAL = /^(?:0|[1-9][0-9]*)$/;
const MAX_HOSTNAME = 253;

function requireText(value: unknown): string {
  if (typeof value !== "string") {
    throw new NetError("not-a-string", `expected a string, got ${typeof value}`);
  }
  return value;
}

/** True when `parse` returns; false when it throws a NetError. */
function accepts(parse: () => unknown): boolean {
  try {
    parse();
    return true;
  } catch (e) {
    if (e instanceof NetError) return false;
    throw e;
  }
}

function ipv4Bytes(text: string): Uint8Array | null {
  if (!IPV4.test(text)) return null;
  return Uint8Array.from(text.split(".").map(Number));
}

function ipv6Bytes(text: string): Uint8Array | null {
  if (text.length === 0 || text.length > 45 || !/^[0-9A-Fa-f:.]+$/.test(text)) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const words: number[][] = [];
  for (let h = 0; h < halves.length; h++) {
    const out: number[] = [];
    if (halves[h] !== "") {
      const groups = halves[h].split(":");
      for (let i = 0; i < groups.length; i++) {
        const g = groups[i];
        const last = i === groups.length - 1 && h === halves.length - 1;
        if (last && g.includes(".")) {
          const v4 = ipv4Bytes(g);
          if (!v4) return null;
          out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
        } else if (HEX_GROUP.test(g)) {
          out.push(parseInt(g, 16));
        } else {
          return null;
        }
      }
    }
    words.push(out);
  }
  let all: number[];
  if (words.length === 1) {
    if (words[0].length !== 8) return null;
    all = words[0];
  } else {
    const missing = 8 - words[0].length - words[1].length;
    if (missing < 1) return null;
    all = [...words[0], ...new Array(missing).fill(0), ...words[1]];
  }
  const bytes = new Uint8Array(16);
  all.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

function ipOf(text: string): IpAddress | null {
  const v4 = ipv4Bytes(text);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = ipv6Bytes(text);
  return v6 ? { family: 6, bytes: v6 } : null;
}

/**
 * True for four decimal octets 0-255 without leading zeros.
 *
 * @example isIpv4("192.0.2.1") === true; isIpv4("192.0.2.01") === false
 */
export function isIpv4(text: string): boolean {
  return typeof text === "string" && IPV4.test(text);
}

/**
 * True for an RFC 4291 IPv6 address without brackets or zone id: hex groups,
 * at most one `::`, optionally ending in a dotted IPv4 address.
 *
 * @example isIpv6("2001:db8::1") === true; isIpv6("fe80::1%eth0") === false
 */
export function isIpv6(text: string): boolean {
  return typeof text === "string" && ipv6Bytes(text) !== null;
}

/**
 * Parses an IPv4 dotted quad (no leading zeros) or an IPv6 address (no
 * brackets, no zone id). Throws NetError `bad-ip`.
 *
 * @example parseIp("::1") // { family: 6, bytes: Uint8Array(16) [0, …, 0, 1] }
 */
export function parseIp(value: unknown): IpAddress {
  const text = requireText(value);
  const address = ipOf(text);
  if (!address) throw new NetError("bad-ip", `${JSON.stringify(text)} is not an IP address`);
  return address;
}

/**
 * Formats an address canonically: dotted quad, or RFC 5952 IPv6 (lower-case
 * hex, no leading zeros, the first longest run of two or more zero groups as
 * `::`, IPv4-mapped addresses as `::ffff:a.b.c.d` unless `hexMapped`).
 *
 * @example formatIp(parseIp("2001:DB8:0:0:0:0:0:1")) === "2001:db8::1"
 * @example formatIp(parseIp("::ffff:192.0.2.1"), { hexMapped: true }) === "::ffff:c000:201"
 */
export function formatIp(address: IpAddress, options: { hexMapped?: boolean } = {}): string {
  const b = address.bytes;
  if (address.family === 4) return Array.from(b).join(".");
  const words = Array.from({ length: 8 }, (_, i) => (b[2 * i] << 8) | b[2 * i + 1]);
  if (!options.hexMapped && words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestLen < 2) return hex.join(":");
  const head = hex.slice(0, bestStart).join(":");
  const tail = hex.slice(bestStart + bestLen).join(":");
  return `${head}::${tail}`;
}

function hasHostBits(bytes: Uint8Array, prefix: number): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i));
    const mask = keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
    if ((bytes[i] & ~mask & 0xff) !== 0) return true;
  }
  return false;
}

/**
 * Parses `address/prefix`; the prefix is mandatory, decimal, without leading
 * zeros. Unless `allowHostBits` is set (interface addresses such as
 * `10.8.0.2/24`), bits beyond the prefix must be zero, as `ip route` and
 * `wg show` would otherwise disagree with the config. Throws NetError
 * `bad-cidr`.
 *
 * @example formatCidr(parseCidr("FD00:0::/8")) === "fd00::/8"
 * @example parseCidr("10.8.0.2/24") // throws; with { allowHostBits: true } it parses
 */
export function parseCidr(value: unknown, options: { allowHostBits?: boolean } = {}): Cidr {
  const text = requireText(value);
  const quoted = JSON.stringify(text);
  const slash = text.indexOf("/");
  if (slash < 0) throw new NetError("bad-cidr", `${quoted} has no /prefix`);
  const address = ipOf(text.slice(0, slash));
  if (!address) throw new NetError("bad-cidr", `${quoted} is not a CIDR prefix`);
  const prefixText = text.slice(slash + 1);
  const max = address.family === 4 ? 32 : 128;
  if (!DECIMAL.test(prefixText) || Number(prefixText) > max) {
    throw new NetError("bad-cidr", `${quoted}: prefix length must be 0-${max}`);
  }
  const prefix = Number(prefixText);
  if (!options.allowHostBits && hasHostBits(address.bytes, prefix)) {
    throw new NetError(
      "bad-cidr",
      `${quoted} has bits set beyond /${prefix}; use the network address`,
    );
  }
  return { address, prefix };
}

/**
 * True when {@link parseCidr} accepts `text` with the same options.
 *
 * @example isCidr("10.0.0.0/8") === true; isCidr("10.0.0.0/08") === false
 */
export function isCidr(text: string, options: { allowHostBits?: boolean } = {}): boolean {
  return accepts(() => parseCidr(text, options));
}

/**
 * Formats a CIDR prefix canonically.
 *
 * @example formatCidr({ address: parseIp("10.0.0.0"), prefix: 8 }) === "10.0.0.0/8"
 */
export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr.address)}/${cidr.prefix}`;
}

/**
 * True for a DNS host name: dot-separated labels of ASCII letters, digits and
 * inner hyphens, 1-63 characters each, 253 in all; see
 * {@link HostnameOptions} for the trailing dot and all-digit last label.
 *
 * @example isHostname("vpn-1.Example.com") === true; isHostname("a_b.com") === false
 * @example isHostname("example.com.", { trailingDot: true }) === true
 */
export function isHostname(text: string, options: HostnameOptions = {}): boolean {
  if (typeof text !== "string" || text.length === 0 || text.length > MAX_HOSTNAME) return false;
  const name = options.trailingDot && text.endsWith(".") ? text.slice(0, -1) : text;
  const labels = name.split(".");
  if (!labels.every((label) => LABEL.test(label))) return false;
  return options.numericLastLabel === true || !/^[0-9]+$/.test(labels[labels.length - 1]);
}

/**
 * Checks a host name ({@link isHostname}) and returns it in lower case.
 * Throws NetError `bad-hostname`.
 *
 * @example parseHostname("WWW.Example.com") === "www.example.com"
 */
export function parseHostname(value: unknown, options: HostnameOptions = {}): string {
  const text = requireText(value);
  if (!isHostname(text, options)) {
    throw new NetError("bad-hostname", `${JSON.stringify(text)} is not a host name`);
  }
  return text.toLowerCase();
}

/**
 * Parses an unbracketed host. Its characters say what it must be: with a
 * colon an IPv6 address (else `bad-ipv6`), only digits and dots an IPv4
 * address (else `bad-ipv4`), anything else a host name, returned in lower
 * case (else `bad-hostname`).
 *
 * @example parseHost("Example.com") // { kind: "name", name: "example.com" }
 * @example parseHost("1.2.3.999") // throws NetError "bad-ipv4"
 */
export function parseHost(value: unknown, options: HostnameOptions = {}): Host {
  const text = requireText(value);
  if (text.includes(":")) {
    const v6 = ipv6Bytes(text);
    if (!v6) throw new NetError("bad-ipv6", `${JSON.stringify(text)} is not an IPv6 address`);
    return { kind: "ip", address: { family: 6, bytes: v6 } };
  }
  if (DIGITS_AND_DOTS.test(text)) {
    const v4 = ipv4Bytes(text);
    if (!v4) throw new NetError("bad-ipv4", `${JSON.stringify(text)} is a malformed IPv4 address`);
    return { kind: "ip", address: { family: 4, bytes: v4 } };
  }
  return { kind: "name", name: parseHostname(text, options) };
}

/**
 * True when {@link parseHost} accepts `text` with the same options.
 *
 * @example isHost("10.0.0.1") === true; isHost("a b") === false
 */
export function isHost(text: string, options: HostnameOptions = {}): boolean {
  return accepts(() => parseHost(text, options));
}

/**
 * Formats a host canonically: an IP literal per {@link formatIp} (no
 * brackets), a name as parsed.
 *
 * @example formatHost(parseHost("2001:DB8::0:1")) === "2001:db8::1"
 */
export function formatHost(host: Host, options: { hexMapped?: boolean } = {}): string {
  return host.kind === "name" ? host.name : formatIp(host.address, options);
}

function portOf(text: string, whole: string): number {
  if (!DECIMAL.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new NetError("bad-endpoint", `${JSON.stringify(whole)}: port must be 1-65535`);
  }
  return Number(text);
}

/**
 * Parses `ipv4:port`, `[ipv6]:port` or, when `allowHostname` is set,
 * `name:port` (names per {@link isHostname} and the options, returned in
 * lower case). The port is decimal 1-65535 without leading zeros. Throws
 * NetError `bad-endpoint`.
 *
 * @example formatEndpoint(parseEndpoint("[2001:DB8::1]:443")) === "[2001:db8::1]:443"
 * @example parseEndpoint("VPN.example.com:443", { allowHostname: true }).host // { kind: "name", name: "vpn.example.com" }
 */
export function parseEndpoint(value: unknown, options: EndpointOptions = {}): Endpoint {
  const text = requireText(value);
  const bad = (why: string) => new NetError("bad-endpoint", `${JSON.stringify(text)} ${why}`);
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") throw bad("is not [ipv6]:port");
    const v6 = ipv6Bytes(text.slice(1, close));
    if (!v6) throw bad("does not hold an IPv6 address in brackets");
    const port = portOf(text.slice(close + 2), text);
    return { host: { kind: "ip", address: { family: 6, bytes: v6 } }, port };
  }
  const colon = text.lastIndexOf(":");
  if (colon < 0) throw bad("has no :port");
  const hostText = text.slice(0, colon);
  if (hostText.includes(":")) throw bad("is an IPv6 address without brackets");
  const port = portOf(text.slice(colon + 1), text);
  const v4 = ipv4Bytes(hostText);
  if (v4) return { host: { kind: "ip", address: { family: 4, bytes: v4 } }, port };
  if (DIGITS_AND_DOTS.test(hostText)) throw bad("holds a malformed IPv4 address");
  if (!options.allowHostname) throw bad("must hold an IP address, not a host name");
  if (!isHostname(hostText, options)) {
    throw bad("holds neither an IP address nor a valid host name");
  }
  return { host: { kind: "name", name: hostText.toLowerCase() }, port };
}

/**
 * Formats an endpoint canonically (IPv6 in brackets).
 *
 * @example formatEndpoint({ host: parseHost("::1"), port: 22 }) === "[::1]:22"
 */
export function formatEndpoint(endpoint: Endpoint): string {
  return joinHostPort(formatHost(endpoint.host), endpoint.port);
}

/**
 * Joins a host and a port, bracketing a host that has a colon (IPv6). Checks
 * nothing.
 *
 * @example joinHostPort("2001:db8::1", 443) === "[2001:db8::1]:443"
 * @example joinHostPort("example.com", 443) === "example.com:443"
 */
export function joinHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
