/**
 * Field checks for everything the data plane writes into a config file, a
 * UAPI request or an argv (CONTRACTS.md §7.6). Each check either returns the
 * canonical value or throws a {@link DataplaneError} naming the field.
 */
import { fromBase64, fromHex, toBase64, toHex } from "../encoding.ts";
import { DataplaneError } from "./errors.ts";

/** Standard base64 of exactly 32 bytes: 43 alphabet characters, the last with 2 zero low bits, then `=`. */
const WG_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** Client-facing interface (awg0 on the original node). */
const CLIENT_INTERFACE = /^awg[0-9]{1,3}$/;
/** Inner (cascade) link interfaces: awg1 … awg999. */
const INNER_INTERFACE = /^awg[1-9][0-9]{0,2}$/;
/** Any Linux interface name as `ip route` reports it (IFNAMSIZ − 1 = 15 characters). */
const LINUX_INTERFACE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

/** Lowest MTU accepted for a tunnel interface (the IPv6 minimum). */
export const MTU_MIN = 1280;
/** Highest MTU accepted for a tunnel interface (jumbo frames). */
export const MTU_MAX = 9000;
/** Routing tables the kernel reserves (unspec, default, main, local). */
const RESERVED_TABLES = new Set([0, 253, 254, 255]);

/**
 * Checks a WireGuard key (private, public or preshared): standard padded
 * base64 of exactly 32 bytes, nothing else (no whitespace, no newline).
 */
export function checkWgKey(value: unknown, field: string): string {
  if (typeof value !== "string" || !WG_KEY.test(value)) {
    throw new DataplaneError(
      "bad-key",
      field,
      "expected standard base64 of exactly 32 bytes (44 characters ending in '=')",
    );
  }
  return toBase64(fromBase64(value, field, 32));
}

/** Converts a checked base64 WireGuard key to the lowercase hex UAPI wants. */
export function wgKeyToHex(value: unknown, field: string): string {
  return toHex(fromBase64(checkWgKey(value, field), field, 32));
}

/** Converts a 64-digit hex key (UAPI form) back to standard base64. */
export function wgKeyFromHex(value: unknown, field: string): string {
  if (typeof value !== "string" || !/^[0-9a-f]{64}$/.test(value)) {
    throw new DataplaneError("bad-key", field, "expected 64 lowercase hex digits");
  }
  return toBase64(fromHex(value, field, 32));
}

/** Checks the client-facing interface name (`^awg[0-9]{1,3}$`, e.g. awg0). */
export function checkClientInterface(value: unknown, field: string): string {
  if (typeof value !== "string" || !CLIENT_INTERFACE.test(value)) {
    throw new DataplaneError(
      "bad-interface",
      field,
      `${JSON.stringify(value)} is not a client interface name (awg0 … awg999)`,
    );
  }
  return value;
}

/** Checks an inner-link interface name (`^awg[1-9][0-9]{0,2}$`; never awg0). */
export function checkInnerInterface(value: unknown, field: string): string {
  if (typeof value !== "string" || !INNER_INTERFACE.test(value)) {
    throw new DataplaneError(
      "bad-interface",
      field,
      `${JSON.stringify(value)} is not an inner-link interface name (awg1 … awg999)`,
    );
  }
  return value;
}

/** Checks a Linux interface name such as the egress device (eth0, ens3, enp0s31f6). */
export function checkLinuxInterface(value: unknown, field: string): string {
  if (
    typeof value !== "string" || !LINUX_INTERFACE.test(value) || value === "." || value === ".."
  ) {
    throw new DataplaneError(
      "bad-interface",
      field,
      `${JSON.stringify(value)} is not a Linux interface name`,
    );
  }
  return value;
}

/** Checks that `value` is an integer in `[min, max]`. */
export function checkInt(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new DataplaneError(
      "out-of-range",
      field,
      `${String(value)} is not an integer in ${min}-${max}`,
    );
  }
  return value;
}

/** UDP/TCP port 1-65535. */
export function checkPort(value: unknown, field: string): number {
  return checkInt(value, field, 1, 65535);
}

/**
 * Lowest MTU a device's tunnel may be given: the original controller gives
 * 4-hop cascades 1180 (1420 − 80 per extra hop, floor 576). IPv6 needs
 * {@link MTU_MIN}, so renderers warn below it.
 */
export const CLIENT_MTU_MIN = 576;

/** Tunnel MTU, {@link MTU_MIN}-{@link MTU_MAX}. */
export function checkMtu(value: unknown, field: string): number {
  return checkInt(value, field, MTU_MIN, MTU_MAX);
}

/** Firewall mark: non-zero 32-bit. */
export function checkMark(value: unknown, field: string): number {
  return checkInt(value, field, 1, 0xffffffff);
}

/** Routing table id: 32-bit, not one the kernel reserves (0, 253 default, 254 main, 255 local). */
export function checkTable(value: unknown, field: string): number {
  const table = checkInt(value, field, 1, 0xffffffff);
  if (RESERVED_TABLES.has(table)) {
    throw new DataplaneError("out-of-range", field, `routing table ${table} is reserved`);
  }
  return table;
}

/** Persistent keepalive in seconds, 1-65535 (absent = off). */
export function checkKeepalive(value: unknown, field: string): number {
  return checkInt(value, field, 1, 65535);
}

/** Checks that `value` is an array and returns it (elements are checked by the caller). */
export function checkArray(value: unknown, field: string, maxLength = 1024): unknown[] {
  if (!Array.isArray(value)) {
    throw new DataplaneError("not-an-array", field, `expected an array, got ${typeof value}`);
  }
  if (value.length > maxLength) {
    throw new DataplaneError("too-many", field, `at most ${maxLength} entries`);
  }
  return value;
}
