/** @jsxImportSource preact */
/**
 * Two-factor sign-in for the signed-in admin: start enrolment (QR code,
 * otpauth link and recovery codes, shown this once), then confirm with a
 * first code from the app. Needs JavaScript; the status shows without.
 */
import { useEffect, useState } from "preact/hooks";
import { apiCall, errorText } from "./client.ts";

export interface TotpSetupProps {
  enabled: boolean;
  recoveryLeft: number;
}

interface Enrolment {
  otpauth_uri: string;
  qr_svg: string;
  recovery_codes: string[];
}

export function TotpSetup(props: TotpSetupProps) {
  const [ready, setReady] = useState(false);
  const [enabled, setEnabled] = useState(props.enabled);
  const [enrolment, setEnrolment] = useState<Enrolment | null>(null);
  const [code, setCode] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  useEffect(() => setReady(true), []);
  useEffect(() => setEnabled(props.enabled), [props.enabled]);

  const start = async () => {
    setBusy(true);
    setError("");
    const r = await apiCall<Enrolment>("POST", "/api/auth/totp/enroll", {});
    setBusy(false);
    if (r.ok) setEnrolment(r.body);
    else setError(errorText(r.body, r.status));
  };

  const confirm = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    const r = await apiCall("POST", "/api/auth/totp/confirm", { code: code.trim() });
    setBusy(false);
    if (r.ok) {
      setEnabled(true);
      setEnrolment(null);
    } else setError(errorText(r.body, r.status));
  };

  if (enabled) {
    return (
      <p role="status" data-totp="on">
        <span class="badge s-ok" data-icon="✓">on</span>{" "}
        Two-factor sign-in is on ({props.recoveryLeft} recovery codes left).
      </p>
    );
  }
  return (
    <div>
      <p data-totp="off">
        <span class="badge s-warn" data-icon="!">off</span> Sign-in asks for the password only.
      </p>
      {!enrolment && (
        <button type="button" disabled={!ready || busy} onClick={start}>
          Set up two-factor sign-in
        </button>
      )}
      {enrolment && (
        <form onSubmit={confirm} aria-label="Confirm two-factor sign-in">
          <p>Scan this with an authenticator app, or open the link on the phone that has one.</p>
          <div class="totp-qr" dangerouslySetInnerHTML={{ __html: enrolment.qr_svg }} />
          <p>
            <label>
              Link{" "}
              <input type="text" readOnly value={enrolment.otpauth_uri} size={50} data-otpauth />
            </label>
          </p>
          <p>
            <b>Recovery codes (shown once; each signs in once):</b>
          </p>
          <ul class="codes" data-recovery>
            {enrolment.recovery_codes.map((c) => (
              <li key={c}>
                <code>{c}</code>
              </li>
            ))}
          </ul>
          <label>
            First code from the app{" "}
            <input
              type="text"
              inputMode="numeric"
              autocomplete="one-time-code"
              value={code}
              onInput={(e) => setCode((e.currentTarget as HTMLInputElement).value)}
              required
            />
          </label>
          <button type="submit" disabled={busy}>Turn on</button>
        </form>
      )}
      {error && <div class="notice error" role="alert">{error}</div>}
    </div>
  );
}
