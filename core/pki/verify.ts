/**
 * Certificate verification. Building a chain is not validating it: every
 * certificate's signature, basicConstraints, key usage, extended key usage,
 * validity window and revocation status are checked here, then the role.
 * Presented intermediates are ignored; only the trust store's CAs count.
 */
import * as x509 from "@peculiar/x509";

import { PkiError } from "./errors.ts";
import { caFingerprint, deviceFingerprint } from "./fingerprint.ts";
import { parseCertificates } from "./pem.ts";
import { RevocationList } from "./revocation.ts";
import { type IssuerKind, type Role, roleOf } from "./roles.ts";

export interface TrustAnchors {
  root: x509.X509Certificate;
  fleetCa: x509.X509Certificate;
  deviceCa: x509.X509Certificate;
}

export type Usage = "clientAuth" | "serverAuth";

export interface VerifyOptions {
  /** The role (or roles) this verifier accepts. */
  expect: Role | readonly Role[];
  /** The TLS side the certificate is presented on. */
  usage?: Usage;
  now?: Date;
  revoked?: RevocationList;
  /**
   * Compatibility with the original Go controller, whose certificates carry
   * no role marker: Fleet-CA leaves whose DER SHA-256 (as `openssl x509
   * -fingerprint -sha256` prints it, normalised) is listed here count as the
   * controller. Empty by default; each entry pins exactly one certificate.
   */
  legacyControllerPins?: ReadonlySet<string>;
}

export interface VerifiedCertificate {
  role: Role;
  leaf: x509.X509Certificate;
  /** Lowercase hex, no leading zeros (RevocationList form). */
  serial: string;
  /** `sha256:<hex>` over the PEM (the relay's device fingerprint form). */
  fingerprint: string;
}

const USAGE_OID: Record<Usage, string> = {
  clientAuth: x509.ExtendedKeyUsage.clientAuth,
  serverAuth: x509.ExtendedKeyUsage.serverAuth,
};

function keyId(
  ext: x509.SubjectKeyIdentifierExtension | x509.AuthorityKeyIdentifierExtension | null,
) {
  if (!ext) return undefined;
  return "keyId" in ext ? ext.keyId : undefined;
}

async function signedBy(
  cert: x509.X509Certificate,
  issuer: x509.X509Certificate,
): Promise<boolean> {
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    return false;
  }
}

function checkWindow(cert: x509.X509Certificate, now: Date, what: string): void {
  if (now < cert.notBefore) {
    throw new PkiError(
      "not-yet-valid",
      `${what} "${cert.subject}" is not valid before ${cert.notBefore.toISOString()}; check this machine's clock`,
    );
  }
  if (now > cert.notAfter) {
    throw new PkiError(
      "expired",
      `${what} "${cert.subject}" expired at ${cert.notAfter.toISOString()}; renew it`,
    );
  }
}

function checkCa(cert: x509.X509Certificate, pathLen: number, what: string): void {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc || !bc.ca) {
    throw new PkiError("not-a-ca", `${what} "${cert.subject}" is not a CA certificate`);
  }
  if (bc.pathLength !== undefined && bc.pathLength < pathLen) {
    throw new PkiError(
      "not-a-ca",
      `${what} "${cert.subject}" path length ${bc.pathLength} is too short`,
    );
  }
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (!ku || !(ku.usages & x509.KeyUsageFlags.keyCertSign)) {
    throw new PkiError(
      "bad-key-usage",
      `${what} "${cert.subject}" may not sign certificates (no keyCertSign)`,
    );
  }
}

/**
 * The fleet's trust anchors, checked once on creation (self-signature of the
 * root, both intermediates signed by it, CA constraints) so that each leaf
 * verification costs a single signature check.
 */
export class TrustStore {
  private constructor(readonly anchors: TrustAnchors) {}

  static async create(anchors: TrustAnchors): Promise<TrustStore> {
    checkCa(anchors.root, 1, "root CA");
    if (!(await signedBy(anchors.root, anchors.root))) {
      throw new PkiError("bad-signature", "root CA is not correctly self-signed");
    }
    for (
      const [cert, what] of [[anchors.fleetCa, "Fleet CA"], [
        anchors.deviceCa,
        "Device CA",
      ]] as const
    ) {
      checkCa(cert, 0, what);
      if (!(await signedBy(cert, anchors.root))) {
        throw new PkiError("unknown-issuer", `${what} was not issued by this root CA`);
      }
    }
    return new TrustStore(anchors);
  }

  /**
   * Verifies a presented certificate (leaf first; PEM, DER or parsed) and
   * returns its role. Each failure is a PkiError with its own code.
   */
  async verify(
    presented: x509.X509Certificate | x509.X509Certificate[] | string | Uint8Array,
    opts: VerifyOptions,
  ): Promise<VerifiedCertificate> {
    try {
      return await this.#verify(presented, opts);
    } catch (e) {
      if (e instanceof PkiError) throw e;
      // An extension the parser decodes lazily turned out to be broken.
      throw new PkiError("malformed", `certificate cannot be decoded: ${(e as Error).message}`);
    }
  }

  async #verify(
    presented: x509.X509Certificate | x509.X509Certificate[] | string | Uint8Array,
    opts: VerifyOptions,
  ): Promise<VerifiedCertificate> {
    const leaf = presented instanceof x509.X509Certificate
      ? presented
      : Array.isArray(presented)
      ? presented[0]
      : parseCertificates(presented)[0];
    if (!leaf) throw new PkiError("empty", "no certificate was presented");
    const now = opts.now ?? new Date();

    const bc = leaf.getExtension(x509.BasicConstraintsExtension);
    if (bc?.ca) {
      throw new PkiError("leaf-is-ca", `"${leaf.subject}" is a CA certificate, not a leaf`);
    }

    const { ca, kind } = await this.#issuerOf(leaf);
    checkWindow(this.anchors.root, now, "root CA");
    checkWindow(ca, now, kind === "fleet" ? "Fleet CA" : "Device CA");
    checkWindow(leaf, now, "certificate");

    const ku = leaf.getExtension(x509.KeyUsagesExtension);
    if (!ku || !(ku.usages & x509.KeyUsageFlags.digitalSignature)) {
      throw new PkiError("bad-key-usage", `"${leaf.subject}" lacks the digitalSignature key usage`);
    }

    const serial = RevocationList.normalize(leaf.serialNumber);
    if (opts.revoked?.has(serial)) {
      throw new PkiError(
        "revoked",
        `certificate "${leaf.subject}" (serial ${serial}) has been revoked`,
      );
    }

    const role = await this.#role(leaf, kind, opts.legacyControllerPins);
    const expected = typeof opts.expect === "string" ? [opts.expect] : opts.expect;
    if (!expected.includes(role)) {
      throw new PkiError(
        "wrong-role",
        `a ${role} certificate was presented where ${expected.join(" or ")} is required`,
      );
    }
    if (opts.usage) {
      const ekus = leaf.getExtension(x509.ExtendedKeyUsageExtension)?.usages.map(String) ?? [];
      if (!ekus.includes(USAGE_OID[opts.usage])) {
        throw new PkiError("wrong-usage", `"${leaf.subject}" is not valid for ${opts.usage}`);
      }
    }
    return { role, leaf, serial, fingerprint: await deviceFingerprint(leaf) };
  }

  async #role(
    leaf: x509.X509Certificate,
    kind: IssuerKind,
    pins?: ReadonlySet<string>,
  ): Promise<Role> {
    try {
      return roleOf(leaf, kind);
    } catch (e) {
      if (kind === "fleet" && pins && pins.size > 0 && pins.has(await caFingerprint(leaf))) {
        return "controller";
      }
      throw e;
    }
  }

  async #issuerOf(
    leaf: x509.X509Certificate,
  ): Promise<{ ca: x509.X509Certificate; kind: IssuerKind }> {
    const aki = keyId(leaf.getExtension(x509.AuthorityKeyIdentifierExtension));
    const candidates: [x509.X509Certificate, IssuerKind][] = [
      [this.anchors.fleetCa, "fleet"],
      [this.anchors.deviceCa, "device"],
    ];
    for (const [ca, kind] of candidates) {
      if (ca.subject !== leaf.issuer) continue;
      const ski = keyId(ca.getExtension(x509.SubjectKeyIdentifierExtension));
      // Same name, other key: another fleet's CA (every PharosVPN uses these names).
      if (aki && ski && aki !== ski) continue;
      if (await signedBy(leaf, ca)) return { ca, kind };
      throw new PkiError(
        "bad-signature",
        `signature on "${leaf.subject}" does not verify against the ${
          kind === "fleet" ? "Fleet" : "Device"
        } CA; the certificate was altered`,
      );
    }
    throw new PkiError(
      "unknown-issuer",
      `"${leaf.subject}" was not issued by this fleet's CAs (issuer "${leaf.issuer}"${
        aki ? `, key id ${aki}` : ""
      }); it belongs to another PKI`,
    );
  }
}

/** Hex serial of a certificate, normalised. */
export function serialOf(cert: x509.X509Certificate): string {
  return RevocationList.normalize(cert.serialNumber);
}
