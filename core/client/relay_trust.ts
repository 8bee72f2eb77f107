/**
 * Trusting a relay before anything is sent to it (CONTRACTS.md §7.4). The
 * join link pins the root CA by the SHA-256 of its DER; the relay presents
 * leaf → Fleet CA → root. The chain is checked here signature by signature
 * up to the certificate whose DER hashes to the pin, and the leaf must be a
 * relay's (role marker, EKU) naming the host that was dialled. Only then
 * does the token go out, over a connection that trusts that root alone and
 * passes the same leaf rules ({@link relayLeafCheck}).
 */
import * as x509 from "@peculiar/x509";
import { fingerprintsMatch } from "../profile/join_link.ts";
import { caFingerprint } from "../pki/fingerprint.ts";
import { certPem } from "../pki/pem.ts";
import { roleOf } from "../pki/roles.ts";
import { isIpv4, isIpv6 } from "../profile/net_syntax.ts";
import { ClientError } from "./errors.ts";

/** The chain a relay proved, parsed. */
export interface VerifiedRelay {
  root: x509.X509Certificate;
  fleetCa: x509.X509Certificate;
  leaf: x509.X509Certificate;
  rootPem: string;
  fleetCaPem: string;
}

/** More certificates than this in one presented chain are refused unread. */
const MAX_CHAIN = 8;

const untrusted = (why: string) => new ClientError("relay-untrusted", `relay not trusted: ${why}`);

function parse(der: Uint8Array): x509.X509Certificate {
  try {
    return new x509.X509Certificate(new Uint8Array(der));
  } catch (e) {
    throw untrusted(`it presented a certificate that cannot be decoded (${(e as Error).message})`);
  }
}

async function signedBy(cert: x509.X509Certificate, issuer: x509.X509Certificate) {
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    return false;
  }
}

function isCa(cert: x509.X509Certificate): boolean {
  return cert.getExtension(x509.BasicConstraintsExtension)?.ca === true;
}

function keyId(
  ext: x509.SubjectKeyIdentifierExtension | x509.AuthorityKeyIdentifierExtension | null,
): string | undefined {
  return ext && "keyId" in ext ? ext.keyId : undefined;
}

function inWindow(cert: x509.X509Certificate, now: Date, what: string): void {
  if (now < cert.notBefore || now > cert.notAfter) {
    throw untrusted(
      `the ${what} "${cert.subject}" is valid only from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()} (check this machine's clock)`,
    );
  }
}

/** True when the leaf's SAN names `host` (IP SAN for an IP, DNS SAN otherwise). */
export function leafNamesHost(leaf: x509.X509Certificate, host: string): boolean {
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
  if (!san) return false;
  const bare = host.replace(/^\[|\]$/g, "");
  const ip = isIpv4(bare) || isIpv6(bare);
  return san.names.items.some((n) =>
    ip
      ? n.type === "ip" && sameIp(n.value, bare)
      : n.type === "dns" && n.value.toLowerCase() === bare.toLowerCase()
  );
}

function sameIp(a: string, b: string): boolean {
  // The parser prints IPv6 SANs expanded; compare through the URL parser's canonical form.
  const canon = (s: string) => s.includes(":") ? new URL(`http://[${s}]/`).hostname : s;
  try {
    return canon(a) === canon(b);
  } catch {
    return false;
  }
}

/**
 * The leaf rules every relay connection applies synchronously during the
 * handshake: a leaf (not a CA), issued by `fleetCa` (name and key id), with
 * the relay role marker and EKUs, valid now, naming `host`. The signature
 * chain itself is left to the TLS library, whose only anchor is the root.
 */
export function relayLeafCheck(
  fleetCa: x509.X509Certificate,
  host: string,
  now: () => Date = () => new Date(),
): (leafDer: Uint8Array) => void {
  const fleetKeyId = keyId(fleetCa.getExtension(x509.SubjectKeyIdentifierExtension));
  return (leafDer) => {
    const leaf = parse(leafDer);
    checkLeafShape(leaf, fleetCa, fleetKeyId, host, now());
  };
}

function checkLeafShape(
  leaf: x509.X509Certificate,
  fleetCa: x509.X509Certificate,
  fleetKeyId: string | undefined,
  host: string,
  now: Date,
): void {
  if (isCa(leaf)) throw untrusted(`"${leaf.subject}" is a CA certificate, not a relay's`);
  const aki = keyId(leaf.getExtension(x509.AuthorityKeyIdentifierExtension));
  if (leaf.issuer !== fleetCa.subject || (aki && fleetKeyId && aki !== fleetKeyId)) {
    throw untrusted(`"${leaf.subject}" was not issued by this fleet's Fleet CA`);
  }
  let role: string;
  try {
    role = roleOf(leaf, "fleet");
  } catch (e) {
    throw untrusted((e as Error).message);
  }
  if (role !== "relay") {
    throw untrusted(`it presented a ${role} certificate where a relay's is required`);
  }
  inWindow(leaf, now, "relay certificate");
  if (!leafNamesHost(leaf, host)) {
    throw untrusted(`its certificate "${leaf.subject}" does not name the host ${host}`);
  }
}

/**
 * Verifies a presented chain (leaf first, DER) against the root pinned by
 * `caPin` (the join link's `ca`) for a relay dialled as `host`. Every
 * failure is `relay-untrusted` and says which link broke.
 */
export async function verifyRelayChain(
  chain: readonly Uint8Array[],
  caPin: string,
  host: string,
  now: Date = new Date(),
): Promise<VerifiedRelay> {
  if (chain.length === 0) throw untrusted("it presented no certificate");
  if (chain.length > MAX_CHAIN) throw untrusted(`it presented ${chain.length} certificates`);
  const certs = chain.map(parse);
  let root: x509.X509Certificate | undefined;
  for (const c of certs) {
    if (fingerprintsMatch(await caFingerprint(c), caPin)) root = c;
  }
  if (!root) {
    throw untrusted(
      "none of its certificates is the root CA pinned by the enrollment link " +
        `(ca=${
          caPin.slice(0, 16)
        }…): it belongs to another fleet, or it does not send its chain up to the root`,
    );
  }
  if (!isCa(root) || !(await signedBy(root, root))) {
    throw untrusted("the pinned root is not a self-signed CA certificate");
  }
  inWindow(root, now, "root CA");
  const leaf = certs[0];
  const fleetCa = certs.find((c) => c !== root && isCa(c) && c.subject === leaf.issuer);
  if (!fleetCa) throw untrusted(`it did not send the CA that issued "${leaf.subject}"`);
  if (fleetCa.issuer !== root.subject || !(await signedBy(fleetCa, root))) {
    throw untrusted(`"${fleetCa.subject}" is not signed by the pinned root CA`);
  }
  inWindow(fleetCa, now, "Fleet CA");
  if (!(await signedBy(leaf, fleetCa))) {
    throw untrusted(`the signature on "${leaf.subject}" does not verify against its CA`);
  }
  checkLeafShape(
    leaf,
    fleetCa,
    keyId(fleetCa.getExtension(x509.SubjectKeyIdentifierExtension)),
    host,
    now,
  );
  return { root, fleetCa, leaf, rootPem: certPem(root), fleetCaPem: certPem(fleetCa) };
}
