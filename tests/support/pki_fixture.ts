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
