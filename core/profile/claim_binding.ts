/**
 * Claim binding (CONTRACTS.md §7.3 c): a relay terminates TLS on
 * ClaimEnrollment, so it sees the ticket token and could redeem it with a
 * CSR and keys of its own. A bound ticket's join link therefore carries a
 * second secret, `bind`, that is never sent: the client proves it holds it
 * by a MAC over exactly the keys it submits, sent as `pharos-claim-mac`
 * metadata. The controller keeps only the MAC key derived from it.
 *
 * Definition (version 1):
 * - `secret` = the 32 bytes of the link's `bind` parameter (base64url, 43 chars).
 * - `key` = HKDF-SHA-256(IKM = secret, salt = empty, info = "pharosvpn claim-mac v1", L = 32).
 * - `message` = "pharosvpn claim-mac v1" ‖ 0x00 ‖ uint32 big-endian byte length
 *   of the CSR ‖ CSR (the exact `csr_pem` bytes sent) ‖ encryption public key
 *   (the 32 raw `encryption_pubkey` bytes) ‖ WireGuard public key (its 32 raw
 *   bytes, only when `pharos-wg-public-key` is sent).
 * - `pharos-claim-mac` = base64url (no padding) of HMAC-SHA-256(key, message).
 */
import { equalBytes } from "@noble/curves/utils.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { fromBase64Url, toBase64Url, utf8 } from "../encoding.ts";
import { drawRandom, type RandomSource, systemRandom } from "../seal/random.ts";

/** gRPC metadata key of the claim MAC. */
export const CLAIM_MAC_HEADER = "pharos-claim-mac";
const LABEL = utf8.encode("pharosvpn claim-mac v1");

/** What a claim MAC covers, as sent on the wire. */
export interface ClaimMacInput {
  /** The `csr_pem` field's bytes (a string is taken as its UTF-8). */
  csrPem: Uint8Array | string;
  /** Raw 32-byte X25519 `encryption_pubkey`. */
  encryptionPublicKey: Uint8Array;
  /** Raw 32-byte WireGuard public key, when the claim sends one. */
  wireguardPublicKey?: Uint8Array;
}

/** A fresh link secret: base64url of 32 random bytes (`random` purpose `"bind"`). */
export function newLinkSecret(random: RandomSource = systemRandom): string {
  return toBase64Url(drawRandom(random, 32, "bind"));
}

/** The MAC key of a link secret; throws when `secret` is not base64url of 32 bytes. */
export function claimMacKey(secret: string): Uint8Array {
  const ikm = fromBase64Url(secret, "bind", 32);
  return hkdf(sha256, ikm, undefined, LABEL, 32);
}

/** The exact bytes a claim MAC covers (see the module comment). */
export function claimMacMessage(input: ClaimMacInput): Uint8Array {
  const csr = typeof input.csrPem === "string" ? utf8.encode(input.csrPem) : input.csrPem;
  const wg = input.wireguardPublicKey ?? new Uint8Array(0);
  const out = new Uint8Array(
    LABEL.length + 1 + 4 + csr.length + input.encryptionPublicKey.length +
      wg.length,
  );
  let at = 0;
  const put = (b: Uint8Array) => {
    out.set(b, at);
    at += b.length;
  };
  put(LABEL);
  put(new Uint8Array([0]));
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, csr.length);
  put(len);
  put(csr);
  put(input.encryptionPublicKey);
  put(wg);
  return out;
}

/** `pharos-claim-mac` for a claim, computed by the client from its link secret. */
export function claimMac(secret: string, input: ClaimMacInput): string {
  return toBase64Url(hmac(sha256, claimMacKey(secret), claimMacMessage(input)));
}

/**
 * Checks a received `pharos-claim-mac` against the stored MAC `key`
 * (constant-time); false for a malformed or wrong MAC.
 */
export function verifyClaimMac(key: Uint8Array, input: ClaimMacInput, mac: string): boolean {
  let got: Uint8Array;
  try {
    got = fromBase64Url(mac, "pharos-claim-mac", 32);
  } catch {
    return false;
  }
  return equalBytes(hmac(sha256, key, claimMacMessage(input)), got);
}
