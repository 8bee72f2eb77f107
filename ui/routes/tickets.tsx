/** @jsxImportSource preact */
/**
 * Enrolment tickets: the list, and a form that creates one and shows its
 * deep link and QR code once, with a copy button.
 */
import type { PageContext } from "./context.ts";
import { loadList } from "../lib/load.ts";
import { str } from "../lib/fields.ts";
import { AutoTable } from "../components/auto_table.tsx";
import { Island } from "../components/island.tsx";

export default async function tickets(ctx: PageContext) {
  const [rows, users] = await Promise.all([
    loadList(ctx.api, "/api/tickets"),
    loadList(ctx.api, "/api/users"),
  ]);
  const email = new Map(users.map((u) => [str(u, "id"), str(u, "email")]));
  return {
    title: "Tickets",
    body: (
      <section>
        <h1>Enrolment tickets</h1>
        <div class="card">
          <h2>New ticket</h2>
          <Island
            name="OneTimeCreate"
            id="ticket-create"
            props={{
              kind: "ticket",
              api: "/api/tickets",
              back: "/tickets",
              csrf: ctx.csrf,
              submit: "Create ticket",
              fields: [
                {
                  name: "email",
                  label: "For user",
                  type: "select",
                  required: true,
                  options: users.map((u) => [str(u, "email"), str(u, "email")]),
                },
                {
                  name: "ttl_minutes",
                  label: "Valid for (minutes, empty: the default)",
                  type: "number",
                },
                {
                  name: "unbound",
                  label:
                    "For the original app (unbound: weaker, whoever sees the link in transit can claim it)",
                  type: "checkbox",
                },
              ],
            }}
          />
        </div>
        <AutoTable
          caption={`${rows.length} ticket(s)`}
          rows={rows}
          omit={["user_id", "updated_at", "version"]}
          extra={[{ label: "user", cell: (r) => email.get(str(r, "userId")) ?? str(r, "userId") }]}
        />
      </section>
    ),
  };
}
