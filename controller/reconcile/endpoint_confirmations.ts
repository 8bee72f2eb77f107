/**
 * The endpoint ranges each node confirmed (CONTRACTS.md §5.7): what a node
 * answered to SetNetworkConfig about the UDP ranges it DNATs onto its
 * AmneziaWG listener, kept in `node_endpoint_confirmations` (written by
 * reconcile, writes.ts), and the part of a node's pool that profiles
 * advertise: the pool clipped to those ranges.
 *
 * A node with no confirmation (not reached yet, or an original node, which
 * answers none) advertises nothing of its pool: clients dial its host at
 * 443 as with an empty pool. An operator whose original node sits behind
 * an external DNAT loses the pool in profiles; only our agent confirms.
 */
import {
  formatIp,
  MAX_CONFIRMED_RANGES,
  parseIp,
  type PortRangeForward,
  validateEndpointRanges,
} from "../../core/dataplane/mod.ts";
import { type Db, statement } from "../db/sqlite.ts";
import type { NodeMessage } from "../fleet/types.ts";

/** What a node's SetNetworkConfigResponse confirms; `problem` when its list was refused. */
export interface ConfirmedAnswer {
  ranges: PortRangeForward[];
  problem?: string;
}

/**
 * Reads the endpoint ranges of a SetNetworkConfigResponse, checked as the
 * controller checks a pool (a node's answer is input like any other): a
 * list that fails is taken as confirming nothing, and says why. Absent or
 * `null` (the original node): none.
 */
export function confirmedAnswer(res: NodeMessage): ConfirmedAnswer {
  const raw = res.endpoint_ranges ?? [];
  try {
    if (!Array.isArray(raw)) throw new Error("endpoint_ranges: not a list");
    const ranges = validateEndpointRanges(
      raw.map((r) => {
        const x = (typeof r === "object" && r !== null ? r : {}) as NodeMessage;
        return { ip: x.ip, portMin: x.port_min, portMax: x.port_max };
      }),
      "endpoint_ranges",
      MAX_CONFIRMED_RANGES,
    );
    return { ranges };
  } catch (e) {
    return { ranges: [], problem: String((e as Error)?.message ?? e).slice(0, 300) };
  }
}

/** A list as stored (`nodes.endpoints`, `node_endpoint_confirmations.ranges`). */
export function rangesJson(ranges: readonly PortRangeForward[]): string {
  return JSON.stringify(ranges.map((r) => ({ ip: r.ip, portMin: r.portMin, portMax: r.portMax })));
}

/**
 * A stored list read back leniently: entries that are not ranges are left
 * out (a pool written before today's checks still counts for what is
 * valid in it), IPs canonical so that pool and confirmation compare.
 */
export function storedRanges(json: string | null | undefined): PortRangeForward[] {
  let list: unknown;
  try {
    list = JSON.parse(json ?? "[]");
  } catch {
    return [];
  }
  if (!Array.isArray(list)) return [];
  const out: PortRangeForward[] = [];
  for (const r of list) {
    const x = (typeof r === "object" && r !== null ? r : {}) as Record<string, unknown>;
    const { portMin, portMax } = x;
    if (!Number.isInteger(portMin) || !Number.isInteger(portMax)) continue;
    try {
      out.push({
        ip: formatIp(parseIp(x.ip, "ip")),
        portMin: portMin as number,
        portMax: portMax as number,
      });
    } catch { /* not an IP: left out */ }
  }
  return out;
}

/**
 * The part of `pool` the node confirmed: per pool entry, in pool order,
 * its intersection with each confirmed range on the same IP (lowest ports
 * first); an entry with no confirmed port is left out. Never more than the
 * pool: what a node confirms beyond it (its own flags) is not advertised.
 */
export function clipToConfirmed(
  pool: readonly PortRangeForward[],
  confirmed: readonly PortRangeForward[],
): PortRangeForward[] {
  const out: PortRangeForward[] = [];
  const seen = new Set<string>();
  for (const p of pool) {
    const pieces = confirmed
      .filter((c) => c.ip === p.ip && c.portMin <= p.portMax && p.portMin <= c.portMax)
      .map((c) => ({
        ip: p.ip,
        portMin: Math.max(p.portMin, c.portMin),
        portMax: Math.min(p.portMax, c.portMax),
      }))
      .sort((a, b) => a.portMin - b.portMin);
    for (const piece of pieces) {
      const key = `${piece.ip} ${piece.portMin} ${piece.portMax}`;
      if (seen.has(key)) continue; // overlapping pool entries of an old row
      seen.add(key);
      out.push(piece);
    }
  }
  return out;
}

/** A node's last confirmation, or null when it has confirmed nothing yet. */
export function confirmationOf(
  db: Db,
  nodeId: string,
): { ranges: PortRangeForward[]; confirmedAt: string } | null {
  const row = statement(
    db,
    "SELECT ranges, confirmed_at FROM node_endpoint_confirmations WHERE node_id = ?",
  ).get(nodeId) as { ranges: string; confirmed_at: string } | undefined;
  return row ? { ranges: storedRanges(row.ranges), confirmedAt: row.confirmed_at } : null;
}

/** What a node's profiles advertise of its pool (stored forms; a null confirmation: nothing). */
export function advertisedRanges(
  poolJson: string,
  confirmedJson: string | null | undefined,
): PortRangeForward[] {
  if (confirmedJson === null || confirmedJson === undefined) return [];
  return clipToConfirmed(storedRanges(poolJson), storedRanges(confirmedJson));
}

/**
 * The settings row (outside SETTING_KEYS, so never listed or edited as a
 * setting) holding the newest confirmation time a profile reseal went
 * through: every profile was resealed, or tried until the retries were
 * used up, after every confirmation up to it. JSON string of that time.
 */
export const RESEALED_THROUGH_KEY = "reconcile_confirmations_resealed_through";

/** The newest confirmation's `updated_at`, or null when no node confirmed anything. */
export function latestConfirmation(db: Db): string | null {
  const row = statement(db, "SELECT MAX(updated_at) AS t FROM node_endpoint_confirmations")
    .get() as { t: string | null } | undefined;
  return row?.t ?? null;
}

/** The confirmation time the last finished reseal covered ({@link RESEALED_THROUGH_KEY}), or null. */
export function resealedThrough(db: Db): string | null {
  const row = statement(db, "SELECT value FROM settings WHERE key = ?").get(
    RESEALED_THROUGH_KEY,
  ) as { value: string } | undefined;
  if (!row) return null;
  try {
    const v = JSON.parse(row.value);
    return typeof v === "string" ? v : null;
  } catch {
    return null;
  }
}

/**
 * Whether a start must reseal profiles for confirmations: a confirmation
 * is newer than what the last finished reseal covered (a reseal cut short
 * by a stop or a crash). Devices that failed in a finished reseal, after
 * its retries, do not count: a reseal at every start would not fix them
 * and would reseal the whole fleet each time. With no record yet (a
 * database from before it), whether some profile a reseal covers is older
 * than a confirmation.
 */
export function resealPendingAtStart(db: Db): boolean {
  const latest = latestConfirmation(db);
  if (latest === null) return false;
  const through = resealedThrough(db);
  return through !== null ? latest > through : profilesOlderThanConfirmations(db);
}

/**
 * Whether the sealed profile of some device a reseal covers (accounts'
 * resealMany: active, with a user and both keys) is older than a
 * confirmation.
 */
export function profilesOlderThanConfirmations(db: Db): boolean {
  return statement(
    db,
    `SELECT 1 FROM sealed_profiles sp JOIN devices d ON d.id = sp.device_id
       WHERE d.status = 'active' AND d.user_id IS NOT NULL AND d.wg_public_key IS NOT NULL
         AND d.encryption_public_key IS NOT NULL
         AND sp.updated_at < (SELECT MAX(updated_at) FROM node_endpoint_confirmations)
       LIMIT 1`,
  ).get() !== undefined;
}
