/**
 * Fingerprints in the two forms the wire uses (CONTRACTS.md §3.2, §4.8):
 * devices are identified by SHA-256 over the PEM text, the root CA by
 * SHA-256 over its DER.
 */
import type * as x509 from "@peculiar/x509";
import { sha256, toHex, utf8 } from "../encoding.ts";
import { PkiError } from "./errors.ts";
import { certDer, certPem } from "./pem.ts";

/** `sha256:<64 hex>` over the certificate's canonical PEM (relay → controller). */
export async function deviceFingerprint(cert: x509.X509Certificate): Promise<string> {
  return "sha256:" + toHex(await sha256(utf8.encode(certPem(cert))));
}

/** Lowercase hex SHA-256 over the DER, as in the join link's `ca`. */
export async function caFingerprint(cert: x509.X509Certificate): Promise<string> {
  return toHex(await sha256(certDer(cert)));
}

/**
 * Normalises a fingerprint written by a person or another program: optional
 * `sha256:` prefix, optional `:` separators, any case → 64 lowercase hex.
 */
export function normalizeFingerprint(text: string): string {
  const s = text.trim().toLowerCase().replace(/^sha256:/, "").replaceAll(":", "");
  if (!/^[0-9a-f]{64}$/.test(s)) {
    throw new PkiError(
      "malformed",
      `"${text.slice(0, 80)}" is not a SHA-256 fingerprint (64 hex digits)`,
    );
  }
  return s;
}

/**
 * A comma-separated list of fingerprints (a setting such as
 * `legacy_controller_pins`) as a set of normalised ones; empty entries are
 * skipped and a malformed one throws.
 */
export function fingerprintSet(list: string): Set<string> {
  return new Set(list.split(",").map((s) => s.trim()).filter(Boolean).map(normalizeFingerprint));
}

/** Compares two fingerprints in any accepted notation. */
export function fingerprintsEqual(a: string, b: string): boolean {
  return normalizeFingerprint(a) === normalizeFingerprint(b);
}
