/** @jsxImportSource preact */
/**
 * The fleet on a world map: the bundled land outline (equirectangular,
 * 360×180, ui/build.ts) with one marker per placed host. State is shown
 * by colour and by shape (circle up, triangle down, square other) and
 * named in each marker's title and in the legend.
 */
import { regionPosition } from "../lib/regions.ts";
import { tone } from "../lib/fields.ts";

export interface MapHost {
  id: string;
  name: string;
  state: string;
  region: string | null;
  /** From GeoIP when configured; else the region code places the host. */
  lat?: number | null;
  lon?: number | null;
  href?: string;
}

function shape(state: string, x: number, y: number, cls: string, label: string) {
  const t = tone(state).cls;
  const c = `marker m-${t.slice(2)} ${cls}`;
  const title = <title>{label}</title>;
  if (t === "s-ok") return <circle class={c} cx={x} cy={y} r={2.2}>{title}</circle>;
  if (t === "s-bad") {
    return (
      <polygon class={c} points={`${x},${y - 2.6} ${x + 2.4},${y + 1.8} ${x - 2.4},${y + 1.8}`}>
        {title}
      </polygon>
    );
  }
  return <rect class={c} x={x - 1.9} y={y - 1.9} width={3.8} height={3.8}>{title}</rect>;
}

export function WorldMap({ hosts, assets }: { hosts: MapHost[]; assets: string }) {
  let unplaced = 0;
  // Hosts in one place are fanned out a little so each stays visible and clickable.
  const seen = new Map<string, number>();
  const marks = hosts.map((h) => {
    const pos = h.lat != null && h.lon != null ? [h.lat, h.lon] : regionPosition(h.region);
    if (!pos) {
      unplaced++;
      return null;
    }
    const key = `${pos[0]},${pos[1]}`;
    const n = seen.get(key) ?? 0;
    seen.set(key, n + 1);
    const angle = n * 2.4;
    const spread = n === 0 ? 0 : 1.2 + Math.sqrt(n) * 1.1;
    const x = +(pos[1] + 180 + Math.cos(angle) * spread).toFixed(2);
    const y = +(90 - pos[0] + Math.sin(angle) * spread).toFixed(2);
    const label = `${h.name}: ${h.state}${h.region ? ` (${h.region})` : ""}`;
    const m = shape(h.state, x, y, "", label);
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
        {unplaced > 0 && <span class="muted">{unplaced} not placed (no region known)</span>}
      </figcaption>
    </figure>
  );
}
