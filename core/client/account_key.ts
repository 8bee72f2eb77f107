/**
 * The account key (CONTRACTS.md §4.4, §7.3): an X25519 key made on the
 * device, sent only as its public half and wrapped under the user's
 * passphrase. The controller replaces an existing key only against proof of
 * the old one: it refuses the first EnrollKeys with a nonce sealed to the
 * old key (signed with the profile-signing key) and takes the call again
 * with that nonce. The sealed text is the nonce followed by a digest of
 * the key being installed, checked on both sides, so that an answer given
 * for this device's new key cannot be spent by a relay on another one.
 * This device can answer when it holds the old key — the wrapped form it
 * enrolled, opened with the old passphrase.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { concat, fromBase64, toBase64Url, utf8 } from "../encoding.ts";
import { openProfile } from "../seal/bundle.ts";
import { SealError } from "../seal/errors.ts";
import { generateEncryptionKeyPair } from "../seal/keys.ts";
import { unwrapPrivateKey, wrapPrivateKey } from "../seal/passphrase.ts";
import { ClientError } from "./errors.ts";
import type { ClientState } from "./state.ts";
import {
  type AccountChannel,
  GRPC_FAILED_PRECONDITION,
  KEY_CHALLENGE_TRAILER,
} from "./transport.ts";

/** Length of a challenge's random nonce; the key binding follows it. */
const NONCE_BYTES = 32;

/**
 * What a key-replacement challenge is bound to: SHA-256 of the new public
 * key followed by its wrapped blob, exactly as sent in EnrollKeys.
 */
export function keyChallengeBinding(publicKey: Uint8Array, wrapped: Uint8Array): Uint8Array {
  return sha256(concat(publicKey, wrapped));
}

/** Passphrases for {@link enrollAccountKey}. */
export interface AccountKeyPassphrases {
  /** Wraps the new account key. */
  passphrase: string;
  /** Opens the account key this device holds, when the account already has one. */
  oldPassphrase?: string;
}

/**
 * Makes a new account key wrapped under `passphrase` and enrolls it with the
 * session `session`. When the account already has another key, answers the
 * controller's challenge with the key in `state.accountWrappedKey` (opened
 * with `oldPassphrase`). Returns the state holding the new wrapped key.
 * Errors: `account-key-unknown` (this device never held the account's key),
 * `passphrase-required` (no old passphrase), SealError `wrong-passphrase`,
 * `account-key-stale` (the key was replaced elsewhere), SealError
 * `bad-signature` (a challenge not from the pinned controller key),
 * `key-challenge-mismatch` (a challenge for another key), `bad-response` (a
 * refusal without a usable challenge), `rejected` (the proof was refused).
 */
export async function enrollAccountKey(
  channel: AccountChannel,
  state: ClientState,
  session: string,
  p: AccountKeyPassphrases,
): Promise<ClientState> {
  const fresh = generateEncryptionKeyPair();
  const wrapped = await wrapPrivateKey(p.passphrase, fresh.privateKey);
  fresh.privateKey.fill(0);
  const saved = { ...state, accountWrappedKey: utf8.decode(wrapped) };
  let challenge: string;
  try {
    await channel.enrollKeys(fresh.publicKey, wrapped, session);
    return saved;
  } catch (e) {
    if (!(e instanceof ClientError && e.grpcCode === GRPC_FAILED_PRECONDITION)) throw e;
    challenge = e.trailers[KEY_CHALLENGE_TRAILER] ?? "";
    if (!challenge) {
      throw new ClientError(
        "bad-response",
        `the controller refused the key change without a challenge to answer (${e.message})`,
      );
    }
  }
  const proof = await answerKeyChallenge(
    challenge,
    state,
    p.oldPassphrase,
    keyChallengeBinding(fresh.publicKey, wrapped),
  );
  await channel.enrollKeys(fresh.publicKey, wrapped, session, proof);
  return saved;
}

/**
 * Opens a `pharos-key-challenge` with the account key this device holds
 * and returns the proof (the opened text, base64url). The challenge must be
 * signed with the profile-signing key pinned at enrollment and bound to
 * `binding` (see {@link keyChallengeBinding}), the key this device asked
 * to install; else `key-challenge-mismatch`.
 */
export async function answerKeyChallenge(
  challenge: string,
  state: ClientState,
  oldPassphrase: string | undefined,
  binding: Uint8Array,
): Promise<string> {
  if (!state.accountWrappedKey) {
    throw new ClientError(
      "account-key-unknown",
      "the account already has a key and this device does not hold it, so it cannot prove " +
        "it: change the key from the device that enrolled it",
    );
  }
  if (!oldPassphrase) {
    throw new ClientError(
      "passphrase-required",
      "the account already has a key: give its current passphrase to prove it",
    );
  }
  let sealed: Uint8Array;
  try {
    sealed = fromBase64(challenge, KEY_CHALLENGE_TRAILER);
  } catch (e) {
    throw new ClientError("bad-response", (e as Error).message);
  }
  const old = await unwrapPrivateKey(oldPassphrase, state.accountWrappedKey);
  let opened: Uint8Array;
  try {
    opened = await openProfile(sealed, old, state.signingKey);
  } catch (e) {
    if (e instanceof SealError && e.code === "wrong-recipient") {
      throw new ClientError(
        "account-key-stale",
        "the account key this device holds is no longer the account's (it was changed " +
          "elsewhere): change it from the device that holds the current one",
      );
    }
    throw e;
  } finally {
    old.fill(0);
  }
  const bound = opened.subarray(NONCE_BYTES);
  if (
    opened.length !== NONCE_BYTES + binding.length || !bound.every((b, i) => b === binding[i])
  ) {
    throw new ClientError(
      "key-challenge-mismatch",
      "the key challenge is for another key than the one this device asked to install " +
        "(a relay passing on someone else's request?); nothing was answered",
    );
  }
  return toBase64Url(opened);
}
