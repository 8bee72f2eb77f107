/**
 * Headers on every dashboard response. The CSP allows only this origin's
 * script, style, images and connections (the WebSocket feed included),
 * no inline script or style, no framing, no plugin; forms post only here.
 */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join("; ");

export function securityHeaders(headers: Headers): Headers {
  headers.set("content-security-policy", CSP);
  headers.set("x-frame-options", "DENY");
  headers.set("x-content-type-options", "nosniff");
  // "no-referrer" would make Chromium send `Origin: null` on form posts (refused as cross-site).
  headers.set("referrer-policy", "same-origin");
  headers.set("cross-origin-opener-policy", "same-origin");
  headers.set("permissions-policy", "camera=(), microphone=(), geolocation=()");
  return headers;
}

/** A same-site path to go back to; anything else (other origins, `//host`) becomes "/". */
export function safeBack(v: unknown): string {
  const s = typeof v === "string" ? v : "";
  return /^\/(?![/\\])[\x21-\x7e]*$/.test(s) ? s : "/";
}

/** An admin API path a dashboard form may post to. */
export function safeApiPath(v: unknown): string | null {
  const s = typeof v === "string" ? v : "";
  if (!/^\/api\/[A-Za-z0-9._~%\/-]{1,300}$/.test(s)) return null;
  if (s.split("/").some((seg) => seg === ".." || seg === ".")) return null;
  return s;
}
