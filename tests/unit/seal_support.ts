/**
 * Helpers shared by the seal_* and profile_* tests: vector loading,
 * fixed-byte randomness, a seeded PRNG and bounded JSON/text mutators for
 * the fuzz tests.
 */
import type { RandomSource } from "../../core/seal/mod.ts";

/** Reads a JSON vector from tests/vectors/. */
export function loadVector<T = Record<string, unknown>>(path: string): T {
  return JSON.parse(Deno.readTextFileSync(new URL(`../vectors/${path}`, import.meta.url)));
}

/** Text of the realistic 10-node sample profile in tests/vectors/profile/. */
export const SAMPLE_PROFILE_TEXT = Deno.readTextFileSync(
  new URL("../vectors/profile/sample_profile_10_nodes.json", import.meta.url),
);

/** `length` bytes of value `byte` (CONTRACTS.md §8 notation `0xNN×length`). */
export function fill(byte: number | string, length: number): Uint8Array {
  return new Uint8Array(length).fill(typeof byte === "string" ? parseInt(byte, 16) : byte);
}

/** A randomness source handing out fixed fill bytes per purpose; throws on an unknown purpose. */
export function fixedRandom(fills: Record<string, number | string>): RandomSource {
  return (length, purpose) => {
    if (!(purpose in fills)) throw new Error(`test randomness: unexpected purpose ${purpose}`);
    return fill(fills[purpose], length);
  };
}

/** Deterministic PRNG (mulberry32) so fuzz failures reproduce. */
export function prng(seed: number): { int(n: number): number; pick<T>(xs: readonly T[]): T } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
  };
}

const ODD_VALUES: unknown[] = [
  null,
  true,
  0,
  -1,
  1.5,
  1e300,
  "",
  "x",
  "\n",
  "A".repeat(300),
  [],
  [null],
  {},
  { __proto__: null, nested: [1, 2] },
  "203.0.113.7",
  "10.0.0.1/33",
];

/** One bounded random text mutation: flip, delete, insert or duplicate a span. */
export function mutateText(text: string, r: ReturnType<typeof prng>): string {
  const i = r.int(text.length + 1);
  switch (r.int(5)) {
    case 0:
      return text.slice(0, i) + String.fromCharCode(r.int(128)) + text.slice(i + 1);
    case 1:
      return text.slice(0, i) + text.slice(i + 1 + r.int(8));
    case 2:
      return text.slice(0, i) + r.pick(['"', "{", "}", "[", "]", ",", ":", "0", "\\", " "]) +
        text.slice(i);
    case 3:
      return text.slice(0, i) + text.slice(i, i + r.int(20)) + text.slice(i);
    default:
      return text.slice(0, i);
  }
}

/** One bounded random structural mutation of a JSON value (returns a new value). */
export function mutateJson(value: unknown, r: ReturnType<typeof prng>, depth = 0): unknown {
  const isObj = typeof value === "object" && value !== null;
  if (!isObj || depth > 12 || r.int(6) === 0) {
    return r.pick(ODD_VALUES);
  }
  if (Array.isArray(value)) {
    if (value.length === 0 || r.int(8) === 0) return [...value, r.pick(ODD_VALUES)];
    const i = r.int(value.length);
    const copy = [...value];
    if (r.int(8) === 0) copy.splice(i, 1);
    else copy[i] = mutateJson(copy[i], r, depth + 1);
    return copy;
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  const copy = { ...obj };
  if (keys.length === 0 || r.int(10) === 0) {
    copy[`extra_${r.int(100)}`] = r.pick(ODD_VALUES);
    return copy;
  }
  const k = r.pick(keys);
  if (r.int(8) === 0) delete copy[k];
  else copy[k] = mutateJson(copy[k], r, depth + 1);
  return copy;
}

/** Loosely typed parsed JSON, for tests that poke at arbitrary fields. */
// deno-lint-ignore no-explicit-any
export type Json = any;
