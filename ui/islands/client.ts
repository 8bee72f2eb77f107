/**
 * What islands share in the browser: the CSRF token from the page's
 * <meta>, JSON calls to the admin API with it, and a way to ask the page
 * to refresh itself after a change this tab made.
 */
export interface CallResult<T = unknown> {
  status: number;
  ok: boolean;
  body: T;
}

export function csrfToken(): string {
  if (typeof document === "undefined") return "";
  return document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')?.content ?? "";
}

/** Calls the admin API from the browser (same origin, session cookie, CSRF header on writes). */
export async function apiCall<T = unknown>(
  method: string,
  path: string,
  body?: unknown,
): Promise<CallResult<T>> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (method !== "GET") headers["x-csrf-token"] = csrfToken();
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: res.status, ok: res.ok, body: parsed as T };
}

/** The message of an API error body, for showing to the admin. */
export function errorText(body: unknown, status: number): string {
  const e = body && typeof body === "object" ? (body as { error?: unknown }).error : undefined;
  if (e && typeof e === "object") {
    const o = e as { message?: string; field?: string };
    return o.field ? `${o.message} (field ${o.field})` : String(o.message);
  }
  if (typeof e === "string") return e;
  return `request failed (HTTP ${status})`;
}

/** Asks the page to re-render its content now (the live feed also will, shortly). */
export function refreshPage(): void {
  if (typeof document !== "undefined") globalThis.dispatchEvent(new Event("pharos:refresh"));
}
