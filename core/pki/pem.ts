/**
 * PEM and DER helpers. Inputs are untrusted: sizes are bounded before any
 * parsing and every failure is a PkiError, never a parser exception.
 */
import * as x509 from "@peculiar/x509";
import { EncodingError, fromBase64, toBase64 } from "../encoding.ts";
import { PkiError } from "./errors.ts";

/** Largest PEM/DER input accepted (a bundle of a few certificates is ~3 KiB). */
export const MAX_PEM_INPUT = 256 * 1024;
/** Largest single certificate or CSR accepted, DER. */
export const MAX_DER = 16 * 1024;
/** Most certificates accepted in one bundle. */
export const MAX_BUNDLE = 8;

x509.cryptoProvider.set(crypto);

/**
 * Formats DER as PEM exactly as Go's encoding/pem does: 64-character lines,
 * each ending in "\n", including the END line. Fingerprints depend on it.
 */
export function derToPem(der: Uint8Array, label: string): string {
  const b64 = toBase64(der);
  const lines = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/**
 * Extracts every block with `label` from PEM text, as DER. Other block types
 * are ignored. Throws PkiError when none is found or a block is broken.
 */
export function pemBlocks(text: string, label: string): Uint8Array[] {
  if (text.length > MAX_PEM_INPUT) {
    throw new PkiError(
      "too-large",
      `PEM input is ${text.length} bytes; the limit is ${MAX_PEM_INPUT}`,
    );
  }
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;
  const out: Uint8Array[] = [];
  for (const m of text.matchAll(re)) {
    if (m[1] !== m[3]) {
      throw new PkiError("malformed", `PEM block BEGIN ${m[1]} ends with END ${m[3]}`);
    }
    if (m[1] !== label) continue;
    let der: Uint8Array;
    try {
      der = fromBase64(m[2].replace(/[\r\n\t ]/g, ""), `${label} block`);
    } catch (e) {
      throw new PkiError("malformed", `${label} PEM block is not valid base64`, {
        cause: e as EncodingError,
      });
    }
    if (der.length > MAX_DER) {
      throw new PkiError(
        "too-large",
        `${label} is ${der.length} bytes DER; the limit is ${MAX_DER}`,
      );
    }
    out.push(der);
  }
  if (out.length === 0) throw new PkiError("empty", `no ${label} PEM block found`);
  return out;
}

/** Treats bytes as PEM when they look like text with a BEGIN line, else as DER. */
function asPemOrDer(input: string | Uint8Array): { pem?: string; der?: Uint8Array } {
  if (typeof input === "string") return { pem: input };
  if (input.length > MAX_PEM_INPUT) {
    throw new PkiError(
      "too-large",
      `input is ${input.length} bytes; the limit is ${MAX_PEM_INPUT}`,
    );
  }
  const head = new TextDecoder().decode(input.subarray(0, 64));
  if (head.includes("-----BEGIN")) return { pem: new TextDecoder().decode(input) };
  return { der: input };
}

function parseOneCert(der: Uint8Array): x509.X509Certificate {
  if (der.length > MAX_DER) {
    throw new PkiError(
      "too-large",
      `certificate is ${der.length} bytes DER; the limit is ${MAX_DER}`,
    );
  }
  if (der.length === 0) throw new PkiError("empty", "certificate is empty");
  try {
    const cert = new x509.X509Certificate(der as Uint8Array<ArrayBuffer>);
    // The library decodes some parts lazily: touch them now so that a broken
    // certificate fails here, as a PkiError, and not later inside a verifier.
    void [cert.subject, cert.issuer, cert.notBefore, cert.notAfter, cert.serialNumber];
    void [cert.publicKey.algorithm, cert.signatureAlgorithm];
    for (const ext of cert.extensions) void ext.type;
    return cert;
  } catch (e) {
    throw new PkiError("malformed", `not an X.509 certificate: ${(e as Error).message}`);
  }
}

/**
 * Parses one or more certificates from a PEM bundle (any number of
 * CERTIFICATE blocks, other blocks ignored) or from a single DER certificate.
 * The first certificate is the leaf by convention.
 */
export function parseCertificates(input: string | Uint8Array): x509.X509Certificate[] {
  const { pem, der } = asPemOrDer(input);
  const ders = pem !== undefined ? pemBlocks(pem, "CERTIFICATE") : [der!];
  if (ders.length > MAX_BUNDLE) {
    throw new PkiError(
      "too-large",
      `bundle holds ${ders.length} certificates; the limit is ${MAX_BUNDLE}`,
    );
  }
  return ders.map(parseOneCert);
}

/** Parses exactly one certificate (the first of a bundle). */
export function parseCertificate(input: string | Uint8Array): x509.X509Certificate {
  return parseCertificates(input)[0];
}

/** DER bytes of a parsed certificate. */
export function certDer(cert: x509.X509Certificate): Uint8Array<ArrayBuffer> {
  return new Uint8Array(cert.rawData);
}

/** PEM of a certificate, in the exact layout used for fingerprints. */
export function certPem(cert: x509.X509Certificate): string {
  return derToPem(certDer(cert), "CERTIFICATE");
}

/** Concatenated PEM of several certificates (leaf first). */
export function bundlePem(certs: x509.X509Certificate[]): string {
  return certs.map(certPem).join("");
}
