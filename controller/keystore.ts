/**
 * Secrets at rest. The state directory holds `secret.key` (32 random bytes,
 * mode 0600); CA and signing keys are stored in the database only sealed
 * under it (AES-256-GCM, with the row's name as associated data), so a copy
 * of the database alone, e.g. a Postgres dump, yields no usable key.
 * `open` never creates the file: only `create`, which state.ts calls for a
 * new, empty state (see openState).
 */
import { PharosError } from "../core/errors.ts";

export class KeystoreError extends PharosError {}

const NONCE = 12;
/** The key file's name in the state directory. */
export const SECRET_FILE = "secret.key";

export class Keystore {
  private constructor(private readonly key: CryptoKey) {}

  /** Opens an existing `dir/secret.key`. */
  static async open(dir: string): Promise<Keystore> {
    const path = `${dir}/${SECRET_FILE}`;
    let raw: Uint8Array;
    try {
      raw = await Deno.readFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new KeystoreError(
          "missing-secret",
          `${path} is missing: restore secret.key from your backup`,
        );
      }
      throw new KeystoreError("unreadable-secret", `cannot read ${path}: ${(e as Error).message}`);
    }
    try {
      // A copy restored from backup may have come back wider than 0600.
      const mode = (await Deno.stat(path)).mode;
      if (mode !== null && (mode & 0o777) !== 0o600) await Deno.chmod(path, 0o600);
    } catch {
      // not ours to change
    }
    return await Keystore.fromRaw(raw, path);
  }

  /** Writes a new random `dir/secret.key` (0600); refuses to replace an existing one. */
  static async create(dir: string): Promise<Keystore> {
    const path = `${dir}/${SECRET_FILE}`;
    const raw = crypto.getRandomValues(new Uint8Array(32));
    try {
      await Deno.writeFile(path, raw, { mode: 0o600, createNew: true });
    } catch (e) {
      throw new KeystoreError(
        "unwritable-secret",
        `cannot create ${path}: ${(e as Error).message}`,
      );
    }
    return await Keystore.fromRaw(raw, path);
  }

  private static async fromRaw(raw: Uint8Array, path: string): Promise<Keystore> {
    if (raw.length !== 32) {
      throw new KeystoreError(
        "bad-secret",
        `${path} must hold exactly 32 bytes; restore it from backup`,
      );
    }
    const key = await crypto.subtle.importKey(
      "raw",
      raw as Uint8Array<ArrayBuffer>,
      "AES-GCM",
      false,
      [
        "encrypt",
        "decrypt",
      ],
    );
    return new Keystore(key);
  }

  async seal(plaintext: Uint8Array, label: string): Promise<Uint8Array> {
    const iv = crypto.getRandomValues(new Uint8Array(NONCE));
    const ct = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: new TextEncoder().encode(label) },
      this.key,
      plaintext as Uint8Array<ArrayBuffer>,
    );
    const out = new Uint8Array(NONCE + ct.byteLength);
    out.set(iv);
    out.set(new Uint8Array(ct), NONCE);
    return out;
  }

  async open(sealed: Uint8Array, label: string): Promise<Uint8Array> {
    try {
      const pt = await crypto.subtle.decrypt(
        {
          name: "AES-GCM",
          iv: sealed.slice(0, NONCE),
          additionalData: new TextEncoder().encode(label),
        },
        this.key,
        sealed.subarray(NONCE) as Uint8Array<ArrayBuffer>,
      );
      return new Uint8Array(pt);
    } catch {
      throw new KeystoreError(
        "unseal-failed",
        `cannot unseal "${label}": the database and secret.key do not belong together (restore both from the same backup)`,
      );
    }
  }
}
