/**
 * Tunnel addresses: each device gets one /32 from DEVICE_POOL, the same on
 * every node (the node's awg0 routes it to that device's peer). The lowest
 * free address is taken inside the enrolling transaction; a unique index
 * makes a double allocation impossible.
 */
import { type Db, statement } from "../db/sqlite.ts";
import { AccountError } from "./errors.ts";

/** 10.66.0.0/16: .0.0 and .0.1 are left out, and the broadcast-looking .255.255. */
export const DEVICE_POOL = { base: (10 << 24) | (66 << 16), first: 2, last: 65534 } as const;

function ipOf(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** The lowest address of the pool no device holds. Call inside a write transaction. */
export function allocateTunnelIp(db: Db): string {
  const used = new Set(
    (statement(db, "SELECT tunnel_ip FROM devices WHERE tunnel_ip IS NOT NULL").all() as {
      tunnel_ip: string;
    }[]).map((r) => r.tunnel_ip),
  );
  for (let i = DEVICE_POOL.first; i <= DEVICE_POOL.last; i++) {
    const ip = ipOf(DEVICE_POOL.base + i);
    if (!used.has(ip)) return ip;
  }
  throw new AccountError(
    "precondition",
    "the device address pool 10.66.0.0/16 is full; revoke unused devices",
  );
}
