/**
 * Syntax checks for network strings that end up in configs and links:
 * IP literals, host names, CIDRs and `host:port`. Checks only; nothing is
 * resolved.
 */

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Dotted-quad IPv4 without leading zeros. */
export function isIpv4(s: string): boolean {
  return IPV4.test(s);
}

/** An IPv6 literal without brackets or zone (WHATWG URL host parser). */
export function isIpv6(s: string): boolean {
  if (!/^[0-9A-Fa-f:.]{2,45}$/.test(s) || !s.includes(":")) return false;
  try {
    new URL(`http://[${s}]/`);
    return true;
  } catch {
    return false;
  }
}

/** An IP literal (v4 or v6) or a DNS host name of LDH labels. */
export function isHost(s: string): boolean {
  if (isIpv4(s) || isIpv6(s)) return true;
  if (s.length === 0 || s.length > 253 || /^[\d.]+$/.test(s)) return false;
  return s.replace(/\.$/, "").split(".").every((label) => LABEL.test(label));
}

/** `address/prefix` with an IP literal and a prefix length in range. */
export function isCidr(s: string): boolean {
  const slash = s.indexOf("/");
  if (slash < 0) return false;
  const addr = s.slice(0, slash);
  const prefix = s.slice(slash + 1);
  if (!/^(?:0|[1-9]\d{0,2})$/.test(prefix)) return false;
  const bits = Number(prefix);
  if (isIpv4(addr)) return bits <= 32;
  return isIpv6(addr) && bits <= 128;
}

/** Splits `host:port` (IPv6 hosts bracketed); undefined when malformed. */
export function splitHostPort(s: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (m[3].length > 1 && m[3].startsWith("0")) return undefined;
  if (port < 1 || port > 65535) return undefined;
  if (m[1] !== undefined ? !isIpv6(host) : !isHost(host)) return undefined;
  return { host, port };
}

/** Joins a host and port, bracketing IPv6 literals. */
export function joinHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
