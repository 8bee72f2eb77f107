/**
 * Strict parsing and canonical re-serialisation of IP addresses, CIDR
 * prefixes, DNS host names and `host:port` endpoints. Whatever reaches a
 * config file or an argv has been through one of these functions, so it can
 * contain nothing but the characters of its canonical form (CONTRACTS.md §7.6).
 */
import { DataplaneError } from "./errors.ts";

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

/** A parsed endpoint: an IP literal or a DNS host name, and a port. */
export interface Endpoint {
  host: { kind: "ip"; address: IpAddress } | { kind: "name"; name: string };
  port: number;
}

const IPV4_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
const IPV4 = new RegExp(`^${IPV4_OCTET}(?:\\.${IPV4_OCTET}){3}$`);
const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const DECIMAL = /^(?:0|[1-9][0-9]*)$/;

function requireString(value: unknown, field: string): string {
  if (typeof value !== "string") {
    throw new DataplaneError("not-a-string", field, `expected a string, got ${typeof value}`);
  }
  return value;
}

function parseIpv4(text: string): Uint8Array | null {
  if (!IPV4.test(text)) return null;
  return Uint8Array.from(text.split(".").map(Number));
}

function parseIpv6(text: string): Uint8Array | null {
  if (text.length === 0 || text.length > 45 || !/^[0-9A-Fa-f:.]+$/.test(text)) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const words: number[][] = [];
  for (let h = 0; h < halves.length; h++) {
    const half = halves[h];
    const out: number[] = [];
    if (half !== "") {
      const groups = half.split(":");
      for (let i = 0; i < groups.length; i++) {
        const g = groups[i];
        const last = i === groups.length - 1 && h === halves.length - 1;
        if (last && g.includes(".")) {
          const v4 = parseIpv4(g);
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

/** Parses an IPv4 dotted quad (no leading zeros) or an IPv6 address (no zone). */
export function parseIp(value: unknown, field: string): IpAddress {
  const text = requireString(value, field);
  const v4 = parseIpv4(text);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseIpv6(text);
  if (v6) return { family: 6, bytes: v6 };
  throw new DataplaneError("bad-ip", field, `${JSON.stringify(text)} is not an IP address`);
}

/** Formats an address canonically (RFC 5952 for IPv6, `::ffff:a.b.c.d` for mapped IPv4). */
export function formatIp(address: IpAddress): string {
  const b = address.bytes;
  if (address.family === 4) return Array.from(b).join(".");
  const words = Array.from({ length: 8 }, (_, i) => (b[2 * i] << 8) | b[2 * i + 1]);
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
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
  const text = requireString(value, field);
  const slash = text.indexOf("/");
  if (slash < 0) {
    throw new DataplaneError("bad-cidr", field, `${JSON.stringify(text)} has no /prefix`);
  }
  const prefixText = text.slice(slash + 1);
  let address: IpAddress;
  try {
    address = parseIp(text.slice(0, slash), field);
  } catch {
    throw new DataplaneError("bad-cidr", field, `${JSON.stringify(text)} is not a CIDR prefix`);
  }
  const max = address.family === 4 ? 32 : 128;
  if (!DECIMAL.test(prefixText) || Number(prefixText) > max) {
    throw new DataplaneError(
      "bad-cidr",
      field,
      `${JSON.stringify(text)}: prefix length must be 0-${max}`,
    );
  }
  const prefix = Number(prefixText);
  if (!options.allowHostBits && hasHostBits(address.bytes, prefix)) {
    throw new DataplaneError(
      "bad-cidr",
      field,
      `${JSON.stringify(text)} has bits set beyond /${prefix}; use the network address`,
    );
  }
  return { address, prefix };
}

function hasHostBits(bytes: Uint8Array, prefix: number): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i));
    const mask = keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
    if ((bytes[i] & ~mask & 0xff) !== 0) return true;
  }
  return false;
}

/** Formats a CIDR prefix canonically. */
export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr.address)}/${cidr.prefix}`;
}

/** Parses and re-serialises a CIDR prefix; see {@link parseCidr}. */
export function canonicalCidr(
  value: unknown,
  field: string,
  options: { allowHostBits?: boolean } = {},
): string {
  return formatCidr(parseCidr(value, field, options));
}

/**
 * Checks a DNS host name: dot-separated labels of letters, digits and inner
 * hyphens, 1-63 characters each, 253 in all, no trailing dot, last label not
 * all digits. Returns it in lower case.
 */
export function parseHostname(value: unknown, field: string): string {
  const text = requireString(value, field);
  const lower = text.toLowerCase();
  const labels = lower.split(".");
  if (
    lower.length === 0 || lower.length > 253 || !labels.every((l) => LABEL.test(l)) ||
    /^[0-9]+$/.test(labels[labels.length - 1])
  ) {
    throw new DataplaneError("bad-hostname", field, `${JSON.stringify(text)} is not a host name`);
  }
  return lower;
}

/** Checks a decimal port 1-65535 given as a string (no sign, no leading zeros). */
function parsePortText(text: string, field: string, whole: string): number {
  if (!DECIMAL.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new DataplaneError(
      "bad-endpoint",
      field,
      `${JSON.stringify(whole)}: port must be 1-65535`,
    );
  }
  return Number(text);
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
  const text = requireString(value, field);
  const bad = (why: string) =>
    new DataplaneError("bad-endpoint", field, `${JSON.stringify(text)} ${why}`);
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") throw bad("is not [ipv6]:port");
    const address = parseIpv6(text.slice(1, close));
    if (!address) throw bad("does not hold an IPv6 address in brackets");
    const port = parsePortText(text.slice(close + 2), field, text);
    return { host: { kind: "ip", address: { family: 6, bytes: address } }, port };
  }
  const colon = text.lastIndexOf(":");
  if (colon < 0) throw bad("has no :port");
  const hostText = text.slice(0, colon);
  if (hostText.includes(":")) throw bad("is an IPv6 address without brackets");
  const port = parsePortText(text.slice(colon + 1), field, text);
  const v4 = parseIpv4(hostText);
  if (v4) return { host: { kind: "ip", address: { family: 4, bytes: v4 } }, port };
  if (/^[0-9.]+$/.test(hostText)) throw bad("holds a malformed IPv4 address");
  if (!options.allowHostname) throw bad("must hold an IP address, not a host name");
  let name: string;
  try {
    name = parseHostname(hostText, field);
  } catch {
    throw bad("holds neither an IP address nor a valid host name");
  }
  return { host: { kind: "name", name }, port };
}

/** Formats an endpoint canonically (IPv6 in brackets). */
export function formatEndpoint(endpoint: Endpoint): string {
  const h = endpoint.host;
  if (h.kind === "name") return `${h.name}:${endpoint.port}`;
  const ip = formatIp(h.address);
  return h.address.family === 6 ? `[${ip}]:${endpoint.port}` : `${ip}:${endpoint.port}`;
}

/** Parses and re-serialises an endpoint; see {@link parseEndpoint}. */
export function canonicalEndpoint(
  value: unknown,
  field: string,
  options: { allowHostname?: boolean } = {},
): string {
  return formatEndpoint(parseEndpoint(value, field, options));
}

/** Returns an IP literal in canonical form, or a checked lower-case host name. */
export function canonicalHost(value: unknown, field: string): string {
  const text = requireString(value, field);
  const v4 = parseIpv4(text);
  if (v4) return formatIp({ family: 4, bytes: v4 });
  const v6 = parseIpv6(text);
  if (v6) return formatIp({ family: 6, bytes: v6 });
  if (/^[0-9.]+$/.test(text)) {
    throw new DataplaneError(
      "bad-ip",
      field,
      `${JSON.stringify(text)} is a malformed IPv4 address`,
    );
  }
  return parseHostname(text, field);
}
