/** @jsxImportSource preact */
/** Paths: cascades from an entry node to an exit node, with the inner link's MTU. */
import type { PageContext } from "./context.ts";
import { loadList } from "../lib/load.ts";
import { field, list, str } from "../lib/fields.ts";
import { AutoTable } from "../components/auto_table.tsx";

function hops(p: unknown): string[] {
  const h = list(p, "hops");
  if (h.length) return h.map((x) => (typeof x === "string" ? x : str(x, "name") || str(x, "id")));
  return [str(p, "entryNodeId") || str(p, "entry"), str(p, "exitNodeId") || str(p, "exit")]
    .filter(Boolean);
}

export default async function paths(ctx: PageContext) {
  const rows = await loadList(ctx.api, "/api/paths");
  return {
    title: "Paths",
    body: (
      <section>
        <h1>Paths</h1>
        <p class="muted">Cascades: clients enter at the first node and leave at the last.</p>
        {rows.map((p, i) => (
          <div class="card" key={i}>
            <div class="path-graph" aria-label="Cascade from entry to exit">
              {hops(p).map((h, j) => (
                <>
                  {j > 0 && <span aria-hidden="true">→</span>}
                  <span class="hop">
                    {j === 0 ? "entry " : j === hops(p).length - 1 ? "exit " : ""}
                    <b>{h}</b>
                  </span>
                </>
              ))}
              {field(p, "mtu") != null && <span class="muted">MTU {str(p, "mtu")}</span>}
            </div>
          </div>
        ))}
        <AutoTable caption={`${rows.length} path(s)`} rows={rows} empty="No cascades defined." />
      </section>
    ),
  };
}
