/** @jsxImportSource preact */
/** API tokens: list (never the secret), create (secret shown once), revoke. */
import type { PageContext } from "./context.ts";
import { loadList } from "../lib/load.ts";
import { str } from "../lib/fields.ts";
import { AutoTable } from "../components/auto_table.tsx";
import { Island } from "../components/island.tsx";
import { ApiForm } from "../components/forms.tsx";

export default async function tokens(ctx: PageContext) {
  const rows = await loadList(ctx.api, "/api/tokens");
  return {
    title: "API tokens",
    body: (
      <section>
        <h1>API tokens</h1>
        <div class="card">
          <h2>New token</h2>
          <Island
            name="OneTimeCreate"
            id="token-create"
            props={{
              kind: "token",
              api: "/api/tokens",
              back: "/tokens",
              csrf: ctx.csrf,
              submit: "Create token",
              fields: [
                { name: "name", label: "Name", type: "text", required: true },
                {
                  name: "scope",
                  label: "Scope",
                  type: "select",
                  options: [
                    ["readonly", "readonly — read everything"],
                    ["monitor", "monitor — metrics and events"],
                    ["admin", "admin — everything"],
                  ],
                },
              ],
            }}
          />
        </div>
        <AutoTable
          caption={`${rows.length} token(s)`}
          rows={rows}
          omit={["updated_at", "version"]}
          extra={[{
            label: "Action",
            cell: (t) =>
              str(t, "revokedAt") ? <span class="muted">revoked</span> : (
                <ApiForm
                  csrf={ctx.csrf}
                  api={`/api/tokens/${encodeURIComponent(str(t, "id"))}`}
                  method="DELETE"
                  back="/tokens"
                  class="inline"
                  label={`Revoke token ${str(t, "name")}`}
                >
                  <button type="submit" class="danger">Revoke</button>
                </ApiForm>
              ),
          }]}
        />
      </section>
    ),
  };
}
