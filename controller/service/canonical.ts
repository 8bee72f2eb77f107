/**
 * Canonical JSON and SHA-256 digests of database rows, as the audit log
 * records them.
 *
 * Canonical JSON: `JSON.stringify` with object keys sorted by UTF-16 code
 * units at every level, no whitespace; byte strings (BLOB columns) become
 * `{"$base64": "<standard base64>"}`; bigints become decimal strings;
 * `undefined` object members are left out. Numbers that are not finite are
 * refused (JSON has no spelling for them).
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { toBase64, toHex, utf8 } from "../../core/encoding.ts";
import { ServiceError } from "./errors.ts";

export type Row = Record<string, unknown>;

function normalize(value: unknown): unknown {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new ServiceError("invalid", `cannot record the number ${value} in canonical JSON`);
    }
    return value;
  }
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return { $base64: toBase64(value) };
  if (Array.isArray(value)) return value.map((v) => v === undefined ? null : normalize(v));
  if (typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value as object).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = normalize(v);
    }
    return out;
  }
  throw new ServiceError("invalid", `cannot record a ${typeof value} in canonical JSON`);
}

export function canonicalJson(value: unknown): string {
  return JSON.stringify(normalize(value));
}

/** Lowercase hex SHA-256 of a string's UTF-8 bytes. */
export function sha256Hex(text: string): string {
  return toHex(sha256(utf8.encode(text)));
}

/** The digest of a row as the audit log records it; null for "no row". */
export function rowDigest(row: Row | undefined): string | null {
  return row === undefined ? null : sha256Hex(canonicalJson(row));
}
