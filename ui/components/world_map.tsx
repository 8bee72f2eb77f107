/** @jsxImportSource preact */
/**
 * The fleet on a world map: the bundled land outline (equirectangular,
 * 360×180, ui/build.ts) with one marker per placed host. State is shown
 * by colour and by shape (circle up, triangle down, square other) and
 * named in each marker's title and in the legend. Each title also says
 * what placed the marker: GeoIP (the address) or the region code; markers
 * placed by a region code are drawn faded, and the legend counts both.
 */
import { regionPosition } from "../lib/regions.ts";
import { tone } from "../lib/fields.ts";

export interface MapHost {
  id: string;
  name: string;
  state: string;
  region: string | null;
  /** "node" unless told; relays are named so in their title. */
  kind?: "node" | "relay";
  /** From GeoIP when configured; else the region code places the host. */
  lat?: number | null;
  lon?: number | null;
  /** Where lat/lon came from, for the title ("Paris, FR"). */
  place?: string | null;
  href?: string;
}

type Source = "geoip" | "region";

/** Where a host goes and what placed it; null when nothing does. */
export function placeOf(h: MapHost): { pos: [number, number]; source: Source } | null {
  if (h.lat != null && h.lon != null) return { pos: [h.lat, h.lon], source: "geoip" };
  const pos = regionPosition(h.region);
  return pos ? { pos, source: "region" } : null;
}

function shape(state: string, x: number, y: number, cls: string, label: string) {
  // A presentation attribute, not a style: the page's CSP allows no inline style.
  const data = cls.includes("by-region")
    ? { "data-source": "region", "fill-opacity": 0.45 }
    : { "data-source": "geoip" };
  const t = tone(state).cls;
  const c = `marker m-${t.slice(2)} ${cls}`;
  const title = <title>{label}</title>;
  if (t === "s-ok") return <circle class={c} cx={x} cy={y} r={2.2} {...data}>{title}</circle>;
  if (t === "s-bad") {
    return (
      <polygon
        class={c}
        points={`${x},${y - 2.6} ${x + 2.4},${y + 1.8} ${x - 2.4},${y + 1.8}`}
        {...data}
      >
        {title}
      </polygon>
    );
  }
  return <rect class={c} x={x - 1.9} y={y - 1.9} width={3.8} height={3.8} {...data}>{title}</rect>;
}

export function WorldMap(
  { hosts, assets, credit }: { hosts: MapHost[]; assets: string; credit?: string | null },
) {
  let unplaced = 0;
  const placedBy = { geoip: 0, region: 0 };
  // Hosts in one place are fanned out a little so each stays visible and clickable.
  const seen = new Map<string, number>();
  const marks = hosts.map((h) => {
    const place = placeOf(h);
    if (!place) {
      unplaced++;
      return null;
    }
    const { pos, source } = place;
    placedBy[source]++;
    const key = `${pos[0]},${pos[1]}`;
    const n = seen.get(key) ?? 0;
    seen.set(key, n + 1);
    const angle = n * 2.4;
    const spread = n === 0 ? 0 : 1.2 + Math.sqrt(n) * 1.1;
    const x = +(pos[1] + 180 + Math.cos(angle) * spread).toFixed(2);
    const y = +(90 - pos[0] + Math.sin(angle) * spread).toFixed(2);
    const where = source === "geoip"
      ? `placed by GeoIP${h.place ? ` (${h.place})` : ""}`
      : `placed by region ${h.region}`;
    const label = `${h.kind === "relay" ? "relay " : ""}${h.name}: ${h.state} — ${where}`;
    const m = shape(h.state, x, y, source === "region" ? "by-region" : "", label);
    return h.href ? <a key={h.id} href={h.href} aria-label={label}>{m}</a> : m;
  });
  return (
    <figure>
      <svg class="map" viewBox="0 12 360 150" role="img" aria-label="World map of the fleet">
        <image href={`/static/build/world.svg?v=${assets}`} x={0} y={0} width={360} height={180} />
        {marks}
      </svg>
      <figcaption class="legend">
        <span>
          <svg width="12" height="12" viewBox="-3 -3 6 6" aria-hidden="true">
            <circle class="marker m-ok" r="2.2" />
          </svg>{" "}
          up
        </span>
        <span>
          <svg width="12" height="12" viewBox="-3 -3 6 6" aria-hidden="true">
            <polygon class="marker m-bad" points="0,-2.6 2.4,1.8 -2.4,1.8" />
          </svg>{" "}
          unreachable / down
        </span>
        <span>
          <svg width="12" height="12" viewBox="-3 -3 6 6" aria-hidden="true">
            <rect class="marker m-warn" x="-1.9" y="-1.9" width="3.8" height="3.8" />
          </svg>{" "}
          pending / other
        </span>
        {(placedBy.geoip > 0 || placedBy.region > 0) && (
          <span class="muted" data-placed-by>
            placed by GeoIP: {placedBy.geoip}, by region code (faded): {placedBy.region}
          </span>
        )}
        {unplaced > 0 && (
          <span class="muted">{unplaced} not placed (no GeoIP position, no region known)</span>
        )}
        {credit && placedBy.geoip > 0 && (
          <span class="muted">
            <a href="https://db-ip.com" rel="noopener noreferrer">{credit}</a>
          </span>
        )}
      </figcaption>
    </figure>
  );
}
