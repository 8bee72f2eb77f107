/**
 * Roles and the single role function every verifier uses.
 *
 * A role is never inferred from "chains to our root" alone: it needs the
 * right issuing CA, the right extended key usage AND the explicit marker our
 * issuer writes into every leaf (a URI SAN `urn:pharos:role:<role>`, ignored
 * by the original Go programs, which check only chain + EKU).
 */
import * as x509 from "@peculiar/x509";
import { PkiError } from "./errors.ts";

export type Role = "controller" | "node" | "relay" | "device";
export const ROLES: readonly Role[] = ["controller", "node", "relay", "device"];

/** Which intermediate issued a leaf. */
export type IssuerKind = "fleet" | "device";

export const ROLE_URI_PREFIX = "urn:pharos:role:";

export const EKU_SERVER = x509.ExtendedKeyUsage.serverAuth as string;
export const EKU_CLIENT = x509.ExtendedKeyUsage.clientAuth as string;

/** The issuer and the exact EKU set each role's leaf carries. */
export const ROLE_RULES: Record<Role, { issuer: IssuerKind; eku: readonly (readonly string[])[] }> =
  {
    // The controller holds a client cert (nodes, relays) and a server cert
    // (its AccountSync leg): either EKU alone is a controller identity.
    controller: { issuer: "fleet", eku: [[EKU_CLIENT], [EKU_SERVER]] },
    node: { issuer: "fleet", eku: [[EKU_SERVER]] },
    relay: { issuer: "fleet", eku: [[EKU_SERVER, EKU_CLIENT]] },
    device: { issuer: "device", eku: [[EKU_CLIENT]] },
  };

/** Role markers (URI SANs with our prefix) found in a certificate. */
export function roleMarkers(cert: x509.X509Certificate): string[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (!san) return [];
  return san.names.items
    .filter((n) => n.type === "url" && n.value.startsWith(ROLE_URI_PREFIX))
    .map((n) => n.value.slice(ROLE_URI_PREFIX.length));
}

/** Extended key usages of a certificate (OIDs), empty when absent. */
export function extendedKeyUsages(cert: x509.X509Certificate): string[] {
  const ext = cert.getExtension(x509.ExtendedKeyUsageExtension);
  return ext ? ext.usages.map(String) : [];
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/**
 * THE role function. Given a leaf and the intermediate that (verifiably)
 * issued it, returns its role or throws PkiError "no-role" / "wrong-role".
 * Callers must have checked the issuer's signature first (verifyCertificate
 * does); this function only decides what the certificate is allowed to be.
 */
export function roleOf(leaf: x509.X509Certificate, issuer: IssuerKind): Role {
  const markers = roleMarkers(leaf);
  if (markers.length !== 1) {
    throw new PkiError(
      "no-role",
      markers.length === 0
        ? `certificate "${leaf.subject}" carries no PharosVPN role marker; it was not issued by this controller for any role (re-issue it)`
        : `certificate "${leaf.subject}" carries ${markers.length} role markers; exactly one is allowed`,
    );
  }
  const role = markers[0] as Role;
  const rule = ROLE_RULES[role];
  if (!rule) {
    throw new PkiError("no-role", `certificate carries an unknown role marker "${markers[0]}"`);
  }
  if (rule.issuer !== issuer) {
    throw new PkiError(
      "wrong-role",
      `certificate claims role ${role} but was issued by the ${
        issuer === "fleet" ? "Fleet" : "Device"
      } CA; ${role} certificates come only from the ${
        rule.issuer === "fleet" ? "Fleet" : "Device"
      } CA`,
    );
  }
  const eku = extendedKeyUsages(leaf);
  if (!rule.eku.some((allowed) => sameSet(allowed, eku))) {
    throw new PkiError(
      "wrong-role",
      `certificate claims role ${role} but its extended key usage (${
        eku.join(", ") || "none"
      }) does not match that role`,
    );
  }
  return role;
}
