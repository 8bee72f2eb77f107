/** @jsxImportSource preact */
/**
 * Paths: cascades from an entry node to an exit node, with the inner
 * link's MTU; a form creates one, and each path has an exit switch, an MTU
 * change and a remove button (each sends the path's version, so a stale
 * form shows the 409 page with the current values).
 */
import type { PageContext } from "./context.ts";
import { loadAll, loadList } from "../lib/load.ts";
import { field, type Obj, str } from "../lib/fields.ts";
import { AutoTable } from "../components/auto_table.tsx";
import { ApiForm } from "../components/forms.tsx";

function NodeOptions(
  { nodes, except, selected }: { nodes: Obj[]; except?: string; selected?: string },
) {
  return (
    <>
      {nodes.filter((n) => str(n, "id") !== except).map((n) => (
        <option key={str(n, "id")} value={str(n, "id")} selected={str(n, "id") === selected}>
          {str(n, "name")}
        </option>
      ))}
    </>
  );
}

export default async function paths(ctx: PageContext) {
  const [rows, fleet] = await Promise.all([
    loadList(ctx.api, "/api/paths"),
    loadAll(ctx.api, "/api/nodes"),
  ]);
  const nodes = fleet.items;
  const name = (p: Obj, end: "entry" | "exit") =>
    str(p, `${end}NodeName`) || str(p, `${end}NodeId`);
  return {
    title: "Paths",
    body: (
      <section>
        <h1>Paths</h1>
        <p class="muted">Cascades: clients enter at the first node and leave at the last.</p>
        {rows.map((p) => {
          const id = str(p, "id");
          return (
            <div class="card" key={id}>
              <div class="path-graph" aria-label="Cascade from entry to exit">
                <span class="hop">
                  entry <b>{name(p, "entry")}</b>
                </span>
                <span aria-hidden="true">→</span>
                <span class="hop">
                  exit <b>{name(p, "exit")}</b>
                </span>
                <span class="muted">
                  MTU {field(p, "mtu") != null ? str(p, "mtu") : "default (1340)"}
                </span>
              </div>
              <ApiForm
                csrf={ctx.csrf}
                api={`/api/paths/${encodeURIComponent(id)}`}
                method="PATCH"
                back="/paths"
                nums={["version"]}
                class="inline"
                label={`Switch the exit of the path from ${name(p, "entry")}`}
              >
                <input type="hidden" name="version" value={str(p, "version")} />
                <label>
                  New exit{" "}
                  <select name="exit_node_id" required>
                    <NodeOptions
                      nodes={nodes}
                      except={str(p, "entryNodeId")}
                      selected={str(p, "exitNodeId")}
                    />
                  </select>
                </label>{" "}
                <button type="submit">Switch exit</button>
              </ApiForm>
              <ApiForm
                csrf={ctx.csrf}
                api={`/api/paths/${encodeURIComponent(id)}`}
                method="PATCH"
                back="/paths"
                nums={["version", "mtu"]}
                class="inline"
                label={`Change the MTU of the path from ${name(p, "entry")}`}
              >
                <input type="hidden" name="version" value={str(p, "version")} />
                <label>
                  MTU{" "}
                  <input
                    type="number"
                    name="mtu"
                    min="1280"
                    max="9000"
                    required
                    value={field(p, "mtu") != null ? str(p, "mtu") : "1340"}
                  />
                </label>{" "}
                <button type="submit">Change MTU</button>
              </ApiForm>
              <ApiForm
                csrf={ctx.csrf}
                api={`/api/paths/${encodeURIComponent(id)}`}
                method="DELETE"
                back="/paths"
                nums={["version"]}
                class="inline"
                label={`Remove the path from ${name(p, "entry")} to ${name(p, "exit")}`}
              >
                <input type="hidden" name="version" value={str(p, "version")} />
                <button type="submit" class="danger">
                  Remove path {name(p, "entry")} → {name(p, "exit")}
                </button>{" "}
                <span class="muted">Its devices leave at {name(p, "entry")} again.</span>
              </ApiForm>
            </div>
          );
        })}
        <AutoTable caption={`${rows.length} path(s)`} rows={rows} empty="No cascades defined." />
        <h2>Create a path</h2>
        {nodes.length < 2
          ? <p class="muted">A path needs two nodes; onboard another one first.</p>
          : (
            <ApiForm
              csrf={ctx.csrf}
              api="/api/paths"
              back="/paths"
              nums={["mtu"]}
              class="card"
              label="Create a path"
            >
              <label>
                Entry node{" "}
                <select name="entry_node_id" required>
                  <NodeOptions nodes={nodes} />
                </select>
              </label>
              <label>
                Exit node{" "}
                <select name="exit_node_id" required>
                  <NodeOptions nodes={nodes} />
                </select>
              </label>
              <label>
                MTU (empty: 1340) <input type="number" name="mtu" min="1280" max="9000" />
              </label>
              <button type="submit">Create path</button>
            </ApiForm>
          )}
      </section>
    ),
  };
}
