/**
 * Key pairs used by profile sealing: the user's (or device's) X25519
 * encryption key and the controller's Ed25519 profile-signing key.
 * Private keys are raw 32-byte values: the X25519 scalar and the Ed25519 seed.
 */
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { SealError } from "./errors.ts";
import { drawRandom, type RandomSource, systemRandom } from "./random.ts";

/** A raw 32-byte private key and its 32-byte public key. */
export interface KeyPair {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

/** Generates an X25519 encryption key pair (CONTRACTS.md §4.1). */
export function generateEncryptionKeyPair(random: RandomSource = systemRandom): KeyPair {
  const privateKey = drawRandom(random, 32, "private-key");
  return { privateKey, publicKey: encryptionPublicKey(privateKey) };
}

/** The X25519 public key of a 32-byte private scalar (clamped internally). */
export function encryptionPublicKey(privateKey: Uint8Array): Uint8Array {
  requireKey(privateKey, "X25519 private key");
  return x25519.getPublicKey(privateKey);
}

/** Generates an Ed25519 signing key pair; `privateKey` is the 32-byte seed. */
export function generateSigningKeyPair(random: RandomSource = systemRandom): KeyPair {
  const privateKey = drawRandom(random, 32, "private-key");
  return { privateKey, publicKey: signingPublicKey(privateKey) };
}

/** The raw 32-byte Ed25519 public key of a 32-byte seed. */
export function signingPublicKey(seed: Uint8Array): Uint8Array {
  requireKey(seed, "Ed25519 seed");
  return ed25519.getPublicKey(seed);
}

/** Throws `bad-key` unless `key` is a 32-byte Uint8Array. */
export function requireKey(key: unknown, what: string): asserts key is Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== 32) {
    const got = key instanceof Uint8Array ? `${key.length} bytes` : typeof key;
    throw new SealError("bad-key", `${what} must be 32 raw bytes, got ${got}`);
  }
}
