/**
 * Login passwords: Argon2id PHC strings
 * (`$argon2id$v=19$m=65536,t=1,p=4$<salt>$<hash>`, the original's
 * parameters, CONTRACTS.md §2.3) made and checked with hash-wasm. An
 * unknown account is checked against a dummy hash so that the answer takes
 * as long as for a real one (§7.12).
 */
import { argon2id, argon2Verify } from "hash-wasm";
import { ARGON2ID_V1 } from "../../core/seal/mod.ts";
import { AccountError } from "./errors.ts";

/** Shortest password accepted by `passwd`. */
export const MIN_PASSWORD_LENGTH = 10;
/** Longest password hashed (UTF-16 units), checked before any work. */
export const MAX_PASSWORD_LENGTH = 1024;

const PHC = /^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;

/** Hashes a new password; refuses one that is too short or too long. */
export async function hashPassword(password: string): Promise<string> {
  if (typeof password !== "string" || password.length < MIN_PASSWORD_LENGTH) {
    throw new AccountError(
      "invalid",
      `a password needs at least ${MIN_PASSWORD_LENGTH} characters`,
    );
  }
  if (password.length > MAX_PASSWORD_LENGTH) {
    throw new AccountError("invalid", `a password has at most ${MAX_PASSWORD_LENGTH} characters`);
  }
  return await argon2id({
    password,
    salt: crypto.getRandomValues(new Uint8Array(ARGON2ID_V1.saltLength)),
    iterations: ARGON2ID_V1.t,
    memorySize: ARGON2ID_V1.m,
    parallelism: ARGON2ID_V1.p,
    hashLength: ARGON2ID_V1.keyLength,
    outputType: "encoded",
  });
}

let dummy: Promise<string> | undefined;

/**
 * True when `password` matches `hash`. A missing or malformed hash is
 * checked against a dummy one (same cost) and yields false.
 */
export async function verifyPassword(password: string, hash: string | null): Promise<boolean> {
  if (typeof password !== "string" || password.length > MAX_PASSWORD_LENGTH) return false;
  const usable = hash !== null && PHC.test(hash);
  dummy ??= hashPassword("dummy password, never matches");
  const against = usable ? hash : await dummy;
  let ok = false;
  try {
    ok = await argon2Verify({ password, hash: against });
  } catch {
    ok = false;
  }
  return usable && ok;
}
