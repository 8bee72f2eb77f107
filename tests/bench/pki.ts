/** PKI throughput: issuance and verification against raw ECDSA in the same run. */
import * as pki from "../../core/pki/mod.ts";
import { type BenchModule, figure, opsPerSecond } from "./harness.ts";

export const pkiBench: BenchModule = {
  section: "PKI",
  async run() {
    const cas = await pki.createPki();
    const trust = await pki.TrustStore.create({
      root: cas.root.cert,
      fleetCa: cas.fleet.cert,
      deviceCa: cas.device.cert,
    });
    const csr = (await pki.generateCsr("node")).csrPem;
    const leaf = await pki.issueLeaf(cas, csr, { kind: "node", host: "203.0.113.1" });
    const chainPem = pki.bundlePem([leaf, cas.fleet.cert]);
    const tbs = crypto.getRandomValues(new Uint8Array(400));
    const sig = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-384" },
      cas.fleet.privateKey,
      tbs,
    );
    const fleetPub = await cas.fleet.cert.publicKey.export(crypto);

    const rawSign = await opsPerSecond(() =>
      crypto.subtle.sign({ name: "ECDSA", hash: "SHA-384" }, cas.fleet.privateKey, tbs)
    );
    const issued = await opsPerSecond(() =>
      pki.issueLeaf(cas, csr, { kind: "node", host: "203.0.113.1" })
    );
    const rawVerify = await opsPerSecond(() =>
      crypto.subtle.verify({ name: "ECDSA", hash: "SHA-384" }, fleetPub, sig, tbs)
    );
    const verified = await opsPerSecond(() =>
      trust.verify(chainPem, { expect: "node", usage: "serverAuth" })
    );
    return [
      figure(
        "certificates issued from a CSR (CSR check + P-384 signature)",
        issued,
        "ops/s",
        "raw ECDSA P-384 signatures",
        rawSign,
      ),
      figure(
        "leaf chains verified (PEM parse, chain, role, EKU, fingerprint)",
        verified,
        "ops/s",
        "raw ECDSA P-384 verifications",
        rawVerify,
      ),
    ];
  },
};
