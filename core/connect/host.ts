/**
 * Host grammar of a CONNECT target: an IPv4 dotted quad, an IPv6 literal (the
 * caller strips the brackets), or a DNS hostname (RFC 1123 letters, digits,
 * hyphens). Each check throws ConnectError naming the fault.
 */
import { PharosError } from "../errors.ts";

/**
 * Every CONNECT line failure. Codes are stable: too-long, bad-character,
 * no-newline, empty-host, missing-port, bad-port, port-out-of-range,
 * unbracketed-ipv6, bad-brackets, bad-ipv6, bad-ipv4, bad-hostname,
 * bad-argument.
 */
export class ConnectError extends PharosError {}

export type HostKind = "ipv4" | "ipv6" | "name";

const MAX_HOSTNAME = 253;
const MAX_LABEL = 63;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isHex(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function isLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** True for four decimal octets 0..255 without leading zeros. */
export function isIPv4(text: string): boolean {
  const parts = text.split(".");
  if (parts.length !== 4) return false;
  for (const p of parts) {
    if (p.length < 1 || p.length > 3) return false;
    for (let i = 0; i < p.length; i++) if (!isDigit(p.charCodeAt(i))) return false;
    if (p.length > 1 && p[0] === "0") return false;
    if (Number(p) > 255) return false;
  }
  return true;
}

function isHexGroup(g: string): boolean {
  if (g.length < 1 || g.length > 4) return false;
  for (let i = 0; i < g.length; i++) if (!isHex(g.charCodeAt(i))) return false;
  return true;
}

/** Counts the 16-bit groups of one side of "::", or -1 if malformed. */
function countGroups(side: string, mayEndInIPv4: boolean): number {
  if (side === "") return 0;
  const groups = side.split(":");
  let n = 0;
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i];
    if (mayEndInIPv4 && i === groups.length - 1 && g.includes(".")) {
      if (!isIPv4(g)) return -1;
      n += 2;
    } else if (isHexGroup(g)) {
      n += 1;
    } else {
      return -1;
    }
  }
  return n;
}

/**
 * True for an RFC 4291 IPv6 address in text form (hex groups, at most one
 * "::", optional trailing dotted IPv4). Zone ids ("%eth0") are not accepted.
 */
export function isIPv6(text: string): boolean {
  if (text.length < 2 || text.length > 45) return false;
  const halves = text.split("::");
  if (halves.length > 2) return false;
  if (halves.length === 1) return countGroups(text, true) === 8;
  const left = countGroups(halves[0], false);
  const right = countGroups(halves[1], true);
  return left >= 0 && right >= 0 && left + right <= 7;
}

/** True for an RFC 1123 hostname whose last label is not all digits. */
export function isHostname(text: string): boolean {
  if (text.length < 1 || text.length > MAX_HOSTNAME) return false;
  const labels = text.split(".");
  for (const label of labels) {
    if (label.length < 1 || label.length > MAX_LABEL) return false;
    for (let i = 0; i < label.length; i++) {
      const c = label.charCodeAt(i);
      if (!isLetter(c) && !isDigit(c) && c !== 0x2d) return false;
    }
    if (label[0] === "-" || label[label.length - 1] === "-") return false;
  }
  const last = labels[labels.length - 1];
  return ![...last].every((ch) => isDigit(ch.charCodeAt(0)));
}

/** Classifies an unbracketed host or throws ConnectError. */
export function checkHost(host: string): HostKind {
  if (host.length === 0) throw new ConnectError("empty-host", "CONNECT target has an empty host");
  if (host.includes(":")) {
    if (!isIPv6(host)) {
      throw new ConnectError(
        "bad-ipv6",
        `CONNECT target host "${host}" is not a valid IPv6 address`,
      );
    }
    return "ipv6";
  }
  if (/^[0-9.]+$/.test(host)) {
    if (!isIPv4(host)) {
      throw new ConnectError(
        "bad-ipv4",
        `CONNECT target host "${host}" is not a valid IPv4 address`,
      );
    }
    return "ipv4";
  }
  if (!isHostname(host)) {
    throw new ConnectError(
      "bad-hostname",
      `CONNECT target host "${host}" is not a valid hostname (letters, digits, hyphens; labels of 1-63)`,
    );
  }
  return "name";
}
