/** @jsxImportSource preact */
/** The hash-chained audit log, newest page last, with "verify chain". */
import type { PageContext } from "./context.ts";
import { list, num, str, when } from "../lib/fields.ts";
import { Table } from "../components/bits.tsx";
import { ApiForm } from "../components/forms.tsx";

const LIMIT = 100;

export default async function audit(ctx: PageContext) {
  const after = Math.max(0, Number(ctx.url.searchParams.get("after")) || 0);
  const body = await ctx.api.get(`/api/audit?limit=${LIMIT}${after ? `&after_seq=${after}` : ""}`);
  const rows = list(body);
  const next = num(body, "nextAfterSeq");
  return {
    title: "Audit log",
    body: (
      <section>
        <h1>Audit log</h1>
        <ApiForm csrf={ctx.csrf} api="/api/audit/verify" back="/audit" show label="Verify chain">
          <button type="submit">Verify chain</button>{" "}
          <span class="muted">Recomputes every entry's hash and checks the links.</span>
        </ApiForm>
        <Table
          caption={`Entries after #${after}`}
          rows={rows}
          columns={[
            { label: "#", cell: (e) => str(e, "seq") },
            { label: "Time", cell: (e) => when(e.time) },
            { label: "Actor", cell: (e) => str(e, "actor") },
            { label: "Action", cell: (e) => <code>{str(e, "action")}</code> },
            { label: "Target", cell: (e) => `${str(e, "targetType")} ${str(e, "targetId")}` },
            { label: "Hash", cell: (e) => <code>{str(e, "hash").slice(0, 12)}…</code> },
          ]}
        />
        <nav class="pager" aria-label="Audit pages">
          {after > 0 && <a href="/audit">First page</a>}
          {next !== null && rows.length === LIMIT && <a href={`/audit?after=${next}`}>Next page</a>}
        </nav>
      </section>
    ),
  };
}
