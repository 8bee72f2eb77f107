/**
 * JSON parsing with a size bound checked before any parsing work, shared by
 * the readers of core/seal and core/profile.
 */
import { utf8 } from "../encoding.ts";

/** Why {@link parseBoundedJson} refused its input. */
export type BoundedJsonFailure = "too-large" | "not-json";

/**
 * Parses `input` (UTF-8 bytes or a string) as JSON after checking that it is
 * at most `maxBytes` long (for strings: at most `maxBytes` UTF-16 units, a
 * cheap upper bound). `fail` builds the caller's typed error.
 */
export function parseBoundedJson(
  input: string | Uint8Array,
  maxBytes: number,
  fail: (reason: BoundedJsonFailure, detail: string) => Error,
): unknown {
  if (typeof input !== "string" && !(input instanceof Uint8Array)) {
    throw fail("not-json", `expected a string or bytes, got ${typeof input}`);
  }
  if (input.length > maxBytes) {
    throw fail("too-large", `${input.length} bytes exceeds the limit of ${maxBytes}`);
  }
  let text: string;
  try {
    text = typeof input === "string" ? input : utf8.decode(input);
  } catch {
    throw fail("not-json", "not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw fail("not-json", (e as Error).message);
  }
}

/** True for a non-null, non-array object as produced by JSON.parse. */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
