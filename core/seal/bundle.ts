/**
 * Sealed profile bundles (CONTRACTS.md §4.2–4.3): the profile encrypted under
 * a random data key with XChaCha20-Poly1305, the data key wrapped to the
 * recipient's X25519 key (ephemeral X25519 + HKDF-SHA256), and an Ed25519
 * signature by the controller over the compact bundle JSON with `"sig":null`.
 *
 * Opening verifies the signature with a signing key the caller PINNED (saved
 * at enrollment, never the one that arrives next to the bundle, §7.3), then
 * unwraps the data key, then decrypts.
 */
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { fromBase64, toBase64, utf8 } from "../encoding.ts";
import { isJsonObject, parseBoundedJson } from "./bounded_json.ts";
import { ed25519Sign, ed25519Verify, x25519, x25519Ephemeral } from "./curves.ts";
import { SealError } from "./errors.ts";
import { requireKey } from "./keys.ts";
import { drawRandom, type RandomSource, systemRandom } from "./random.ts";

/** HKDF `info` of the key wrap. */
export const KEYWRAP_INFO = "pharosvpn/profile/keywrap/v1";
/** Upper bound of an encoded bundle (the gRPC default receive size). */
export const MAX_SEALED_BUNDLE_BYTES = 4 * 1024 * 1024;

/** The decoded fields of a sealed bundle, in wire order. */
export interface SealedBundle {
  v: number;
  /** Ephemeral X25519 public key (32 B). */
  epk: Uint8Array;
  /** Nonce of the data-key wrap (24 B). */
  wn: Uint8Array;
  /** Wrapped data key: 32 B + 16 B tag. */
  wk: Uint8Array;
  /** Nonce of the profile ciphertext (24 B). */
  n: Uint8Array;
  /** Profile ciphertext + 16 B tag. */
  ct: Uint8Array;
  /** Ed25519 signature (64 B) over {@link signedMessage}. */
  sig: Uint8Array;
}

const LENGTHS = { epk: 32, wn: 24, wk: 48, n: 24, sig: 64 } as const;

/**
 * Seals `plaintext` (the compact profile JSON) to `recipientPublicKey` and
 * signs it with the Ed25519 seed `signingKey`. `random` draws `"data-key"`
 * (32 B), `"nonce"` (24 B), `"ephemeral-key"` (32 B) and `"wrap-nonce"`
 * (24 B); leave it out in production.
 */
export async function sealProfile(
  plaintext: Uint8Array,
  recipientPublicKey: Uint8Array,
  signingKey: Uint8Array,
  random: RandomSource = systemRandom,
): Promise<SealedBundle> {
  requireKey(recipientPublicKey, "recipient X25519 public key");
  requireKey(signingKey, "Ed25519 signing seed");
  const dk = drawRandom(random, 32, "data-key");
  const n = drawRandom(random, 24, "nonce");
  const ct = xchacha20poly1305(dk, n).encrypt(plaintext);
  const e = drawRandom(random, 32, "ephemeral-key");
  const { publicKey: epk, shared: z } = await x25519Ephemeral(e, recipientPublicKey);
  if (!z) throw new SealError("bad-key", "recipient public key is a low-order X25519 point");
  const wn = drawRandom(random, 24, "wrap-nonce");
  const wk = xchacha20poly1305(wrapKey(z), wn).encrypt(dk);
  const unsigned = { v: 1, epk, wn, wk, n, ct };
  const sig = await ed25519Sign(signingKey, signedMessage(unsigned));
  return { ...unsigned, sig };
}

/**
 * Verifies and opens a parsed bundle. Order: signature (with the pinned key),
 * X25519 + HKDF + unwrap of the data key, decryption. Errors:
 * `bad-signature`, `wrong-recipient`, `tampered-ciphertext`,
 * `malformed-bundle` (low-order `epk`), `bad-key`.
 */
export async function openSealedBundle(
  bundle: SealedBundle,
  recipientPrivateKey: Uint8Array,
  pinnedSigningKey: Uint8Array,
): Promise<Uint8Array> {
  requireKey(recipientPrivateKey, "recipient X25519 private key");
  requireKey(pinnedSigningKey, "pinned Ed25519 signing public key");
  // The X25519 runs alongside the verification; its result is used only
  // once the signature has verified.
  const shared = x25519(recipientPrivateKey, bundle.epk);
  if (!await ed25519Verify(pinnedSigningKey, bundle.sig, signedMessage(bundle))) {
    throw new SealError(
      "bad-signature",
      "profile signature does not verify under the pinned controller key: the bundle was altered or signed by someone else",
    );
  }
  const z = await shared;
  if (!z) throw new SealError("malformed-bundle", "bundle epk is a low-order X25519 point");
  let dk: Uint8Array;
  try {
    dk = xchacha20poly1305(wrapKey(z), bundle.wn).decrypt(bundle.wk);
  } catch {
    throw new SealError(
      "wrong-recipient",
      "this profile is sealed to a different key than the one used to open it (wrong device or account key)",
    );
  }
  try {
    return xchacha20poly1305(dk, bundle.n).decrypt(bundle.ct);
  } catch {
    throw new SealError(
      "tampered-ciphertext",
      "profile ciphertext fails authentication although the signature verified",
    );
  }
}

/**
 * Parses the bundle bytes/text (GetProfileResponse.ciphertext) and opens it
 * with {@link openSealedBundle}. Inputs over {@link MAX_SEALED_BUNDLE_BYTES}
 * are rejected before parsing.
 */
export async function openProfile(
  input: Uint8Array | string,
  recipientPrivateKey: Uint8Array,
  pinnedSigningKey: Uint8Array,
): Promise<Uint8Array> {
  return await openSealedBundle(decodeSealedBundle(input), recipientPrivateKey, pinnedSigningKey);
}

/**
 * The exact signed bytes M of §4.3, rebuilt from field values: compact JSON,
 * fixed order, `v` as a bare integer, padded standard base64, `"sig":null`.
 */
export function signedMessage(b: Omit<SealedBundle, "sig">): Uint8Array {
  return utf8.encode(bundleJson(b, "null"));
}

/** The compact bundle JSON with the signature (what GetProfile carries). */
export function encodeSealedBundle(b: SealedBundle): string {
  return bundleJson(b, `"${toBase64(b.sig)}"`);
}

/** Parses bundle text or UTF-8 bytes into its fields (bounded, typed errors). */
export function decodeSealedBundle(input: Uint8Array | string): SealedBundle {
  const value = parseBoundedJson(
    input,
    MAX_SEALED_BUNDLE_BYTES,
    (reason, detail) =>
      reason === "too-large"
        ? new SealError("input-too-large", `sealed bundle: ${detail}`)
        : new SealError("malformed-bundle", `sealed bundle is not JSON: ${detail}`),
  );
  return parseSealedBundle(value);
}

/**
 * Checks a parsed JSON value (e.g. the inline payload of a `.pharos` account
 * file) and decodes its fields. Unknown extra fields are ignored.
 */
export function parseSealedBundle(value: unknown): SealedBundle {
  if (!isJsonObject(value)) {
    throw new SealError("malformed-bundle", "sealed bundle must be a JSON object");
  }
  const v = value.v;
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new SealError("malformed-bundle", "sealed bundle: v must be an integer");
  }
  if (v !== 1) {
    throw new SealError("unknown-version", `sealed bundle version ${v} is not supported (only 1)`);
  }
  const ct = bytesField(value, "ct");
  if (ct.length < 16) {
    throw new SealError("malformed-bundle", "sealed bundle: ct shorter than its 16-byte tag");
  }
  return {
    v,
    epk: bytesField(value, "epk", LENGTHS.epk),
    wn: bytesField(value, "wn", LENGTHS.wn),
    wk: bytesField(value, "wk", LENGTHS.wk),
    n: bytesField(value, "n", LENGTHS.n),
    ct,
    sig: bytesField(value, "sig", LENGTHS.sig),
  };
}

/** The bundle as an ordered JSON object (the `.pharos` account payload). */
export function sealedBundleToJson(b: SealedBundle): Record<string, unknown> {
  return JSON.parse(encodeSealedBundle(b));
}

function bundleJson(b: Omit<SealedBundle, "sig">, sig: string): string {
  if (!Number.isSafeInteger(b.v)) throw new SealError("malformed-bundle", "v must be an integer");
  return `{"v":${b.v},"epk":"${toBase64(b.epk)}","wn":"${toBase64(b.wn)}","wk":"${
    toBase64(b.wk)
  }","n":"${toBase64(b.n)}","ct":"${toBase64(b.ct)}","sig":${sig}}`;
}

function wrapKey(shared: Uint8Array): Uint8Array {
  return hkdf(sha256, shared, new Uint8Array(0), utf8.encode(KEYWRAP_INFO), 32);
}

function bytesField(obj: Record<string, unknown>, name: string, length?: number): Uint8Array {
  const text = obj[name];
  if (typeof text !== "string") {
    throw new SealError("malformed-bundle", `sealed bundle: ${name} must be a base64 string`);
  }
  try {
    return fromBase64(text, `sealed bundle ${name}`, length);
  } catch (e) {
    throw new SealError("malformed-bundle", (e as Error).message, { cause: e });
  }
}
