/**
 * The passphrase KDF of CONTRACTS.md §4.1: Argon2id v0x13 with the fixed
 * parameters t = 1, m = 65536 KiB, p = 4 and a 32-byte output. The
 * parameters are constants, never taken from input (§7.10).
 */
import { argon2id } from "hash-wasm";
import { utf8 } from "../encoding.ts";

/** The only Argon2id parameters version 1 formats use. */
export const ARGON2ID_V1 = Object.freeze(
  {
    algo: "argon2id",
    t: 1,
    m: 65536,
    p: 4,
    saltLength: 16,
    keyLength: 32,
  } as const,
);

/**
 * Derives a 32-byte key from `passphrase` (UTF-8 as given, no normalisation)
 * and a 16-byte salt with the fixed v1 parameters. Takes ~0.1–0.3 s and
 * 64 MiB of memory.
 */
export async function deriveArgon2idKey(passphrase: string, salt: Uint8Array): Promise<Uint8Array> {
  return await argon2id({
    password: utf8.encode(passphrase),
    salt,
    iterations: ARGON2ID_V1.t,
    memorySize: ARGON2ID_V1.m,
    parallelism: ARGON2ID_V1.p,
    hashLength: ARGON2ID_V1.keyLength,
    outputType: "binary",
  });
}
