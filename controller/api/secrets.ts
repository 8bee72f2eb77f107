/**
 * Secrets the admin API hands out and checks: random tokens, their SHA-256
 * digests (what the database keeps), constant-time comparison, and admin
 * passwords as Argon2id PHC strings (hash-wasm).
 */
import { argon2id, argon2Verify } from "hash-wasm";
import { sha256 } from "@noble/hashes/sha2.js";
import { toBase64Url, toHex, utf8 } from "../../core/encoding.ts";

/** Argon2id cost of admin passwords (OWASP's minimum: 19 MiB, 2 passes). */
export interface PasswordCost {
  memoryKiB: number;
  iterations: number;
}
export const PASSWORD_COST: PasswordCost = { memoryKiB: 19456, iterations: 2 };
export const MIN_PASSWORD = 12;
export const MAX_PASSWORD = 1024;

/** `bytes` random bytes as base64url without padding. */
export function randomSecret(bytes = 32): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** Hex SHA-256 of a string: stored in place of a high-entropy secret. */
export function digest(secret: string): string {
  return toHex(sha256(utf8.encode(secret)));
}

/** Compares two strings without an early exit on the first difference. */
export function sameSecret(a: string, b: string): boolean {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

export async function hashPassword(password: string, cost = PASSWORD_COST): Promise<string> {
  return await argon2id({
    password: utf8.encode(password),
    salt: crypto.getRandomValues(new Uint8Array(16)),
    iterations: cost.iterations,
    memorySize: cost.memoryKiB,
    parallelism: 1,
    hashLength: 32,
    outputType: "encoded",
  });
}

export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  try {
    return await argon2Verify({ password: utf8.encode(password), hash });
  } catch {
    return false; // a damaged hash never matches
  }
}
