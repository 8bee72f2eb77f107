/**
 * The dashboard's only way to the data: the admin API's fetch handler,
 * called in-process with the browser's own headers (cookies, Origin), so
 * every page sees exactly what that admin may see and no page reads the
 * database. Set-Cookie headers the API sends back (login, CSRF cookie)
 * are collected and passed on to the browser.
 */
import { PharosError } from "../../core/errors.ts";

/**
 * The API's fetch handler. `info` is what the listener knows of the
 * connection (peer address, TLS): passed through unchanged so sign-in
 * throttling and cookie security see the browser's own connection.
 */
// deno-lint-ignore no-explicit-any
export type ApiHandler = (req: Request, info?: any) => Promise<Response>;

export interface ApiResult<T = unknown> {
  status: number;
  ok: boolean;
  body: T;
}

/** An API answer the page cannot use (not a 2xx, 401 or 409 the page handles itself). */
export class ApiError extends PharosError {
  constructor(readonly status: number, readonly body: unknown) {
    super(errorCode(body, status), errorMessage(body, status));
  }
}

/** Thrown when the API says the browser has no session: the page redirects to /login. */
export class NotLoggedIn extends PharosError {
  constructor() {
    super("ui-not-logged-in", "sign in first");
  }
}

/** Headers of the browser request that must not reach the API as they are. */
const DROPPED = ["content-type", "content-length", "accept", "accept-encoding", "connection"];

export class ApiClient {
  /** Set-Cookie values the API sent during this page request. */
  readonly setCookies: string[] = [];
  readonly #headers: Headers;

  constructor(
    private readonly api: ApiHandler,
    private readonly origin: Request,
    private readonly info?: unknown,
  ) {
    this.#headers = new Headers(origin.headers);
    for (const h of DROPPED) this.#headers.delete(h);
    this.#headers.set("accept", "application/json");
  }

  /** Calls the API; never throws for an HTTP status. */
  async call<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    csrf?: string,
  ): Promise<ApiResult<T>> {
    const headers = new Headers(this.#headers);
    // A cookie the API just set (login) counts for the calls that follow.
    for (const c of this.setCookies) addCookie(headers, c);
    if (csrf) headers.set("x-csrf-token", csrf);
    let payload: string | undefined;
    if (body !== undefined) {
      headers.set("content-type", "application/json");
      payload = JSON.stringify(body);
    }
    const res = await this.api(
      new Request(new URL(path, this.origin.url), { method, headers, body: payload }),
      this.info,
    );
    this.setCookies.push(...res.headers.getSetCookie());
    const text = await res.text();
    let parsed: unknown = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    return { status: res.status, ok: res.ok, body: parsed as T };
  }

  /** GET that must succeed: 401 becomes NotLoggedIn, any other failure ApiError. */
  async get<T = unknown>(path: string): Promise<T> {
    const r = await this.call<T>("GET", path);
    if (r.status === 401) throw new NotLoggedIn();
    if (!r.ok) throw new ApiError(r.status, r.body);
    return r.body;
  }
}

function addCookie(headers: Headers, setCookie: string): void {
  const pair = setCookie.split(";")[0];
  const name = pair.split("=")[0];
  const kept = (headers.get("cookie") ?? "").split(/;\s*/).filter((c) =>
    c && c.split("=")[0] !== name
  );
  kept.push(pair);
  headers.set("cookie", kept.join("; "));
}

/** The API's error envelope: {error: {code, message, field?}} (or a plain string). */
export interface ApiErrorBody {
  code: string;
  message: string;
  field?: string;
}

export function apiError(body: unknown): ApiErrorBody | null {
  if (!body || typeof body !== "object") return null;
  const e = (body as { error?: unknown }).error;
  if (typeof e === "string") return { code: e, message: e };
  if (e && typeof e === "object") {
    const o = e as Record<string, unknown>;
    return {
      code: String(o.code ?? "error"),
      message: String(o.message ?? o.code ?? "error"),
      field: typeof o.field === "string" ? o.field : undefined,
    };
  }
  return null;
}

function errorCode(body: unknown, status: number): string {
  return apiError(body)?.code ?? `api-${status}`;
}

function errorMessage(body: unknown, status: number): string {
  return apiError(body)?.message ?? `the API answered ${status}`;
}
