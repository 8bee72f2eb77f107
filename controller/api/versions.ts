/**
 * Optimistic concurrency over HTTP: a write names the version it was based
 * on, as `If-Match: "3"` or a `version` field (the header wins). A write
 * that names none is refused with 428, so two admins cannot overwrite each
 * other by accident.
 */
import { ApiError } from "./errors.ts";

export function expectedVersion(req: Request, bodyVersion: number | undefined): number {
  const header = req.headers.get("if-match");
  if (header !== null) {
    const m = /^\s*(?:W\/)?"?(\d{1,15})"?\s*$/.exec(header);
    if (!m) {
      throw new ApiError(400, "invalid", 'If-Match must be a version like "3"', "If-Match");
    }
    return Number(m[1]);
  }
  if (bodyVersion !== undefined) return bodyVersion;
  throw new ApiError(
    428,
    "version-required",
    "send the version you loaded (If-Match header or a version field)",
    "version",
  );
}

export function etag(version: number): string {
  return `"${version}"`;
}
