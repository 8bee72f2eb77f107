/**
 * Enrollment from a join link (CONTRACTS.md §4.8) with the trust fixes of
 * §7.3/7.4: the relay's chain is verified up to the root the link pins
 * BEFORE the token is sent; the device makes its TLS key, its X25519
 * encryption key and its WireGuard key itself and sends only public halves;
 * the answer must agree with what the wire proved; the profile-signing key
 * is pinned here and nowhere else. A bound link's secret never leaves the
 * device: it MACs the CSR and the public keys sent (§7.3 c), so a relay
 * that sees the token cannot redeem it with keys of its own.
 */
import * as x509 from "@peculiar/x509";
import { generateCsr } from "../pki/csr.ts";
import { certDer, parseCertificate } from "../pki/pem.ts";
import { claimMac } from "../profile/claim_binding.ts";
import { fingerprintsMatch, parseJoinLink } from "../profile/join_link.ts";
import { splitHostPort } from "../profile/net_syntax.ts";
import { generateEncryptionKeyPair } from "../seal/keys.ts";
import { ClientError } from "./errors.ts";
import { relayLeafCheck, verifyRelayChain } from "./relay_trust.ts";
import type { ClientState } from "./state.ts";
import type { AccountTransport, ClaimResponse, RelayAddress } from "./transport.ts";

/** Options of {@link enroll}. */
export interface EnrollOptions {
  /** Shown to the admin (`cox devices list`); default "pharos-client". */
  deviceName?: string;
  /** Default "pharos-client". */
  platform?: string;
  now?: () => Date;
}

/** The relay of a `host:port` string, or `bad-response`. */
export function relayAddress(addr: string): RelayAddress {
  const hp = splitHostPort(addr);
  if (!hp) throw new ClientError("bad-response", `relay address "${addr}" is not host:port`);
  return hp;
}

/**
 * Claims the ticket in `link` (the `pharosvpn://enroll?…` deep link) and
 * returns the new client state. Throws JoinLinkError for a bad link,
 * ClientError `relay-untrusted` before anything is sent, `rejected` when the
 * controller refuses the ticket, `fleet-mismatch` / `bad-response` when the
 * answer contradicts the verified chain.
 */
export async function enroll(
  transport: AccountTransport,
  link: string,
  opts: EnrollOptions = {},
): Promise<ClientState> {
  const now = opts.now ?? (() => new Date());
  const ticket = parseJoinLink(link);
  const relay = relayAddress(ticket.relay);
  const proved = await verifyRelayChain(
    await transport.presentedChain(relay),
    ticket.ca,
    relay.host,
    now(),
  );

  const deviceName = opts.deviceName ?? "pharos-client";
  const csr = await generateCsr("device", { name: deviceName });
  const encryption = generateEncryptionKeyPair();
  const wireguard = generateEncryptionKeyPair();
  const channel = transport.open(relay, {
    rootPem: proved.rootPem,
    checkLeaf: relayLeafCheck(proved.fleetCa, relay.host, now),
  });
  const bound = ticket.bind === undefined ? undefined : claimMac(ticket.bind, {
    csrPem: csr.csrPem,
    encryptionPublicKey: encryption.publicKey,
    wireguardPublicKey: wireguard.publicKey,
  });
  let answer: ClaimResponse;
  try {
    answer = await channel.claimEnrollment({
      token: ticket.token,
      csrPem: csr.csrPem,
      deviceName,
      platform: opts.platform ?? "pharos-client",
      encryptionPublicKey: encryption.publicKey,
      wireguardPublicKey: wireguard.publicKey,
      claimMac: bound,
    });
  } finally {
    channel.close();
  }

  if (answer.caFingerprint && !fingerprintsMatch(answer.caFingerprint, ticket.ca)) {
    throw new ClientError(
      "fleet-mismatch",
      "the controller names another root CA than the one the enrollment link pins",
    );
  }
  if (answer.fleetCaPem && !sameCert(answer.fleetCaPem, certDer(proved.fleetCa))) {
    throw new ClientError(
      "fleet-mismatch",
      "the Fleet CA in the claim answer is not the one the relay's chain proved",
    );
  }
  if (answer.signingPublicKey.length !== 32) {
    throw new ClientError("bad-response", "claim answer carries no 32-byte profile-signing key");
  }
  await checkDeviceCert(answer.deviceCertPem, csr.keys.publicKey);
  return {
    relay: ticket.relay,
    caFingerprint: ticket.ca,
    rootPem: proved.rootPem,
    fleetCaPem: proved.fleetCaPem,
    deviceCertPem: answer.deviceCertPem,
    deviceKeyPem: csr.keyPem,
    encryptionKey: encryption.privateKey,
    wireguardKey: wireguard.privateKey,
    signingKey: answer.signingPublicKey,
    deviceName,
  };
}

function sameCert(pem: string, der: Uint8Array): boolean {
  try {
    const got = certDer(parseCertificate(pem));
    return got.length === der.length && got.every((b, i) => b === der[i]);
  } catch {
    return false;
  }
}

/** The issued leaf must be a leaf for the key this device made. */
async function checkDeviceCert(pem: string, ours: CryptoKey): Promise<void> {
  let leaf: x509.X509Certificate;
  try {
    leaf = parseCertificate(pem);
  } catch (e) {
    throw new ClientError("bad-response", `device certificate unreadable: ${(e as Error).message}`);
  }
  if (leaf.getExtension(x509.BasicConstraintsExtension)?.ca) {
    throw new ClientError(
      "bad-response",
      "the controller returned a CA certificate as device cert",
    );
  }
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", ours));
  const got = new Uint8Array(leaf.publicKey.rawData);
  if (got.length !== spki.length || !got.every((b, i) => b === spki[i])) {
    throw new ClientError(
      "bad-response",
      "the device certificate was issued for another key than the one this device made",
    );
  }
}
