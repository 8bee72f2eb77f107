/**
 * Passphrase wrapping of a raw 32-byte private key, in the blob format of
 * CONTRACTS.md §4.4:
 * `{"v":1,"salt":B64(16 B),"n":B64(24 B),"ct":B64(XChaCha20-Poly1305(KEK, n, key))}`
 * with `KEK = Argon2id(passphrase, salt)` at the fixed v1 parameters.
 */
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { fromBase64, toBase64, utf8 } from "../encoding.ts";
import { ARGON2ID_V1, deriveArgon2idKey } from "./argon2.ts";
import { isJsonObject, parseBoundedJson } from "./bounded_json.ts";
import { SealError } from "./errors.ts";
import { requireKey } from "./keys.ts";
import { drawRandom, type RandomSource, systemRandom } from "./random.ts";

/** Upper bound of a wrapped-key blob; a real one is about 130 bytes. */
export const MAX_WRAPPED_KEY_BYTES = 4096;
/** Upper bound of a passphrase in UTF-16 units, checked before Argon2id. */
export const MAX_PASSPHRASE_LENGTH = 1024;

/** The decoded fields of a wrapped-key blob. */
export interface WrappedKey {
  v: number;
  salt: Uint8Array;
  n: Uint8Array;
  ct: Uint8Array;
}

/**
 * Wraps `privateKey` under `passphrase` and returns the blob as UTF-8 JSON
 * bytes (what `EnrollKeysRequest.wrapped_private_key` carries). `random`
 * draws the `"salt"` (16 B) and `"nonce"` (24 B).
 */
export async function wrapPrivateKey(
  passphrase: string,
  privateKey: Uint8Array,
  random: RandomSource = systemRandom,
): Promise<Uint8Array> {
  requireKey(privateKey, "private key to wrap");
  checkPassphrase(passphrase);
  const salt = drawRandom(random, ARGON2ID_V1.saltLength, "salt");
  const n = drawRandom(random, 24, "nonce");
  const kek = await deriveArgon2idKey(passphrase, salt);
  const ct = xchacha20poly1305(kek, n).encrypt(privateKey);
  return utf8.encode(encodeWrappedKey({ v: 1, salt, n, ct }));
}

/**
 * Opens a wrapped-key blob. Throws `wrong-passphrase` when the passphrase
 * does not open it (an altered `ct` looks the same), `malformed-wrapped-key`,
 * `unknown-version` or `input-too-large` before any Argon2id work.
 */
export async function unwrapPrivateKey(
  passphrase: string,
  blob: Uint8Array | string,
): Promise<Uint8Array> {
  checkPassphrase(passphrase);
  const wrapped = decodeWrappedKey(blob);
  const kek = await deriveArgon2idKey(passphrase, wrapped.salt);
  let key: Uint8Array;
  try {
    key = xchacha20poly1305(kek, wrapped.n).decrypt(wrapped.ct);
  } catch {
    throw new SealError(
      "wrong-passphrase",
      "the passphrase does not open this wrapped key (or the blob was modified)",
    );
  }
  return key;
}

/** Compact JSON of a wrapped key, fields in the fixed order v, salt, n, ct. */
export function encodeWrappedKey(w: WrappedKey): string {
  return `{"v":${w.v},"salt":"${toBase64(w.salt)}","n":"${toBase64(w.n)}","ct":"${
    toBase64(w.ct)
  }"}`;
}

/** Parses and checks a wrapped-key blob without deriving anything. */
export function decodeWrappedKey(blob: Uint8Array | string): WrappedKey {
  const value = parseBoundedJson(
    blob,
    MAX_WRAPPED_KEY_BYTES,
    (reason, detail) =>
      reason === "too-large"
        ? new SealError("input-too-large", `wrapped key: ${detail}`)
        : new SealError("malformed-wrapped-key", `wrapped key is not JSON: ${detail}`),
  );
  if (!isJsonObject(value)) {
    throw new SealError("malformed-wrapped-key", "wrapped key must be a JSON object");
  }
  const v = value.v;
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new SealError("malformed-wrapped-key", "wrapped key: v must be an integer");
  }
  if (v !== 1) {
    throw new SealError("unknown-version", `wrapped key: version ${v} is not supported (only 1)`);
  }
  // 32-byte key + 16-byte tag.
  return {
    v,
    salt: field(value, "salt", ARGON2ID_V1.saltLength),
    n: field(value, "n", 24),
    ct: field(value, "ct", 48),
  };
}

function field(obj: Record<string, unknown>, name: string, length: number): Uint8Array {
  const text = obj[name];
  if (typeof text !== "string") {
    throw new SealError("malformed-wrapped-key", `wrapped key: ${name} must be a base64 string`);
  }
  try {
    return fromBase64(text, `wrapped key ${name}`, length);
  } catch (e) {
    throw new SealError("malformed-wrapped-key", (e as Error).message, { cause: e });
  }
}

function checkPassphrase(passphrase: string): void {
  if (typeof passphrase !== "string") {
    throw new SealError("bad-key", "passphrase must be a string");
  }
  if (passphrase.length > MAX_PASSPHRASE_LENGTH) {
    throw new SealError(
      "input-too-large",
      `passphrase longer than ${MAX_PASSPHRASE_LENGTH} characters`,
    );
  }
}
