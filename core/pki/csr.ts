/**
 * Certificate signing requests. The requesting side (node, relay, device)
 * makes its key and CSR locally; the key never leaves it. The controller
 * keeps only the CSR's verified public key: subject, SANs and EKU are always
 * its own choice (CONTRACTS.md §4.9).
 */
import * as x509 from "@peculiar/x509";
import { PkiError } from "./errors.ts";
import { exportPrivateKeyPem, generateKeyPair } from "./keys.ts";
import { MAX_DER, MAX_PEM_INPUT, pemBlocks } from "./pem.ts";

export type CsrKind = "node" | "relay" | "device" | "controller";

const CSR_SUBJECT: Record<Exclude<CsrKind, "device">, x509.JsonName> = {
  node: [{ CN: ["pharos-node-node"] }, { O: ["PharosVPN"] }],
  relay: [{ CN: ["pharos-relay-relay"] }],
  controller: [{ CN: ["coxswain-controller"] }, { O: ["PharosVPN"] }],
};

export interface GeneratedCsr {
  /** PKCS#8 PEM of the new private key; write it with mode 0600. */
  keyPem: string;
  csrPem: string;
  keys: CryptoKeyPair;
}

/**
 * Makes a P-256 key (or reuses `keys`) and a CSR signed by it.
 * @param name device name for `device` CSRs (cosmetic; default "caravel-device").
 */
export async function generateCsr(
  kind: CsrKind,
  opts: { name?: string; keys?: CryptoKeyPair } = {},
): Promise<GeneratedCsr> {
  const keys = opts.keys ?? await generateKeyPair("P-256");
  const name: x509.JsonName = kind === "device"
    ? [{ CN: [checkPrintable(opts.name ?? "caravel-device", "device name")] }]
    : CSR_SUBJECT[kind];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name,
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
  });
  return {
    keyPem: await exportPrivateKeyPem(keys.privateKey),
    csrPem: csr.toString("pem") + "\n",
    keys,
  };
}

/** A CSR whose self-signature and key type were checked. */
export interface VerifiedCsr {
  publicKey: CryptoKey;
  subject: string;
  curve: "P-256" | "P-384";
}

/**
 * Parses a PKCS#10 CSR (PEM or DER), checks the self-signature and that the
 * key is ECDSA P-256 or P-384. Throws PkiError "bad-csr" / "unsupported-key".
 */
export async function verifyCsr(input: string | Uint8Array): Promise<VerifiedCsr> {
  let der: Uint8Array;
  if (typeof input === "string") {
    let blocks: Uint8Array[];
    try {
      blocks = pemBlocks(input, "CERTIFICATE REQUEST");
    } catch (e) {
      if (e instanceof PkiError && e.code === "too-large") throw e;
      throw new PkiError(
        "bad-csr",
        `CSR is not a "CERTIFICATE REQUEST" PEM block: ${(e as Error).message}`,
      );
    }
    der = blocks[0];
  } else {
    if (input.length > MAX_PEM_INPUT) throw new PkiError("too-large", "CSR input is too large");
    der = input;
  }
  if (der.length > MAX_DER) {
    throw new PkiError("too-large", `CSR is ${der.length} bytes; the limit is ${MAX_DER}`);
  }
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(der as Uint8Array<ArrayBuffer>);
  } catch (e) {
    throw new PkiError("bad-csr", `not a PKCS#10 certificate request: ${(e as Error).message}`);
  }
  const alg = csr.publicKey.algorithm as EcKeyAlgorithm;
  if (alg.name !== "ECDSA" || (alg.namedCurve !== "P-256" && alg.namedCurve !== "P-384")) {
    throw new PkiError(
      "unsupported-key",
      `CSR key is ${alg.name}${
        alg.namedCurve ? " " + alg.namedCurve : ""
      }; only ECDSA P-256 or P-384 is accepted`,
    );
  }
  let ok = false;
  try {
    ok = await csr.verify();
  } catch {
    ok = false;
  }
  if (!ok) throw new PkiError("bad-csr", "CSR self-signature does not verify; regenerate the CSR");
  let publicKey: CryptoKey;
  try {
    publicKey = await csr.publicKey.export({ name: "ECDSA", namedCurve: alg.namedCurve }, [
      "verify",
    ], crypto);
  } catch (e) {
    throw new PkiError(
      "unsupported-key",
      `CSR public key cannot be imported: ${(e as Error).message}`,
    );
  }
  return { publicKey, subject: csr.subject, curve: alg.namedCurve };
}

/** Printable, single-line, bounded text for subject fields. */
export function checkPrintable(value: string, what: string): string {
  // deno-lint-ignore no-control-regex
  if (value.length === 0 || value.length > 64 || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new PkiError("malformed", `${what} must be 1–64 printable characters`);
  }
  return value;
}
