/**
 * The certificate step: the CSR the host printed is verified (self-signature,
 * P-256/P-384 key), then either the certificate issued at an earlier run is
 * reused — same public key, same names, not revoked, renewal not due — or a
 * new one is issued by the Fleet CA for the role. Either way the result is
 * checked by core/pki as a certificate of that role before it is installed.
 */
import { PharosError } from "../../core/errors.ts";
import {
  hostSan,
  issueLeaf,
  type LeafProfile,
  parseCertificate,
  type Pki,
  renewalDue,
  serialOf,
  SubjectAlternativeNameExtension,
  type TrustStore,
  verifyCsr,
  type X509Certificate,
} from "../../core/pki/mod.ts";

export class CertificateStepError extends PharosError {}

const CSR_BLOCK =
  /-----BEGIN CERTIFICATE REQUEST-----\r?\n[A-Za-z0-9+/=\r\n]{1,16384}-----END CERTIFICATE REQUEST-----/;

/** The one CSR PEM block in a command's output. */
export function extractCsr(output: string): string {
  const m = CSR_BLOCK.exec(output);
  if (!m) {
    throw new CertificateStepError(
      "no-csr",
      "the CSR command printed no CERTIFICATE REQUEST block on its standard output",
    );
  }
  return m[0] + "\n";
}

function sanValues(cert: X509Certificate): string[] {
  const san = cert.getExtension(SubjectAlternativeNameExtension);
  return (san?.names.items ?? []).filter((n) => n.type === "dns" || n.type === "ip")
    .map((n) => n.value).sort();
}

function profileHosts(p: LeafProfile): string[] {
  if (p.kind === "node") return [p.host];
  if (p.kind === "relay") return [...p.hosts];
  return [];
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export interface CertificateOutcome {
  leaf: X509Certificate;
  serial: string;
  reused: boolean;
}

export async function issueOrReuse(opts: {
  cas: Pick<Pki, "fleet" | "device">;
  trust: TrustStore;
  csrPem: string;
  profile: Extract<LeafProfile, { kind: "node" | "relay" }>;
  /** The certificate recorded at an earlier run (leaf PEM). */
  previousPem: string | null;
  isRevoked(serial: string): boolean;
  now?: Date;
}): Promise<CertificateOutcome> {
  const csr = await verifyCsr(opts.csrPem);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", csr.publicKey));
  const wanted = profileHosts(opts.profile).map((h) => hostSan(h).value).sort();
  let leaf: X509Certificate | null = null;
  let reused = false;
  if (opts.previousPem !== null) {
    try {
      const prev = parseCertificate(opts.previousPem);
      if (
        equalBytes(new Uint8Array(prev.publicKey.rawData), spki) &&
        sanValues(prev).join() === wanted.join() &&
        !renewalDue(prev, opts.now) &&
        !opts.isRevoked(serialOf(prev))
      ) {
        leaf = prev;
        reused = true;
      }
    } catch {
      leaf = null; // unreadable: issue a new one
    }
  }
  leaf ??= await issueLeaf(opts.cas, opts.csrPem, opts.profile, { now: opts.now });
  await opts.trust.verify(leaf, { expect: opts.profile.kind, usage: "serverAuth", now: opts.now });
  return { leaf, serial: serialOf(leaf), reused };
}
