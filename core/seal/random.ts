/**
 * Randomness used by the sealing and wrapping functions. Production code uses
 * the platform CSPRNG; tests inject a deterministic source to reproduce the
 * worked vectors of CONTRACTS.md §8 byte for byte.
 */
import { SealError } from "./errors.ts";

/**
 * Returns `length` random bytes. `purpose` names what the bytes become (for
 * example `"data-key"`, `"nonce"`, `"ephemeral-key"`, `"wrap-nonce"`,
 * `"salt"`, `"private-key"`, `"token"`), so an injected test source can hand
 * out fixed values per purpose instead of depending on call order.
 */
export type RandomSource = (length: number, purpose: string) => Uint8Array;

/** The platform CSPRNG (`crypto.getRandomValues`); ignores `purpose`. */
export const systemRandom: RandomSource = (length) =>
  crypto.getRandomValues(new Uint8Array(length));

/** Draws `length` bytes from `source` and checks the length it returned. */
export function drawRandom(source: RandomSource, length: number, purpose: string): Uint8Array {
  const bytes = source(length, purpose);
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    throw new SealError(
      "bad-randomness",
      `randomness source returned ${
        bytes instanceof Uint8Array ? bytes.length : typeof bytes
      } bytes for ${purpose}, expected ${length}`,
    );
  }
  return bytes;
}
