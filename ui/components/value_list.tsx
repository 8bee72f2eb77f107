/** @jsxImportSource preact */
/**
 * Any API object as a definition list, for answers without a page of
 * their own. Fields that name secrets are never shown.
 */
import { when } from "../lib/fields.ts";

export const SECRET_FIELD = /secret|password|hash|private|psk|pem|totp|cookie|csrf|seal/i;

function show(v: unknown): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v)) return when(v);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export function ValueList({ value }: { value: unknown }) {
  if (!value || typeof value !== "object") return <p>{show(value)}</p>;
  const rows = Object.entries(value as Record<string, unknown>).filter(([k]) =>
    !SECRET_FIELD.test(k)
  );
  return (
    <dl class="kv">
      {rows.map(([k, v]) => [<dt key={`t${k}`}>{k}</dt>, <dd key={`d${k}`}>{show(v)}</dd>])}
    </dl>
  );
}
