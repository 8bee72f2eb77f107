/** @jsxImportSource preact */
/**
 * Fleet overview: counts by state, the world map (GeoIP positions from
 * /api/geoip/positions where the database places a host, else the node's
 * region code), the node list (filterable), onboarding form.
 */
import type { PageContext } from "./context.ts";
import { NotLoggedIn } from "../lib/api.ts";
import { loadAll, loadList } from "../lib/load.ts";
import { list, num, type Obj, str } from "../lib/fields.ts";
import { regionPosition } from "../lib/regions.ts";
import { Badge, Table } from "../components/bits.tsx";
import { WorldMap } from "../components/world_map.tsx";
import { ApiForm } from "../components/forms.tsx";

const STATES = ["pending", "active", "unreachable", "disabled"];
const PAGE = 100;

export default async function fleet(ctx: PageContext) {
  const status = ctx.url.searchParams.get("status") ?? "";
  const q = ctx.url.searchParams.get("q") ?? "";
  const offset = Math.max(0, Number(ctx.url.searchParams.get("offset")) || 0);
  const [all, relays, geo] = await Promise.all([
    loadAll(ctx.api, "/api/nodes"),
    loadList(ctx.api, "/api/relays"),
    // Without GeoIP positions (no database, an error) the map places hosts by region.
    ctx.api.get<Obj>("/api/geoip/positions").catch((e) => {
      if (e instanceof NotLoggedIn) throw e;
      return null;
    }),
  ]);
  const placed = new Map(list(geo, "items").map((p) => [`${str(p, "kind")}:${str(p, "id")}`, p]));
  const geoOf = (kind: string, id: string) => {
    const p = placed.get(`${kind}:${id}`);
    if (!p) return { lat: null, lon: null, place: null };
    return {
      lat: num(p, "lat"),
      lon: num(p, "lon"),
      place: [str(p, "city"), str(p, "country")].filter(Boolean).join(", ") || null,
    };
  };
  const counts = new Map<string, number>();
  for (const n of all.items) counts.set(str(n, "status"), (counts.get(str(n, "status")) ?? 0) + 1);
  const ql = q.toLowerCase();
  const shown = all.items.filter((n) =>
    (!status || str(n, "status") === status) &&
    (!ql ||
      [str(n, "name"), str(n, "host"), str(n, "region")].some((v) => v.toLowerCase().includes(ql)))
  );
  const page = shown.slice(offset, offset + PAGE);
  const link = (o: number) => `/?${new URLSearchParams({ status, q, offset: String(o) })}`;
  return {
    title: "Fleet",
    body: (
      <section>
        <h1>Fleet</h1>
        <div class="stats" aria-label="Nodes by state">
          <div class="stat">
            <b>{all.total ?? all.items.length}</b>nodes
          </div>
          {STATES.map((s) => (
            <div class="stat" key={s}>
              <b>{counts.get(s) ?? 0}</b>
              <Badge state={s} />
            </div>
          ))}
          <div class="stat">
            <b>{relays.length}</b>relays
          </div>
        </div>
        <WorldMap
          assets={ctx.assets}
          credit={str(geo, "credit") || null}
          hosts={[
            ...shown.map((n) => ({
              id: str(n, "id"),
              name: str(n, "name"),
              state: str(n, "status"),
              region: str(n, "region") || null,
              ...geoOf("node", str(n, "id")),
              href: `/nodes/${encodeURIComponent(str(n, "id"))}`,
            })),
            ...(status || q ? [] : relays).map((r) => ({
              id: str(r, "id"),
              name: str(r, "host"),
              state: str(r, "status"),
              region: null,
              kind: "relay" as const,
              ...geoOf("relay", str(r, "id")),
              href: "/relays",
            })),
          ]}
        />
        <h2>Nodes</h2>
        <form method="get" action="/" class="card" aria-label="Filter nodes">
          <label>
            State{" "}
            <select name="status">
              <option value="">any</option>
              {STATES.map((s) => <option key={s} value={s} selected={s === status}>{s}</option>)}
            </select>
          </label>
          <label>
            Name, host or region <input type="search" name="q" value={q} />
          </label>
          <button type="submit">Filter</button>
        </form>
        <Table
          caption={`${shown.length} node(s)${status || q ? " matching the filter" : ""}`}
          rows={page}
          columns={[
            {
              label: "Name",
              cell: (n) => (
                <a href={`/nodes/${encodeURIComponent(str(n, "id"))}`}>{str(n, "name")}</a>
              ),
            },
            { label: "State", cell: (n) => <Badge state={str(n, "status")} /> },
            { label: "Host", cell: (n) => <code>{str(n, "host")}</code> },
            { label: "Region", cell: (n) => str(n, "region", "—") },
            {
              label: "Map position",
              cell: (n) => {
                const g = geoOf("node", str(n, "id"));
                if (g.lat !== null) return `GeoIP${g.place ? `: ${g.place}` : ""}`;
                return regionPosition(str(n, "region")) ? "region code" : "not placed";
              },
            },
            {
              label: "Revision",
              cell: (n) => `${str(n, "appliedRevision")}/${str(n, "desiredRevision")}`,
            },
            { label: "Onboarding", cell: (n) => str(n, "onboarding", "—") },
          ]}
        />
        <nav class="pager" aria-label="Node pages">
          {offset > 0 && <a href={link(Math.max(0, offset - PAGE))}>Previous {PAGE}</a>}
          {offset + PAGE < shown.length && <a href={link(offset + PAGE)}>Next {PAGE}</a>}
        </nav>
        <h2>Onboard a node over SSH</h2>
        <ApiForm
          csrf={ctx.csrf}
          api="/api/nodes"
          back="/"
          nums={["ssh_port"]}
          class="card"
          label="Onboard a node"
        >
          <label>
            Host (address or name) <input type="text" name="host" required />
          </label>
          <label>
            Name <input type="text" name="name" />
          </label>
          <label>
            SSH port <input type="number" name="ssh_port" value="22" min="1" max="65535" />
          </label>
          <label>
            SSH user <input type="text" name="ssh_user" value="root" />
          </label>
          <label>
            Region (cloud region code, places it on the map) <input type="text" name="region" />
          </label>
          <button type="submit">Onboard</button>
        </ApiForm>
      </section>
    ),
  };
}
