import type { AwgObfuscation } from "../../core/dataplane/mod.ts";
/**
 * Golden-file comparison for the data-plane tests. Files live in
 * tests/vectors/dataplane/. With PHAROS_UPDATE_GOLDEN=1 the file is
 * rewritten from the actual output instead (review the diff before keeping it).
 */
import assert from "node:assert/strict";
import { PharosError } from "../../core/errors.ts";
import { DataplaneError } from "../../core/dataplane/errors.ts";

const DIR = new URL("../vectors/dataplane/", import.meta.url);

/** Reads a vector file as text. */
export function readVector(name: string): string {
  return Deno.readTextFileSync(new URL(name, DIR));
}

/** Asserts that `actual` equals the golden file `name`. */
export function assertGolden(name: string, actual: string): void {
  if (Deno.env.get("PHAROS_UPDATE_GOLDEN") === "1") {
    Deno.writeTextFileSync(new URL(name, DIR), actual);
    return;
  }
  assert.equal(actual, readVector(name), `output differs from tests/vectors/dataplane/${name}`);
}

/** 32 bytes of `fill`, as standard base64: a deterministic stand-in key. */
export function fakeKey(fill: number): string {
  return new Uint8Array(32).fill(fill).toBase64();
}

/** Asserts that `fn` throws a DataplaneError with `code` whose field starts with `field`. */
export function assertRejects(fn: () => unknown, code: string, field?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof DataplaneError, `expected DataplaneError, got ${String(e)}`);
    assert.ok(e instanceof PharosError);
    const err = e;
    assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`);
    if (field !== undefined) {
      assert.ok(err.field?.startsWith(field), `expected field ${field}, got ${err.field}`);
      assert.ok(err.message?.startsWith(`${err.field}: `), "message must name the field");
    }
    return true;
  });
}

/** A valid obfuscation set without templates, shared by the data-plane tests. */
export const SAMPLE_OBFUSCATION: AwgObfuscation = {
  jc: 4,
  jmin: 40,
  jmax: 800,
  s1: 52,
  s2: 83,
  s3: 31,
  s4: 17,
  h1: 1234567891,
  h2: 987654321,
  h3: 555555555,
  h4: 123456789,
};
