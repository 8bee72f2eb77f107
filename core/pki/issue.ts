/**
 * Issuing the fleet's certificates: root CA (10 y, P-384), Fleet CA and
 * Device CA (5 y, P-384), and 1-year P-256 leaves from verified CSRs, with
 * subjects, SANs and EKUs per CONTRACTS.md §4.10 plus our role marker.
 */
import * as x509 from "@peculiar/x509";
import { toHex } from "../encoding.ts";
import { formatIp, NetError, parseHost } from "../net/mod.ts";
import { checkPrintable, verifyCsr } from "./csr.ts";
import { PkiError } from "./errors.ts";
import { generateKeyPair } from "./keys.ts";
import { EKU_CLIENT, EKU_SERVER, type IssuerKind, type Role, ROLE_URI_PREFIX } from "./roles.ts";

const DAY = 86_400_000;
/** Backdating of NotBefore to absorb clock skew (as the original does). */
const SKEW_MS = 5 * 60_000;

export const LIFETIME_DAYS = { root: 3650, intermediate: 1826, leaf: 365 } as const;

/** A CA certificate with its private key. */
export interface CaMaterial {
  cert: x509.X509Certificate;
  privateKey: CryptoKey;
}

export interface Pki {
  root: CaMaterial;
  fleet: CaMaterial;
  device: CaMaterial;
}

export interface IssueOptions {
  /** Issue "as of" this instant (tests make expired or future certs this way). */
  now?: Date;
  lifetimeDays?: number;
}

/** The leaf kinds our issuer knows, with the data each needs. */
export type LeafProfile =
  | { kind: "controller-client" }
  | { kind: "controller-server" }
  | { kind: "node"; host: string }
  | { kind: "relay"; hosts: readonly string[] }
  | { kind: "device"; name: string };

const SIG_ALG = { name: "ECDSA", hash: "SHA-384" };

function randomSerial(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[0] = (b[0] & 0x7f) | 0x40; // positive, full 128-bit magnitude
  return toHex(b);
}

function window(opts: IssueOptions, days: number): { notBefore: Date; notAfter: Date } {
  const now = (opts.now ?? new Date()).getTime();
  return {
    notBefore: new Date(now - SKEW_MS),
    notAfter: new Date(now + (opts.lifetimeDays ?? days) * DAY),
  };
}

/** Creates the self-signed root CA (pathlen 1). */
export async function createRootCa(opts: IssueOptions = {}): Promise<CaMaterial> {
  const keys = await generateKeyPair("P-384");
  const name: x509.JsonName = [{ CN: ["PharosVPN Root CA"] }, { O: ["PharosVPN"] }];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: name,
    issuer: name,
    ...window(opts, LIFETIME_DAYS.root),
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    signingAlgorithm: SIG_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, privateKey: keys.privateKey };
}

/** Creates the Fleet CA or Device CA under the root (pathlen 0). */
export async function createIntermediateCa(
  root: CaMaterial,
  kind: IssuerKind,
  opts: IssueOptions = {},
): Promise<CaMaterial> {
  const keys = await generateKeyPair("P-384");
  const cn = kind === "fleet" ? "PharosVPN Fleet CA" : "PharosVPN Device CA";
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [cn] }, { O: ["PharosVPN"] }],
    issuer: root.cert.subjectName,
    ...window(opts, LIFETIME_DAYS.intermediate),
    publicKey: keys.publicKey,
    signingKey: root.privateKey,
    signingAlgorithm: SIG_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(root.cert),
    ],
  });
  return { cert, privateKey: keys.privateKey };
}

/** Creates a whole new PKI: root, Fleet CA, Device CA. */
export async function createPki(opts: IssueOptions = {}): Promise<Pki> {
  const root = await createRootCa(opts);
  return {
    root,
    fleet: await createIntermediateCa(root, "fleet", opts),
    device: await createIntermediateCa(root, "device", opts),
  };
}

/** A SAN entry for a host: IP SAN for IPv4/IPv6 literals (brackets optional), DNS SAN otherwise. */
export function hostSan(host: string): x509.JsonGeneralName {
  try {
    const parsed = parseHost(host.includes(":") ? host.replace(/^\[|\]$/g, "") : host);
    if (parsed.kind === "name") return { type: "dns", value: parsed.name };
    // All-hex mapped IPv4: @peculiar/x509 misreads "::ffff:1.2.3.4" as "::ffff:1".
    return { type: "ip", value: formatIp(parsed.address, { hexMapped: true }) };
  } catch (e) {
    if (!(e instanceof NetError)) throw e;
    throw new PkiError("malformed", `"${host}" is neither an IP address nor a DNS name`);
  }
}

interface LeafShape {
  issuer: IssuerKind;
  role: Role;
  subject: x509.JsonName;
  sans: x509.JsonGeneralName[];
  eku: string[];
}

function leafShape(p: LeafProfile): LeafShape {
  switch (p.kind) {
    case "controller-client":
      return {
        issuer: "fleet",
        role: "controller",
        subject: [{ CN: ["coxswain-controller"] }, { O: ["PharosVPN Controller"] }],
        sans: [],
        eku: [EKU_CLIENT],
      };
    case "controller-server":
      return {
        issuer: "fleet",
        role: "controller",
        subject: [{ CN: ["coxswain-grpc"] }, { O: ["PharosVPN Controller"] }],
        sans: [{ type: "dns", value: "coxswain-grpc" }],
        eku: [EKU_SERVER],
      };
    case "node": {
      const san = hostSan(p.host);
      return {
        issuer: "fleet",
        role: "node",
        subject: [{ CN: [san.value] }, { O: ["PharosVPN Node"] }],
        sans: [san],
        eku: [EKU_SERVER],
      };
    }
    case "relay":
      if (p.hosts.length === 0) {
        throw new PkiError("malformed", "a relay certificate needs at least one host");
      }
      return {
        issuer: "fleet",
        role: "relay",
        subject: [{ CN: ["PharosVPN Relay"] }, { O: ["PharosVPN Relay"] }],
        sans: p.hosts.map(hostSan),
        eku: [EKU_SERVER, EKU_CLIENT],
      };
    case "device":
      return {
        issuer: "device",
        role: "device",
        subject: [{ CN: [checkPrintable(p.name, "device name")] }, { O: ["PharosVPN Device"] }],
        sans: [],
        eku: [EKU_CLIENT],
      };
  }
}

/**
 * Issues a leaf for the public key of a verified CSR (PEM/DER) or a public
 * CryptoKey the controller generated for itself. The issuing CA follows from
 * the profile: devices from the Device CA, everything else from the Fleet CA.
 */
export async function issueLeaf(
  cas: Pick<Pki, "fleet" | "device">,
  request: string | Uint8Array | CryptoKey,
  profile: LeafProfile,
  opts: IssueOptions = {},
): Promise<x509.X509Certificate> {
  const shape = leafShape(profile);
  const ca = cas[shape.issuer];
  const publicKey = request instanceof CryptoKey ? request : (await verifyCsr(request)).publicKey;
  return await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: shape.subject,
    issuer: ca.cert.subjectName,
    ...window(opts, LIFETIME_DAYS.leaf),
    publicKey,
    signingKey: ca.privateKey,
    signingAlgorithm: SIG_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(shape.eku, false),
      new x509.SubjectAlternativeNameExtension([
        ...shape.sans,
        { type: "url", value: ROLE_URI_PREFIX + shape.role },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
}
