/** @jsxImportSource preact */
/**
 * Creates something whose secret is shown exactly once: an enrolment
 * ticket (deep link + QR) or an API token. The answer stays in this
 * island's memory only; reloading the page does not show it again.
 * Without JavaScript the form posts through /_form and the result page
 * shows the same once.
 */
import { useState } from "preact/hooks";
import { apiCall, errorText, refreshPage } from "./client.ts";
import { CopyButton } from "./copy_button.tsx";
import { ticketView, tokenSecret } from "../lib/created.ts";

export interface FieldSpec {
  name: string;
  label: string;
  type: "text" | "number" | "select" | "checkbox";
  options?: [string, string][];
  required?: boolean;
  value?: string;
}

export interface OneTimeCreateProps {
  kind: "ticket" | "token";
  api: string;
  back: string;
  csrf: string;
  submit: string;
  fields: FieldSpec[];
}

export function OneTimeCreate(props: OneTimeCreateProps) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [result, setResult] = useState<unknown>(null);

  const onSubmit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const body: Record<string, unknown> = {};
    for (const f of props.fields) {
      const v = String(form.get(f.name) ?? "");
      if (f.type === "checkbox") {
        body[f.name] = v === "true";
        continue;
      }
      if (v === "") continue;
      body[f.name] = f.type === "number" ? Number(v) : v;
    }
    setBusy(true);
    setError("");
    try {
      const r = await apiCall("POST", props.api, body);
      if (!r.ok) setError(errorText(r.body, r.status));
      else {
        setResult(r.body);
        refreshPage();
      }
    } catch (err) {
      setError(`Could not reach the controller: ${err}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div>
      <form method="post" action="/_form" onSubmit={onSubmit} aria-label={props.submit}>
        <input type="hidden" name="_csrf" value={props.csrf} />
        <input type="hidden" name="_api" value={props.api} />
        <input type="hidden" name="_method" value="POST" />
        <input type="hidden" name="_back" value={props.back} />
        <input type="hidden" name="_show" value={props.kind} />
        <input
          type="hidden"
          name="_num"
          value={props.fields.filter((f) => f.type === "number").map((f) => f.name).join(",")}
        />
        <input
          type="hidden"
          name="_bool"
          value={props.fields.filter((f) => f.type === "checkbox").map((f) => f.name).join(",")}
        />
        {props.fields.map((f) => (
          <label key={f.name}>
            {f.label} {f.type === "select"
              ? (
                <select name={f.name} required={f.required}>
                  {(f.options ?? []).map(([v, l]) => <option key={v} value={v}>{l}</option>)}
                </select>
              )
              : f.type === "checkbox"
              ? <input type="checkbox" name={f.name} value="true" />
              : (
                <input
                  type={f.type}
                  name={f.name}
                  required={f.required}
                  value={f.value}
                />
              )}
          </label>
        ))}
        <button type="submit" disabled={busy}>{props.submit}</button>
      </form>
      {error && <div class="notice error" role="alert">{error}</div>}
      {result !== null && <CreatedView kind={props.kind} body={result} />}
    </div>
  );
}

/** The one showing of a created ticket or token (also used by the no-JS result page). */
export function CreatedView({ kind, body }: { kind: "ticket" | "token"; body: unknown }) {
  if (kind === "ticket") {
    const t = ticketView(body);
    return (
      <div class="card" data-created="ticket">
        <h2>Enrolment ticket {t.id}</h2>
        <p>Scan the QR code with the PharosVPN app, or send the link. It works once.</p>
        {t.id && (
          <img
            class="qr"
            src={`/api/tickets/${encodeURIComponent(t.id)}/qr.svg`}
            alt="QR code of the enrolment link"
            width={288}
            height={288}
          />
        )}
        <p>
          <label>
            Enrolment link
            <input type="text" readOnly value={t.link} size={60} data-deeplink />
          </label>
        </p>
        <CopyButton text={t.link} label="Copy link" />
      </div>
    );
  }
  const secret = tokenSecret(body);
  return (
    <div class="card" data-created="token">
      <h2>New API token</h2>
      <p>
        <b>Copy it now: it is shown this once.</b> The controller keeps only its hash.
      </p>
      <p class="secret" data-secret>{secret}</p>
      <CopyButton text={secret} label="Copy token" />
    </div>
  );
}
