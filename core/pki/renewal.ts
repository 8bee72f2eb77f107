import type * as x509 from "@peculiar/x509";

/**
 * True when a certificate should be renewed: less than a third of its
 * lifetime left (about four months of a one-year leaf), or already expired.
 * Renewing early leaves room for an unreachable node to be caught up.
 */
export function renewalDue(cert: x509.X509Certificate, now: Date = new Date()): boolean {
  const total = cert.notAfter.getTime() - cert.notBefore.getTime();
  const left = cert.notAfter.getTime() - now.getTime();
  return left < total / 3;
}
