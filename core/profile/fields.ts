/**
 * Small JSON schema codecs used by the profile payload and `.pharos` readers:
 * each codec validates a parsed JSON value (errors name the field path, e.g.
 * `profiles[0].nodes[1].endpoints`) and writes it back. Object codecs keep
 * unknown fields in `extra`, in their original order, and write them after
 * the known fields, so a round trip preserves what the reader did not know.
 */
import { isJsonObject } from "../seal/bounded_json.ts";
import { ProfileFieldError } from "./errors.ts";

/** Reads (validates) and writes one JSON value. */
export interface Codec<T> {
  read(value: unknown, path: string): T;
  write(value: T): unknown;
}

/**
 * Unknown fields of an object, kept verbatim for the writer. The reader
 * always sets it (possibly empty); hand-built values may leave it out.
 */
export interface WithExtra {
  extra?: Record<string, unknown>;
}

/** Deepest nesting accepted inside preserved unknown values. */
const MAX_DEPTH = 32;
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Child path of an object key. */
export function keyPath(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function fail(path: string, problem: string): never {
  throw new ProfileFieldError(path, problem);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** Options of {@link text}. */
export interface TextOptions {
  /** Longest accepted string (UTF-16 units); default 256. */
  max?: number;
  /** Reject "". */
  nonEmpty?: boolean;
  /** Extra check; returns a problem description or undefined when fine. */
  check?: (s: string) => string | undefined;
}

/** A string without control characters (so it is safe in line-based configs). */
export function text(opts: TextOptions = {}): Codec<string> {
  const max = opts.max ?? 256;
  return {
    read(value, path) {
      if (typeof value !== "string") fail(path, `must be a string, got ${describe(value)}`);
      if (value.length > max) fail(path, `longer than ${max} characters`);
      if (CONTROL.test(value)) fail(path, "contains a control character");
      if (opts.nonEmpty && value === "") fail(path, "must not be empty");
      const problem = opts.check?.(value);
      if (problem) fail(path, problem);
      return value;
    },
    write: (value) => value,
  };
}

/** An integer in [min, max]. */
export function integer(min: number, max: number): Codec<number> {
  return {
    read(value, path) {
      if (typeof value !== "number" || !Number.isInteger(value)) {
        fail(path, `must be an integer, got ${describe(value)}`);
      }
      if (value < min || value > max) fail(path, `must be between ${min} and ${max}`);
      return value;
    },
    write: (value) => value,
  };
}

/** A finite number in [min, max]. */
export function decimal(min: number, max: number): Codec<number> {
  return {
    read(value, path) {
      if (typeof value !== "number" || !Number.isFinite(value)) {
        fail(path, `must be a number, got ${describe(value)}`);
      }
      if (value < min || value > max) fail(path, `must be between ${min} and ${max}`);
      return value;
    },
    write: (value) => value,
  };
}

/** true or false. */
export const boolean: Codec<boolean> = {
  read(value, path) {
    if (typeof value !== "boolean") fail(path, `must be true or false, got ${describe(value)}`);
    return value;
  },
  write: (value) => value,
};

/** One of a fixed set of strings or numbers. */
export function oneOf<T extends string | number>(...values: T[]): Codec<T> {
  return {
    read(value, path) {
      if (!values.includes(value as T)) {
        fail(path, `must be one of ${values.map((v) => JSON.stringify(v)).join(", ")}`);
      }
      return value as T;
    },
    write: (value) => value,
  };
}

/**
 * An array of at most `maxItems` items; `null` reads as `[]` (Go's
 * encoding/json writes a nil slice as `null`). A bare item is not a list.
 * The writer always writes an array.
 */
export function list<T>(item: Codec<T>, maxItems: number): Codec<T[]> {
  return {
    read(value, path) {
      if (value === null) return [];
      if (!Array.isArray(value)) fail(path, `must be an array, got ${describe(value)}`);
      if (value.length > maxItems) fail(path, `more than ${maxItems} entries`);
      return value.map((v, i) => item.read(v, `${path}[${i}]`));
    },
    write: (value) => value.map((v) => item.write(v)),
  };
}

/** One field of a {@link record}. */
export interface Field {
  key: string;
  // deno-lint-ignore no-explicit-any
  codec: Codec<any>;
  /** Absent (or null) is allowed; the typed value is then undefined. */
  optional?: boolean;
  /** The writer leaves the field out when it is "". */
  omitEmpty?: boolean;
}

/**
 * A JSON object with known fields in writer order; unknown fields go to
 * `extra` and are written back after the known ones.
 */
export function record<T extends WithExtra>(fields: Field[]): Codec<T> {
  const known = new Set(fields.map((f) => f.key));
  return {
    read(value, path) {
      if (!isJsonObject(value)) fail(path, `must be an object, got ${describe(value)}`);
      const out: Record<string, unknown> = {};
      for (const f of fields) {
        const v = Object.hasOwn(value, f.key) ? value[f.key] : undefined;
        if (v === undefined || (v === null && f.optional)) {
          if (!f.optional) fail(keyPath(path, f.key), "is required");
          continue;
        }
        out[f.key] = f.codec.read(v, keyPath(path, f.key));
      }
      const unknownKeys = Object.keys(value).filter((k) => !known.has(k));
      // fromEntries defines data properties, so a "__proto__" key stays data.
      out.extra = Object.fromEntries(
        unknownKeys.map((k) => [k, jsonValue(value[k], keyPath(path, k))]),
      );
      return out as T;
    },
    write(value) {
      const entries: [string, unknown][] = [];
      const v = value as unknown as Record<string, unknown>;
      for (const f of fields) {
        const x = v[f.key];
        if (x === undefined || (f.omitEmpty && x === "")) continue;
        entries.push([f.key, f.codec.write(x)]);
      }
      for (const [k, x] of Object.entries(value.extra ?? {})) {
        if (!known.has(k)) entries.push([k, x]);
      }
      return Object.fromEntries(entries);
    },
  };
}

/**
 * Checks that `value` is plain JSON data (null, boolean, finite number,
 * string, array, plain object; bounded depth) and returns it unchanged.
 * Needed because preserved values may come from CBOR, not only JSON.parse.
 */
export function jsonValue(value: unknown, path: string, depth = 0): unknown {
  if (depth > MAX_DEPTH) fail(path, `nested deeper than ${MAX_DEPTH} levels`);
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) fail(path, "must be a finite number");
    return value;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => jsonValue(v, `${path}[${i}]`, depth + 1));
    return value;
  }
  if (isJsonObject(value)) {
    for (const k of Object.keys(value)) jsonValue(value[k], keyPath(path, k), depth + 1);
    return value;
  }
  return fail(path, `is not JSON data (${describe(value)})`);
}

/**
 * JSON text as Go's encoding/json writes it: `<`, `>`, `&`, U+2028 and
 * U+2029 escaped as `\u003c` etc. (they can only occur inside strings).
 * `indent` gives MarshalIndent-style output.
 */
export function goJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
