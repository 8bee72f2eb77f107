/** @jsxImportSource preact */
/** Small server-rendered pieces: state badges, key/value lists, tables, notices. */
import type { ComponentChildren, VNode } from "preact";
import { tone } from "../lib/fields.ts";

/** A state word with colour, symbol and text (colour is never the only signal). */
export function Badge({ state }: { state: string }) {
  const t = tone(state || "unknown");
  return <span class={`badge ${t.cls}`} data-icon={t.icon}>{state || "unknown"}</span>;
}

export function KV({ rows }: { rows: [string, ComponentChildren][] }) {
  return (
    <dl class="kv">
      {rows.map(([k, v]) => [<dt key={`t${k}`}>{k}</dt>, <dd key={`d${k}`}>{v}</dd>])}
    </dl>
  );
}

export interface Column<T> {
  label: string;
  cell: (row: T) => ComponentChildren;
}

export function Table<T>(
  { caption, columns, rows, empty }: {
    caption: string;
    columns: Column<T>[];
    rows: T[];
    empty?: string;
  },
): VNode {
  return (
    <div class="table-wrap">
      <table>
        <caption class="muted">{caption}</caption>
        <thead>
          <tr>{columns.map((c) => <th scope="col" key={c.label}>{c.label}</th>)}</tr>
        </thead>
        <tbody>
          {rows.length === 0
            ? (
              <tr>
                <td colSpan={columns.length} class="muted">{empty ?? "Nothing yet."}</td>
              </tr>
            )
            : rows.map((r, i) => (
              <tr key={i}>{columns.map((c) => <td key={c.label}>{c.cell(r)}</td>)}</tr>
            ))}
        </tbody>
      </table>
    </div>
  );
}

export function Notice(
  { kind, children }: { kind?: "error" | "ok"; children: ComponentChildren },
) {
  return (
    <div class={`notice ${kind ?? ""}`} role={kind === "error" ? "alert" : "status"}>
      {children}
    </div>
  );
}
