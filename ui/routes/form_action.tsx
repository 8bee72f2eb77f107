/** @jsxImportSource preact */
/**
 * POST /_form: how forms work without JavaScript. The form names the API
 * route (`_api`, only /api/… paths), the method, where to return
 * (`_back`, only same-site paths) and which fields are booleans or
 * numbers; the other fields go to the API as JSON with the form's CSRF
 * token. A stale version (409) shows the current values and a button to
 * re-apply the change on top of them.
 */
import { apiError } from "../lib/api.ts";
import { safeApiPath, safeBack } from "../lib/security.ts";
import { num, str } from "../lib/fields.ts";
import { Notice } from "../components/bits.tsx";
import { ValueList } from "../components/value_list.tsx";
import { CreatedView } from "../islands/one_time_create.tsx";
import { type Page, redirect } from "./context.ts";
import type { PostContext } from "./post.ts";

const METHODS = new Set(["POST", "PATCH", "PUT", "DELETE"]);

export async function formAction({ api, form }: PostContext): Promise<Page | Response> {
  const path = safeApiPath(form._api);
  const method = (form._method ?? "POST").toUpperCase();
  const back = safeBack(form._back);
  if (!path || !METHODS.has(method)) {
    return {
      title: "Bad form",
      status: 400,
      body: <Notice kind="error">This form names no admin API route.</Notice>,
    };
  }
  const body = formBody(form);
  // A DELETE carries a body only when the form has fields (a path's version).
  const sent = method === "DELETE" && Object.keys(body).length === 0 ? undefined : body;
  const r = await api.call(method, path, sent, form._csrf);
  if (r.status === 401) return redirect(`/login?next=${encodeURIComponent(back)}`);
  if (r.status === 409) return conflictPage(form, r.body, back);
  if (!r.ok) {
    return {
      title: "Not done",
      status: r.status,
      body: (
        <section>
          <h1>Not done</h1>
          <Notice kind="error">{apiError(r.body)?.message ?? `HTTP ${r.status}`}</Notice>
          <p>
            <a href={back}>Back</a>
          </p>
        </section>
      ),
    };
  }
  const opId = str(r.body, "operationId");
  if (opId) return redirect(`/operations/${encodeURIComponent(opId)}`);
  const show = form._show;
  if (show === "ticket" || show === "token") {
    return {
      title: show === "ticket" ? "Enrolment ticket" : "New API token",
      body: (
        <section>
          <CreatedView kind={show} body={r.body} />
          <p>
            <a href={back}>Back</a>
          </p>
        </section>
      ),
    };
  }
  if (show) {
    return {
      title: "Done",
      body: (
        <section>
          <h1>Done</h1>
          <ValueList value={r.body} />
          <p>
            <a href={back}>Back</a>
          </p>
        </section>
      ),
    };
  }
  return redirect(back);
}

/** The fields of a form as the API's JSON body. */
export function formBody(form: Record<string, string>): Record<string, unknown> {
  const bools = new Set((form._bool ?? "").split(",").filter(Boolean));
  const nums = new Set((form._num ?? "").split(",").filter(Boolean));
  const body: Record<string, unknown> = {};
  for (const b of bools) body[b] = false;
  for (const [k, v] of Object.entries(form)) {
    if (k.startsWith("_")) continue;
    if (bools.has(k)) body[k] = v === "true" || v === "on";
    else if (nums.has(k)) {
      if (v !== "") body[k] = Number(v);
    } else body[k] = v;
  }
  return body;
}

function conflictPage(form: Record<string, string>, body: unknown, back: string): Page {
  const current = (body as { current?: unknown })?.current;
  const version = num(current, "version");
  const bools = new Set((form._bool ?? "").split(",").filter(Boolean));
  return {
    title: "Changed meanwhile",
    status: 409,
    body: (
      <section>
        <h1>Someone changed this meanwhile</h1>
        <Notice kind="error">
          {apiError(body)?.message ?? "stale version"}: your change was not applied.
        </Notice>
        <h2>Current values{version !== null ? ` (version ${version})` : ""}</h2>
        <ValueList value={current} />
        <form method="post" action="/_form">
          {Object.entries(form).map(([k, v]) => {
            if (k === "version" && version !== null) return null;
            if (bools.has(k)) return null;
            return <input key={k} type="hidden" name={k} value={v} />;
          })}
          {[...bools].filter((b) => form[b] === "true" || form[b] === "on").map((b) => (
            <input key={b} type="hidden" name={b} value="true" />
          ))}
          {version !== null && <input type="hidden" name="version" value={String(version)} />}
          <button type="submit">Re-apply my change</button>{" "}
          <a href={back}>Keep the current values</a>
        </form>
      </section>
    ),
  };
}
