/**
 * The node's TLS material in its state directory, as `cox` writes it:
 * `node.key` (made here by gen-csr, 0600), `node.crt` (node leaf + Fleet
 * CA), `ca.crt` (root), `fleet-ca.crt`, `device-ca.crt`, and optionally
 * `revoked.txt` (revoked certificate serials, hex, one per line, `#`
 * comments). The files are re-read when they change, so a rotated node
 * certificate or a new revocation takes effect without a restart.
 */
import {
  certPem,
  parseCertificate,
  parseCertificates,
  PkiError,
  RevocationList,
  TrustStore,
} from "../core/pki/mod.ts";

export const NODE_FILES = {
  key: "node.key",
  cert: "node.crt",
  root: "ca.crt",
  fleetCa: "fleet-ca.crt",
  deviceCa: "device-ca.crt",
  revoked: "revoked.txt",
} as const;

export interface NodeMaterial {
  keyPem: string;
  /** Node leaf + Fleet CA, as presented. */
  chainPem: string;
  /** Root + Fleet CA: what the TLS layer accepts client chains against. */
  clientCaPem: string;
  trust: TrustStore;
  /** The node certificate's serial (for logs). */
  serial: string;
  notAfter: Date;
}

/** Reads and checks every file; a missing one is named with the fix. */
export async function readMaterial(dir: string): Promise<NodeMaterial> {
  const names = [
    NODE_FILES.key,
    NODE_FILES.cert,
    NODE_FILES.root,
    NODE_FILES.fleetCa,
    NODE_FILES.deviceCa,
  ];
  const results = await Promise.allSettled(names.map((f) => Deno.readTextFile(`${dir}/${f}`)));
  const missing = names.filter((_, i) => results[i].status === "rejected");
  if (missing.length > 0) {
    throw new PkiError(
      "empty",
      `cannot read ${
        missing.map((f) => `${dir}/${f}`).join(", ")
      }; run "agent gen-csr --dir ${dir}" ` +
        "and install the certificates the controller issued for this node",
    );
  }
  const [keyPem, certText, rootText, fleetText, deviceText] = results.map((r) =>
    (r as PromiseFulfilledResult<string>).value
  );
  const trust = await TrustStore.create({
    root: parseCertificate(rootText),
    fleetCa: parseCertificate(fleetText),
    deviceCa: parseCertificate(deviceText),
  });
  const leaf = parseCertificates(certText)[0];
  const who = await trust.verify(leaf, { expect: "node", usage: "serverAuth" });
  const fleetPem = certPem(trust.anchors.fleetCa);
  return {
    keyPem,
    chainPem: certPem(leaf) + fleetPem,
    clientCaPem: certPem(trust.anchors.root) + fleetPem,
    trust,
    serial: who.serial,
    notAfter: leaf.notAfter,
  };
}

/** Parses revoked.txt (missing file = nothing revoked). */
export async function readRevoked(dir: string): Promise<string[]> {
  let text = "";
  try {
    text = await Deno.readTextFile(`${dir}/${NODE_FILES.revoked}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const out: string[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") continue;
    if (!/^[0-9a-fA-F:]{1,128}$/.test(line)) {
      throw new PkiError(
        "bad-serial",
        `${dir}/${NODE_FILES.revoked} line ${i + 1}: not a hex serial`,
      );
    }
    out.push(line);
  }
  return out;
}

/** A fingerprint of the files' change times, to notice rotation cheaply. */
export async function materialStamp(dir: string): Promise<string> {
  const parts: string[] = [];
  for (const f of Object.values(NODE_FILES)) {
    try {
      const st = await Deno.stat(`${dir}/${f}`);
      parts.push(`${f}:${st.mtime?.getTime() ?? 0}:${st.size}`);
    } catch {
      parts.push(`${f}:-`);
    }
  }
  return parts.join("|");
}

export { RevocationList };
