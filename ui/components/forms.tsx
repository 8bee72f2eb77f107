/** @jsxImportSource preact */
/**
 * Forms that work without JavaScript: they post to the dashboard's
 * /_form endpoint, which forwards the fields as JSON to the named admin
 * API route with the form's CSRF token (see ui/lib/form_action.ts).
 */
import type { ComponentChildren } from "preact";

export function CsrfField({ token }: { token: string }) {
  return <input type="hidden" name="_csrf" value={token} />;
}

export interface ApiFormProps {
  csrf: string;
  /** API route the fields go to, e.g. /api/devices/ID/revoke. */
  api: string;
  method?: "POST" | "PATCH" | "DELETE";
  /** Page to return to afterwards. */
  back: string;
  /** Fields sent as booleans (checkboxes) and as numbers. */
  bools?: string[];
  nums?: string[];
  /** Show the API's answer on a result page (one-time secrets) instead of redirecting. */
  show?: boolean;
  class?: string;
  label?: string;
  children: ComponentChildren;
}

export function ApiForm(p: ApiFormProps) {
  return (
    <form method="post" action="/_form" class={p.class} aria-label={p.label}>
      <CsrfField token={p.csrf} />
      <input type="hidden" name="_api" value={p.api} />
      <input type="hidden" name="_method" value={p.method ?? "POST"} />
      <input type="hidden" name="_back" value={p.back} />
      {p.bools && <input type="hidden" name="_bool" value={p.bools.join(",")} />}
      {p.nums && <input type="hidden" name="_num" value={p.nums.join(",")} />}
      {p.show && <input type="hidden" name="_show" value="1" />}
      {p.children}
    </form>
  );
}
