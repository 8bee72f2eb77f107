/** @jsxImportSource preact */
/**
 * One user's sealed profiles: revision per device (never their contents),
 * with "reseal" (an operation whose page shows the progress live).
 */
import type { PageContext } from "./context.ts";
import { list } from "../lib/fields.ts";
import { ApiForm } from "../components/forms.tsx";
import { AutoTable } from "../components/auto_table.tsx";

export default async function profile(ctx: PageContext) {
  const id = ctx.params.id;
  const [p, u] = await Promise.all([
    ctx.api.get(`/api/profiles/${encodeURIComponent(id)}`),
    ctx.api.call("GET", `/api/users/${encodeURIComponent(id)}`),
  ]);
  const who = u.ok ? String((u.body as { email?: string }).email ?? id) : id;
  const rows = list(p, "items");
  return {
    title: "Profile",
    body: (
      <section>
        <h1>Profiles of {who}</h1>
        <AutoTable
          caption={`${rows.length} device profile(s)`}
          rows={rows}
          empty="No device has a profile yet."
        />
        <ApiForm
          csrf={ctx.csrf}
          api="/api/profiles/reseal"
          back={`/profiles/${encodeURIComponent(id)}`}
          label="Reseal profiles"
        >
          <input type="hidden" name="user_id" value={id} />
          <p>
            <button type="submit">Reseal profiles</button>{" "}
            <span class="muted">
              Builds and seals every device profile again; each gets a new revision. The next page
              shows the progress live.
            </span>
          </p>
        </ApiForm>
      </section>
    ),
  };
}
