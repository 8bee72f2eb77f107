/**
 * The checks a ClaimEnrollment passes before any ticket is looked at
 * (CONTRACTS.md §2.3: bad input consumes nothing): a token, a P-256 CSR
 * whose self-signature verifies and whose subject is one CN, a usable
 * 32-byte X25519 key, a printable name and platform, and an optional
 * WireGuard public key.
 */
import * as pki from "../../core/pki/mod.ts";
import { SealError, sealProfile } from "../../core/seal/mod.ts";
import { AccountError } from "./errors.ts";
import { canonicalWgKey } from "./provisioning.ts";

const DEFAULT_DEVICE_NAME = "caravel device";
const DEFAULT_PLATFORM = "caravel";
const PLATFORM = /^[A-Za-z0-9._-]{1,32}$/;
const SUBJECT = /^CN=[^,+=]{1,64}$/;

export interface ClaimInput {
  token: string;
  csrPem: Uint8Array | string;
  deviceName?: string;
  platform?: string;
  encryptionPublicKey: Uint8Array;
  wgPublicKey?: string;
}

export interface CheckedClaim {
  /** The CSR's public key (the leaf is issued for it). */
  publicKey: CryptoKey;
  name: string;
  platform: string;
  /** Canonical base64; undefined = the controller makes the key. */
  wgPublicKey?: string;
}

/** Throws AccountError `invalid` naming the first bad field. */
export async function checkClaim(req: ClaimInput): Promise<CheckedClaim> {
  if (typeof req.token !== "string" || req.token === "") {
    throw new AccountError("invalid", "token is required");
  }
  const csr = typeof req.csrPem === "string" ? req.csrPem : new TextDecoder().decode(req.csrPem);
  if (csr === "") throw new AccountError("invalid", "csr_pem is required");
  if (!(req.encryptionPublicKey instanceof Uint8Array) || req.encryptionPublicKey.length !== 32) {
    throw new AccountError("invalid", "encryption_pubkey must be a raw 32-byte X25519 key");
  }
  await checkRecipient(req.encryptionPublicKey);
  const name = req.deviceName || DEFAULT_DEVICE_NAME;
  const platform = req.platform || DEFAULT_PLATFORM;
  try {
    pki.checkPrintable(name, "device_name");
  } catch (e) {
    throw new AccountError("invalid", (e as Error).message);
  }
  if (!PLATFORM.test(platform)) {
    throw new AccountError("invalid", "platform must be 1-32 letters, digits, '.', '_' or '-'");
  }
  let wgPublicKey: string | undefined;
  if (req.wgPublicKey !== undefined) {
    try {
      wgPublicKey = canonicalWgKey(req.wgPublicKey);
    } catch {
      throw new AccountError("invalid", "the WireGuard public key must be base64 of 32 bytes");
    }
  }
  let verified: pki.VerifiedCsr;
  try {
    verified = await pki.verifyCsr(csr);
  } catch (e) {
    throw new AccountError("invalid", `csr_pem: ${(e as Error).message}`);
  }
  if (verified.curve !== "P-256") {
    throw new AccountError("invalid", "csr_pem: a device key must be ECDSA P-256");
  }
  if (!SUBJECT.test(verified.subject)) {
    throw new AccountError(
      "invalid",
      "csr_pem: the subject must be a single CN (the device name); the controller assigns the rest",
    );
  }
  return { publicKey: verified.publicKey, name, platform, wgPublicKey };
}

/** Refuses a low-order X25519 key (nothing could be sealed to it). */
async function checkRecipient(key: Uint8Array): Promise<void> {
  try {
    await sealProfile(new Uint8Array(0), key, new Uint8Array(32));
  } catch (e) {
    if (e instanceof SealError) {
      throw new AccountError("invalid", "encryption_pubkey is not a usable X25519 public key");
    }
    throw e;
  }
}
