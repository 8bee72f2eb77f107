/** @jsxImportSource preact */
/** Settings: each one its own form carrying the version it was loaded at (409 if stale). */
import type { PageContext } from "./context.ts";
import { loadList } from "../lib/load.ts";
import { bool, field, num, str, when } from "../lib/fields.ts";
import { Island } from "../components/island.tsx";
import { ApiForm } from "../components/forms.tsx";
import { Table } from "../components/bits.tsx";

export default async function settings(ctx: PageContext) {
  const [rows, me] = await Promise.all([
    loadList(ctx.api, "/api/settings"),
    ctx.api.get("/api/auth/me"),
  ]);
  return {
    title: "Settings",
    body: (
      <section>
        <h1>Settings</h1>
        <div class="card">
          <h2>Your sign-in</h2>
          <Island
            name="TotpSetup"
            id="totp"
            props={{
              enabled: bool(me, "totpEnabled"),
              recoveryLeft: num(me, "recoveryCodesLeft") ?? 0,
            }}
          />
          <ApiForm
            csrf={ctx.csrf}
            api="/api/auth/logout-all"
            back="/login"
            label="Sign out everywhere"
          >
            <button type="submit" class="secondary">Sign out everywhere</button>{" "}
            <span class="muted">Ends every session of this admin, this one included.</span>
          </ApiForm>
        </div>
        <h2>Controller settings</h2>
        <Table
          caption={`${rows.length} setting(s)`}
          rows={rows}
          columns={[
            { label: "Setting", cell: (s) => <code>{str(s, "key")}</code> },
            {
              label: "Value",
              cell: (s) => {
                const v = field(s, "value");
                const key = str(s, "key");
                return (
                  <ApiForm
                    csrf={ctx.csrf}
                    api="/api/settings"
                    method="PATCH"
                    back="/settings"
                    class="inline"
                    label={`Setting ${key}`}
                    bools={typeof v === "boolean" ? ["value"] : undefined}
                    nums={typeof v === "number" ? ["value", "version"] : ["version"]}
                  >
                    <input type="hidden" name="key" value={key} />
                    <input type="hidden" name="version" value={str(s, "version")} />
                    {typeof v === "boolean"
                      ? (
                        <select name="value" aria-label={key}>
                          <option value="true" selected={v}>on</option>
                          <option value="false" selected={!v}>off</option>
                        </select>
                      )
                      : (
                        <input
                          type={typeof v === "number" ? "number" : "text"}
                          name="value"
                          value={String(v ?? "")}
                          aria-label={key}
                        />
                      )} <button type="submit" class="secondary">Save</button>
                  </ApiForm>
                );
              },
            },
            { label: "Version", cell: (s) => str(s, "version") },
            { label: "Changed", cell: (s) => when(field(s, "updatedAt")) },
          ]}
        />
      </section>
    ),
  };
}
