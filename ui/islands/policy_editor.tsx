/** @jsxImportSource preact */
/**
 * A node's three network-policy toggles with the read-only rule preview.
 * Toggling asks the API for the preview of the draft; "Apply" sends the
 * draft with the version this page loaded. If another admin changed the
 * policy meanwhile the API answers 409 with the current policy: the
 * island shows it next to the draft and offers to re-apply the draft on
 * top of it, or to take the current one. Without JavaScript the same
 * form posts through /_form.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { ruleText } from "../lib/rules.ts";
import { apiCall, errorText, refreshPage } from "./client.ts";

export interface Policy {
  forwarding: boolean;
  masquerade: boolean;
  isolation: boolean;
}

export interface PolicyEditorProps extends Policy {
  nodeId: string;
  version: number;
  preview: string;
  csrf: string;
}

type Conflict = Policy & { version: number };

function normalise(p: Policy): Policy {
  // Masquerade and isolation require forwarding (DESIGN.md §5).
  return p.forwarding ? p : { forwarding: false, masquerade: false, isolation: false };
}

function describe(p: Policy): string {
  const on = (b: boolean) => (b ? "on" : "off");
  return `forwarding ${on(p.forwarding)}, masquerade ${on(p.masquerade)}, isolation ${
    on(p.isolation)
  }`;
}

function policyOf(o: unknown): Conflict | null {
  if (!o || typeof o !== "object") return null;
  const r = o as Record<string, unknown>;
  const src = (r.policy && typeof r.policy === "object" ? r.policy : r) as Record<string, unknown>;
  if (typeof src.forwarding !== "boolean") return null;
  return {
    forwarding: src.forwarding === true,
    masquerade: src.masquerade === true,
    isolation: src.isolation === true,
    version: Number(r.version ?? src.version ?? 0),
  };
}

export function PolicyEditor(props: PolicyEditorProps) {
  const [draft, setDraft] = useState<Policy>(props);
  const [version, setVersion] = useState(props.version);
  const [preview, setPreview] = useState(props.preview);
  const [dirty, setDirty] = useState(false);
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<{ kind: "ok" | "error"; text: string } | null>(null);
  const [conflict, setConflict] = useState<Conflict | null>(null);
  const previewSeq = useRef(0);

  // New server props (live feed) replace the form unless the admin is editing it.
  useEffect(() => {
    if (dirty || conflict) {
      if (props.version !== version) {
        setMessage({
          kind: "error",
          text: `Changed elsewhere meanwhile (now version ${props.version}): applying will ` +
            "show both so you can choose.",
        });
      }
      return;
    }
    setDraft({
      forwarding: props.forwarding,
      masquerade: props.masquerade,
      isolation: props.isolation,
    });
    setVersion(props.version);
    setPreview(props.preview);
  }, [props.forwarding, props.masquerade, props.isolation, props.version, props.preview]);

  const loadPreview = async (p: Policy) => {
    const seq = ++previewSeq.current;
    const q = new URLSearchParams({
      forwarding: String(p.forwarding),
      masquerade: String(p.masquerade),
      isolation: String(p.isolation),
    });
    const r = await apiCall("GET", `/api/nodes/${props.nodeId}/policy/preview?${q}`);
    if (seq !== previewSeq.current) return;
    if (r.ok) setPreview(ruleText(r.body));
    else setMessage({ kind: "error", text: errorText(r.body, r.status) });
  };

  const toggle = (key: keyof Policy) => (e: Event) => {
    const next = normalise({ ...draft, [key]: (e.currentTarget as HTMLInputElement).checked });
    setDraft(next);
    setDirty(true);
    setMessage(null);
    void loadPreview(next);
  };

  const apply = async (p: Policy, v: number) => {
    setBusy(true);
    setMessage(null);
    try {
      const r = await apiCall("PATCH", `/api/nodes/${props.nodeId}/policy`, { ...p, version: v });
      if (r.status === 409) {
        const current = policyOf((r.body as { current?: unknown })?.current);
        setConflict(current);
        setMessage({
          kind: "error",
          text: "Another admin changed this policy after you loaded the page.",
        });
        return;
      }
      if (!r.ok) {
        setMessage({ kind: "error", text: errorText(r.body, r.status) });
        return;
      }
      const node = (r.body as { node?: unknown })?.node ?? r.body;
      const saved = policyOf(node);
      if (saved) {
        setDraft(saved);
        setVersion(saved.version);
      }
      const rp = (r.body as Record<string, unknown>)?.rule_preview;
      if (rp !== undefined) setPreview(ruleText(rp));
      setDirty(false);
      setConflict(null);
      setMessage({ kind: "ok", text: `Policy applied (version ${saved?.version ?? v + 1}).` });
      refreshPage();
    } catch (e) {
      setMessage({ kind: "error", text: `Could not reach the controller: ${e}` });
    } finally {
      setBusy(false);
    }
  };

  const onSubmit = (e: Event) => {
    e.preventDefault();
    void apply(draft, version);
  };

  const takeCurrent = () => {
    if (!conflict) return;
    const { version: v, ...p } = conflict;
    setDraft(p);
    setVersion(v);
    setDirty(false);
    setConflict(null);
    setMessage(null);
    void loadPreview(p);
  };

  const box = (key: keyof Policy, label: string, hint: string, needsFwd: boolean) => (
    <label class="check">
      <input
        type="checkbox"
        name={key}
        value="true"
        checked={draft[key]}
        disabled={busy || (needsFwd && !draft.forwarding)}
        onChange={toggle(key)}
        aria-describedby={`hint-${key}`}
      />
      <span>
        {label} <span id={`hint-${key}`} class="muted">— {hint}</span>
      </span>
    </label>
  );

  return (
    <form method="post" action="/_form" onSubmit={onSubmit} aria-label="Network policy">
      <input type="hidden" name="_csrf" value={props.csrf} />
      <input type="hidden" name="_api" value={`/api/nodes/${props.nodeId}/policy`} />
      <input type="hidden" name="_method" value="PATCH" />
      <input type="hidden" name="_back" value={`/nodes/${props.nodeId}`} />
      <input type="hidden" name="_bool" value="forwarding,masquerade,isolation" />
      <input type="hidden" name="_num" value="version" />
      <input type="hidden" name="version" value={String(version)} />
      <fieldset>
        <legend>Network policy (version {version})</legend>
        {box("forwarding", "Forwarding", "route client traffic through this node", false)}
        {box("masquerade", "Masquerade", "NAT client traffic on the egress interface", true)}
        {box("isolation", "Client isolation", "clients cannot reach each other", true)}
      </fieldset>
      {message && (
        <div class={`notice ${message.kind}`} role={message.kind === "error" ? "alert" : "status"}>
          {message.text}
        </div>
      )}
      {conflict && (
        <div class="notice error" data-conflict>
          <p>
            Current policy (version {conflict.version}): <b>{describe(conflict)}</b>
          </p>
          <p>
            Your change: <b>{describe(draft)}</b>
          </p>
          <button type="button" disabled={busy} onClick={() => apply(draft, conflict.version)}>
            Re-apply my change
          </button>{" "}
          <button type="button" class="secondary" disabled={busy} onClick={takeCurrent}>
            Keep the current policy
          </button>
        </div>
      )}
      <p>
        <button type="submit" disabled={busy}>Apply policy</button>{" "}
        {dirty && <span class="muted">Not applied yet.</span>}
      </p>
      <h3>Rule preview (read-only)</h3>
      <pre aria-label="Rule preview" data-preview>{preview || "(no rules: forwarding is off)"}</pre>
    </form>
  );
}
