/**
 * ECDSA key generation and PKCS#8 PEM import/export. CAs use P-384, leaves
 * P-256 (CONTRACTS.md §4.1).
 */
import { fromBase64Url } from "../encoding.ts";
import { PkiError } from "./errors.ts";
import { derToPem, pemBlocks } from "./pem.ts";

export type Curve = "P-256" | "P-384";

export function generateKeyPair(curve: Curve): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, ["sign", "verify"]);
}

/** PKCS#8 PEM ("PRIVATE KEY") of an extractable private key. */
export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  return derToPem(new Uint8Array(await crypto.subtle.exportKey("pkcs8", key)), "PRIVATE KEY");
}

/** PKCS#8 DER of an extractable private key. */
export async function exportPrivateKeyDer(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
}

/**
 * Imports a PKCS#8 EC private key (PEM or DER) of either curve and recovers
 * its public half, so a key file reused on disk yields a full key pair.
 */
export async function importKeyPair(input: string | Uint8Array): Promise<CryptoKeyPair> {
  const der = typeof input === "string" ? pemBlocks(input, "PRIVATE KEY")[0] : input;
  for (const namedCurve of ["P-256", "P-384"] as const) {
    let privateKey: CryptoKey;
    try {
      privateKey = await crypto.subtle.importKey(
        "pkcs8",
        der as Uint8Array<ArrayBuffer>,
        { name: "ECDSA", namedCurve },
        true,
        ["sign"],
      );
    } catch {
      continue;
    }
    const jwk = await crypto.subtle.exportKey("jwk", privateKey);
    // Sanity: the public point must decode (guards against odd encodings).
    fromBase64Url(jwk.x!, "jwk.x");
    delete jwk.d;
    jwk.key_ops = ["verify"];
    const publicKey = await crypto.subtle.importKey(
      "jwk",
      jwk,
      { name: "ECDSA", namedCurve },
      true,
      [
        "verify",
      ],
    );
    return { privateKey, publicKey };
  }
  throw new PkiError("unsupported-key", "private key is not a PKCS#8 ECDSA P-256 or P-384 key");
}
