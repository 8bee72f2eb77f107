/**
 * The `.pharos` profile file of CONTRACTS.md §4.5: a readable JSON header
 * `{fmt:"pharos-profile", v:1, enc, kdf?, nonce?}` and a payload that is the
 * profile inline (`none`), a base64 XChaCha20-Poly1305 ciphertext under an
 * Argon2id key (`password`) or a sealed bundle object (`account`).
 *
 * Password mode authenticates the header: the AAD is rebuilt from the
 * parsed fields (`{"fmt":…,"v":…,"enc":…,"kdf":{…},"nonce":…,"payload":null}`),
 * so a changed `enc`, `v` or KDF parameter makes decryption fail. On top of
 * that the KDF parameters are fixed for v1 and checked before any Argon2id
 * work (§7.10). Detection is by the `fmt` field, never by file name.
 */
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { fromBase64, toBase64, utf8 } from "../encoding.ts";
import { ARGON2ID_V1, deriveArgon2idKey } from "../seal/argon2.ts";
import { isJsonObject, parseBoundedJson } from "../seal/bounded_json.ts";
import {
  openSealedBundle,
  parseSealedBundle,
  type SealedBundle,
  sealedBundleToJson,
} from "../seal/bundle.ts";
import { SealError } from "../seal/errors.ts";
import { drawRandom, type RandomSource, systemRandom } from "../seal/random.ts";
import { ProfileError } from "./errors.ts";
import { goJson } from "./fields.ts";
import {
  type ProfileDocument,
  profileDocumentToJson,
  type ProfileReadResult,
  readProfilePayload,
} from "./schema.ts";

/** The `fmt` value of a `.pharos` file. */
export const PHAROS_FORMAT = "pharos-profile";
/** File extension of `.pharos` files (readers sniff `fmt`, never the name). */
export const PHAROS_EXTENSION = ".pharos";
/** MIME type of `.pharos` files. */
export const PHAROS_MIME = "application/vnd.pharosvpn.profile";
/** Upper bound of a `.pharos` file, checked before parsing. */
export const MAX_PHAROS_BYTES = 4 * 1024 * 1024;
/** Upper bound of a password, checked before Argon2id. */
export const MAX_PASSWORD_LENGTH = 1024;

/** The three protection modes. */
export type PharosEnc = "none" | "password" | "account";

/** The password-mode KDF header; only the fixed v1 values are ever accepted. */
export interface PharosKdf {
  algo: "argon2id";
  t: 1;
  m: 65536;
  p: 4;
  salt: Uint8Array;
}

/** A parsed (or to-be-written) `.pharos` file. */
export type PharosEnvelope =
  | { enc: "none"; profile: unknown }
  | { enc: "password"; kdf: PharosKdf; nonce: Uint8Array; ciphertext: Uint8Array }
  | { enc: "account"; bundle: SealedBundle };

/** What {@link openPharos} may use, and which modes it accepts. */
export interface PharosSecrets {
  password?: string;
  account?: { privateKey: Uint8Array; pinnedSigningKey: Uint8Array };
  /**
   * Modes the caller accepts; a file in any other mode fails with
   * `downgrade-refused` before anything else. Default: all three.
   */
  accept?: readonly PharosEnc[];
}

/** Content sniffing: true when `input` parses as JSON with `fmt == "pharos-profile"`. */
export function isPharosFile(input: string | Uint8Array): boolean {
  try {
    const v = parseBoundedJson(input, MAX_PHAROS_BYTES, () => new Error("no"));
    return isJsonObject(v) && v.fmt === PHAROS_FORMAT;
  } catch {
    return false;
  }
}

/** An `enc:"none"` envelope carrying `doc` inline. */
export function pharosNone(doc: ProfileDocument): PharosEnvelope {
  return { enc: "none", profile: profileDocumentToJson(doc) };
}

/** An `enc:"account"` envelope carrying a sealed bundle inline. */
export function pharosAccount(bundle: SealedBundle): PharosEnvelope {
  return { enc: "account", bundle };
}

/**
 * An `enc:"password"` envelope: Argon2id(password, salt) keys
 * XChaCha20-Poly1305 over `plaintext` (the compact profile JSON) with the
 * header as AAD. `random` draws `"salt"` (16 B) and `"nonce"` (24 B).
 */
export async function pharosPassword(
  plaintext: Uint8Array | string,
  password: string,
  random: RandomSource = systemRandom,
): Promise<PharosEnvelope> {
  checkPassword(password);
  const kdf: PharosKdf = {
    ...V1_KDF,
    salt: drawRandom(random, ARGON2ID_V1.saltLength, "salt"),
  };
  const nonce = drawRandom(random, 24, "nonce");
  const key = await deriveArgon2idKey(password, kdf.salt);
  const aad = passwordAad(kdf, nonce);
  const bytes = typeof plaintext === "string" ? utf8.encode(plaintext) : plaintext;
  const ciphertext = xchacha20poly1305(key, nonce, aad).encrypt(bytes);
  return { enc: "password", kdf, nonce, ciphertext };
}

/**
 * The file text: fields in the order fmt, v, enc, kdf, nonce, payload,
 * pretty-printed with a 2-space indent, as the controller writes it.
 */
export function writePharos(env: PharosEnvelope): string {
  const out: Record<string, unknown> = { fmt: PHAROS_FORMAT, v: 1, enc: env.enc };
  if (env.enc === "password") {
    out.kdf = kdfJson(env.kdf);
    out.nonce = toBase64(env.nonce);
    out.payload = toBase64(env.ciphertext);
  } else if (env.enc === "account") {
    out.payload = sealedBundleToJson(env.bundle);
  } else {
    out.payload = env.profile;
  }
  return goJson(out, 2);
}

/**
 * Parses and checks a `.pharos` file without decrypting: size bound, `fmt`,
 * `v == 1`, known `enc`, header fields consistent with `enc`, and for
 * password mode the fixed KDF parameters — all before any expensive work.
 */
export function readPharos(input: string | Uint8Array): PharosEnvelope {
  const value = parseBoundedJson(input, MAX_PHAROS_BYTES, (reason, detail) =>
    new ProfileError(
      reason === "too-large" ? "input-too-large" : "not-json",
      `.pharos file: ${detail}`,
    ));
  if (!isJsonObject(value) || value.fmt !== PHAROS_FORMAT) {
    throw new ProfileError(
      "wrong-format",
      `not a .pharos profile (fmt must be "${PHAROS_FORMAT}")`,
    );
  }
  if (value.v !== 1) {
    throw new ProfileError(
      "unknown-version",
      `.pharos version ${JSON.stringify(value.v)} is not supported (only 1)`,
    );
  }
  const enc = value.enc;
  if (enc !== "none" && enc !== "password" && enc !== "account") {
    throw new ProfileError(
      "unknown-encryption",
      `.pharos enc ${JSON.stringify(enc)} is not none, password or account`,
    );
  }
  const payload = value.payload;
  if (enc !== "password") {
    // null = absent: Go writes a nil pointer or slice without omitempty as null.
    if ((value.kdf ?? null) !== null || (value.nonce ?? null) !== null) {
      throw new ProfileError("header-mismatch", `.pharos enc "${enc}" must not carry kdf or nonce`);
    }
    if (!isJsonObject(payload)) {
      throw new ProfileError("header-mismatch", `.pharos enc "${enc}" needs an object payload`);
    }
    if (enc === "account") {
      try {
        return { enc, bundle: parseSealedBundle(payload) };
      } catch (e) {
        throw new ProfileError(
          e instanceof SealError && e.code === "unknown-version"
            ? "unknown-version"
            : "header-mismatch",
          `.pharos account payload: ${(e as Error).message}`,
          { cause: e },
        );
      }
    }
    if ("epk" in payload && "wk" in payload && "ct" in payload) {
      throw new ProfileError(
        "header-mismatch",
        `.pharos enc "none" but the payload is a sealed bundle`,
      );
    }
    return { enc, profile: payload };
  }
  const kdf = readKdf(value.kdf);
  const nonce = bytesField(value.nonce, "nonce", 24);
  if (typeof payload !== "string") {
    throw new ProfileError(
      "header-mismatch",
      `.pharos enc "password" needs a base64 string payload`,
    );
  }
  const ciphertext = bytesField(payload, "payload");
  if (ciphertext.length < 16) {
    throw new ProfileError("header-mismatch", ".pharos payload shorter than its 16-byte tag");
  }
  return { enc, kdf, nonce, ciphertext };
}

/**
 * Opens an envelope to the compact profile JSON bytes. Password mode:
 * `wrong-password` on any failure; account mode: the SealError of
 * {@link openSealedBundle} (bad-signature, wrong-recipient, …).
 */
export async function openPharos(env: PharosEnvelope, secrets: PharosSecrets): Promise<Uint8Array> {
  const accept = secrets.accept ?? ["none", "password", "account"];
  if (!accept.includes(env.enc)) {
    throw new ProfileError(
      "downgrade-refused",
      `.pharos file is enc "${env.enc}" but only ${accept.join(", ")} is accepted here`,
    );
  }
  if (env.enc === "none") return utf8.encode(goJson(env.profile));
  if (env.enc === "account") {
    if (!secrets.account) {
      throw new ProfileError(
        "secret-missing",
        "this .pharos file is sealed to an account or device key",
      );
    }
    return openSealedBundle(
      env.bundle,
      secrets.account.privateKey,
      secrets.account.pinnedSigningKey,
    );
  }
  if (secrets.password === undefined) {
    throw new ProfileError("secret-missing", "this .pharos file needs a password");
  }
  checkPassword(secrets.password);
  const key = await deriveArgon2idKey(secrets.password, env.kdf.salt);
  try {
    return xchacha20poly1305(key, env.nonce, passwordAad(env.kdf, env.nonce)).decrypt(
      env.ciphertext,
    );
  } catch {
    throw new ProfileError("wrong-password", "wrong password, or the .pharos file was modified");
  }
}

/**
 * Reads, opens and validates a `.pharos` file in one step. The payload is
 * read with {@link readProfilePayload}: unusable `profiles[]` entries are
 * left out and listed in `skipped`; envelope and document-level problems
 * throw.
 */
export async function readProfileFile(
  input: string | Uint8Array,
  secrets: PharosSecrets,
): Promise<ProfileReadResult> {
  return readProfilePayload(await openPharos(readPharos(input), secrets));
}

/**
 * The password-mode AAD rebuilt from the parsed header fields (`fmt`, `v`
 * and `enc` are the only values {@link readPharos} lets through): compact
 * JSON, fixed order (kdf keys algo, t, m, p, salt), padded std base64,
 * `"payload":null`.
 */
export function passwordAad(kdf: PharosKdf, nonce: Uint8Array): Uint8Array {
  return utf8.encode(
    `{"fmt":"${PHAROS_FORMAT}","v":1,"enc":"password",` +
      `"kdf":{"algo":${JSON.stringify(kdf.algo)},"t":${kdf.t},"m":${kdf.m},"p":${kdf.p},` +
      `"salt":"${toBase64(kdf.salt)}"},"nonce":"${toBase64(nonce)}","payload":null}`,
  );
}

const V1_KDF = {
  algo: ARGON2ID_V1.algo,
  t: ARGON2ID_V1.t,
  m: ARGON2ID_V1.m,
  p: ARGON2ID_V1.p,
} as const;

function kdfJson(kdf: PharosKdf): Record<string, unknown> {
  return { algo: kdf.algo, t: kdf.t, m: kdf.m, p: kdf.p, salt: toBase64(kdf.salt) };
}

function readKdf(value: unknown): PharosKdf {
  if (!isJsonObject(value)) {
    throw new ProfileError("header-mismatch", `.pharos enc "password" needs a kdf object`);
  }
  for (const k of ["algo", "t", "m", "p"] as const) {
    if (value[k] !== V1_KDF[k]) {
      throw new ProfileError(
        "kdf-rejected",
        `.pharos kdf.${k} is ${JSON.stringify(value[k])}; version 1 files use only ` +
          `argon2id t=${V1_KDF.t} m=${V1_KDF.m} p=${V1_KDF.p}`,
      );
    }
  }
  return { ...V1_KDF, salt: bytesField(value.salt, "kdf.salt", ARGON2ID_V1.saltLength) };
}

function bytesField(value: unknown, name: string, length?: number): Uint8Array {
  if (typeof value !== "string") {
    throw new ProfileError("header-mismatch", `.pharos ${name} must be a base64 string`);
  }
  try {
    return fromBase64(value, `.pharos ${name}`, length);
  } catch (e) {
    throw new ProfileError("header-mismatch", (e as Error).message, { cause: e });
  }
}

function checkPassword(password: string): void {
  if (typeof password !== "string" || password.length > MAX_PASSWORD_LENGTH) {
    throw new ProfileError(
      "input-too-large",
      `password must be a string of at most ${MAX_PASSWORD_LENGTH} characters`,
    );
  }
}
