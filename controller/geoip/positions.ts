/**
 * Map positions of the fleet from the GeoIP database: each node and relay
 * whose host is an IP literal the database holds. Hosts it does not place
 * (names, unknown addresses, no database) are left to the region code.
 */
import type { GeoPosition } from "./database.ts";
import type { GeoipStore } from "./store.ts";

export interface PlacedHost extends GeoPosition {
  kind: "node" | "relay";
  id: string;
}

export interface FleetPositions {
  /** True when a database is loaded (so GeoIP placed what it could). */
  geoip: boolean;
  /** The credit the database's licence asks for while it is shown, or null. */
  credit: string | null;
  items: PlacedHost[];
}

export async function fleetPositions(
  store: GeoipStore | undefined,
  hosts: { kind: "node" | "relay"; id: string; host: string }[],
): Promise<FleetPositions> {
  const db = await store?.current() ?? null;
  if (!db) return { geoip: false, credit: null, items: [] };
  const items: PlacedHost[] = [];
  for (const h of hosts) {
    const p = db.lookup(h.host);
    if (p) items.push({ kind: h.kind, id: h.id, ...p });
  }
  return { geoip: true, credit: db.info.credit, items };
}
