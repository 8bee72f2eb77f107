/** A throwaway fleet PKI for tests: CAs, trust store, and leaf issuance. */
import * as pki from "../../core/pki/mod.ts";

export interface IssuedLeaf {
  cert: pki.X509Certificate;
  /** Leaf followed by its intermediate, as services present it. */
  chainPem: string;
  keyPem: string;
}

export interface Fleet {
  pki: pki.Pki;
  trust: pki.TrustStore;
  rootPem: string;
  issue(profile: pki.LeafProfile, opts?: pki.IssueOptions): Promise<IssuedLeaf>;
}

const CSR_KIND: Record<pki.LeafProfile["kind"], pki.CsrKind> = {
  "controller-client": "controller",
  "controller-server": "controller",
  node: "node",
  relay: "relay",
  device: "device",
};

export async function makeFleet(opts: pki.IssueOptions = {}): Promise<Fleet> {
  const p = await pki.createPki(opts);
  const trust = await pki.TrustStore.create({
    root: p.root.cert,
    fleetCa: p.fleet.cert,
    deviceCa: p.device.cert,
  });
  return {
    pki: p,
    trust,
    rootPem: pki.certPem(p.root.cert),
    async issue(profile, issueOpts = {}) {
      const csr = await pki.generateCsr(CSR_KIND[profile.kind]);
      const cert = await pki.issueLeaf(p, csr.csrPem, profile, issueOpts);
      const ca = profile.kind === "device" ? p.device.cert : p.fleet.cert;
      return { cert, chainPem: pki.bundlePem([cert, ca]), keyPem: csr.keyPem };
    },
  };
}

/**
 * A certificate shaped like the original Go controller's (CN = O =
 * "PharosVPN Relay", dual EKU, no role marker), signed by the fleet's CA.
 */
export async function issueLegacyControllerCert(fleet: Fleet): Promise<IssuedLeaf> {
  const x509 = await import("@peculiar/x509");
  const keys = await pki.generateKeyPair("P-256");
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "5a" + crypto.getRandomValues(new Uint8Array(15)).toHex(),
    subject: [{ CN: ["PharosVPN Relay"] }, { O: ["PharosVPN Relay"] }],
    issuer: fleet.pki.fleet.cert.subjectName,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    publicKey: keys.publicKey,
    signingKey: fleet.pki.fleet.privateKey,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-384" },
    extensions: [
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([pki.EKU_SERVER, pki.EKU_CLIENT]),
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "localhost" }, {
        type: "ip",
        value: "127.0.0.1",
      }]),
      await x509.AuthorityKeyIdentifierExtension.create(fleet.pki.fleet.cert),
    ],
  });
  return {
    cert,
    chainPem: pki.bundlePem([cert, fleet.pki.fleet.cert]),
    keyPem: await pki.exportPrivateKeyPem(keys.privateKey),
  };
}
