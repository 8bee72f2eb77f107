/**
 * Errors of the admin API and their HTTP form: every error body is
 * `{error: {code, message, field?}}`; a stale version (409) adds `current`.
 * Typed errors from the service layer keep their code; anything untyped is a
 * 500 whose message says nothing about internals.
 */
import { PharosError } from "../../core/errors.ts";
import { ConflictError } from "../service/errors.ts";

export class ApiError extends PharosError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    readonly field?: string,
    readonly headers?: Record<string, string>,
  ) {
    super(code, message);
  }
}

/** HTTP status of a service-layer error code. */
const STATUS: Record<string, number> = {
  "invalid": 400,
  "not-found": 404,
  "exists": 409,
  "conflict": 409,
  "one-admin": 409,
  "busy": 503,
  "damaged": 500,
  "database": 500,
};

export interface ErrorBody {
  error: { code: string; message: string; field?: string };
  current?: unknown;
}

export function errorResponse(e: unknown, present?: (row: unknown) => unknown): Response {
  let status = 500;
  const body: ErrorBody = { error: { code: "internal", message: "internal error" } };
  const headers: Record<string, string> = {};
  if (e instanceof ApiError) {
    status = e.status;
    body.error = { code: e.code, message: e.message, ...(e.field ? { field: e.field } : {}) };
    Object.assign(headers, e.headers ?? {});
  } else if (e instanceof ConflictError) {
    status = 409;
    body.error = { code: e.code, message: e.message };
    body.current = e.current === null ? null : (present ? present(e.current) : null);
  } else if (e instanceof PharosError) {
    status = STATUS[e.code] ?? 400;
    body.error = { code: e.code, message: e.message };
  }
  return jsonResponse(body, status, headers);
}

export function jsonResponse(
  body: unknown,
  status = 200,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    },
  });
}

export const unauthorized = (message = "sign in, or send an API token as Authorization: Bearer") =>
  new ApiError(401, "unauthenticated", message);
export const forbidden = (message: string) => new ApiError(403, "forbidden", message);
export const notImplemented = (what: string) =>
  new ApiError(501, "not-implemented", `${what} is not available in this build yet`);
