/** @jsxImportSource preact */
/**
 * A table for list answers whose columns follow the objects' own fields
 * (first row's keys, in order), for lists this dashboard shows as they
 * come. State-like fields become badges, timestamps are formatted, and
 * secret-looking fields are never shown.
 */
import type { ComponentChildren } from "preact";
import type { Obj } from "../lib/fields.ts";
import { when } from "../lib/fields.ts";
import { Badge, type Column, Table } from "./bits.tsx";
import { SECRET_FIELD } from "./value_list.tsx";

const STATE_FIELD = /^(status|state|severity|health)$/;

function cell(key: string, v: unknown): ComponentChildren {
  if (v === null || v === undefined || v === "") return "—";
  if (STATE_FIELD.test(key) && typeof v === "string") return <Badge state={v} />;
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v)) return when(v);
  if (typeof v === "object") return <code>{JSON.stringify(v)}</code>;
  return String(v);
}

export function AutoTable(
  { caption, rows, omit = [], extra = [], empty }: {
    caption: string;
    rows: Obj[];
    omit?: string[];
    extra?: Column<Obj>[];
    empty?: string;
  },
) {
  const keys = rows.length
    ? Object.keys(rows[0]).filter((k) => !SECRET_FIELD.test(k) && !omit.includes(k))
    : [];
  const columns: Column<Obj>[] = keys.map((k) => ({
    label: k.replace(/_/g, " "),
    cell: (r: Obj) => cell(k, r[k]),
  }));
  return <Table caption={caption} rows={rows} columns={[...columns, ...extra]} empty={empty} />;
}
