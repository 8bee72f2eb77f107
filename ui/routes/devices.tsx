/** @jsxImportSource preact */
/** Devices with a revoke button each (a plain form: works without JavaScript). */
import type { PageContext } from "./context.ts";
import { loadList } from "../lib/load.ts";
import { field, str, when } from "../lib/fields.ts";
import { Badge, Table } from "../components/bits.tsx";
import { ApiForm } from "../components/forms.tsx";

export default async function devices(ctx: PageContext) {
  const [rows, users] = await Promise.all([
    loadList(ctx.api, "/api/devices"),
    loadList(ctx.api, "/api/users"),
  ]);
  const email = new Map(users.map((u) => [str(u, "id"), str(u, "email")]));
  return {
    title: "Devices",
    body: (
      <section>
        <h1>Devices</h1>
        <p class="muted">Revoking a device removes it from every node and ends its sessions.</p>
        <Table
          caption={`${rows.length} device(s)`}
          rows={rows}
          columns={[
            { label: "Device", cell: (d) => <code>{str(d, "id")}</code> },
            { label: "User", cell: (d) => email.get(str(d, "userId")) ?? str(d, "userId", "—") },
            { label: "State", cell: (d) => <Badge state={str(d, "status")} /> },
            {
              label: "Fingerprint",
              cell: (d) => (
                <code title={str(d, "fingerprint")}>{str(d, "fingerprint").slice(0, 23)}…</code>
              ),
            },
            { label: "Certificate until", cell: (d) => when(field(d, "notAfter")) },
            {
              label: "Action",
              cell: (d) =>
                str(d, "status") === "revoked" ? <span class="muted">—</span> : (
                  <ApiForm
                    csrf={ctx.csrf}
                    api={`/api/devices/${encodeURIComponent(str(d, "id"))}/revoke`}
                    back="/devices"
                    class="inline"
                    label={`Revoke device ${str(d, "id")}`}
                  >
                    <button
                      type="submit"
                      class="danger"
                      aria-label={`Revoke device ${str(d, "id")}`}
                    >
                      Revoke
                    </button>
                  </ApiForm>
                ),
            },
          ]}
        />
      </section>
    ),
  };
}
