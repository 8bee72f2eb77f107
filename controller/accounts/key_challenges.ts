/**
 * Proof of the old account key before it is replaced (CONTRACTS.md §7.3):
 * a random nonce sealed to the old public key (the profile bundle format,
 * signed with the profile-signing key the client pinned). Only the holder
 * of the old private key can open it and send the nonce back. The sealed
 * text also names the key being installed (core/client keyChallengeBinding)
 * and the proof is taken only for that key: a relay that passes a device's
 * challenge on cannot spend the answer on a key of its own. One live
 * challenge per user, good once, for CHALLENGE_TTL_MS; only its hash is
 * kept, in memory (a restart simply asks for a new one).
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, toBase64, toBase64Url, utf8 } from "../../core/encoding.ts";
import { encodeSealedBundle, type KeyPair, sealProfile } from "../../core/seal/mod.ts";

export const CHALLENGE_TTL_MS = 5 * 60_000;

export class KeyChallenges {
  readonly #live = new Map<string, { hash: string; binding: string; until: number }>();

  constructor(private readonly signing: KeyPair) {}

  /**
   * A new challenge for `userId` to install the key `binding` names: base64
   * of the sealed bundle JSON of nonce ‖ binding (replaces any earlier one).
   */
  async issue(userId: string, oldKey: Uint8Array, binding: Uint8Array, now: Date): Promise<string> {
    const nonce = concat(crypto.getRandomValues(new Uint8Array(32)), binding);
    this.#live.set(userId, {
      hash: digest(toBase64Url(nonce)),
      binding: toBase64(binding),
      until: now.getTime() + CHALLENGE_TTL_MS,
    });
    const bundle = await sealProfile(nonce, oldKey, this.signing.privateKey);
    return toBase64(utf8.encode(encodeSealedBundle(bundle)));
  }

  /**
   * True (once) when `proof` is the base64url sealed text of the user's live
   * challenge and that challenge was issued for the key `binding` names.
   */
  take(userId: string, proof: string | undefined, binding: Uint8Array, now: Date): boolean {
    const c = this.#live.get(userId);
    if (!c || !proof || c.until <= now.getTime()) return false;
    const ok = digest(proof) === c.hash && c.binding === toBase64(binding);
    if (ok) this.#live.delete(userId);
    return ok;
  }
}

function digest(text: string): string {
  return toBase64(sha256(utf8.encode(text)));
}
