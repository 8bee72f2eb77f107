/**
 * §7.3 (c) through a real relay: a controller with its embedded relay on
 * loopback, real TLS and gRPC. A relay in the middle terminates TLS and so
 * sees the ClaimEnrollment — token and MAC — of the genuine client. Here it
 * keeps that claim and redeems the token with keys of its own (with the
 * genuine MAC, without one, or with the WireGuard key swapped): every try
 * is refused UNAUTHENTICATED and consumes nothing, and the genuine client
 * enrolls afterwards with the link. An unbound ticket (the original app's)
 * is claimed with the token alone.
 */
import assert from "node:assert/strict";
import { grpcTransport } from "../../agent/client/grpc_transport.ts";
import {
  type AccountTransport,
  type ClaimRequest,
  ClientError,
  enroll,
  relayAddress,
  verifyRelayChain,
} from "../../core/client/mod.ts";
import { parseJoinLink } from "../../core/profile/mod.ts";
import { deviceFingerprint, generateCsr, parseCertificate } from "../../core/pki/mod.ts";
import { generateEncryptionKeyPair } from "../../core/seal/mod.ts";
import { relayController } from "../support/client_fixture.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const UNAUTHENTICATED = 16;

/** A transport whose claims stop at the relay: it records them and answers nothing. */
function keptByRelay(seen: ClaimRequest[]): AccountTransport {
  return {
    presentedChain: grpcTransport.presentedChain,
    open(relay, trust) {
      const channel = grpcTransport.open(relay, trust);
      return {
        ...channel,
        claimEnrollment(req) {
          seen.push(req);
          return Promise.reject(new ClientError("unreachable", "the relay kept the claim"));
        },
      };
    },
  };
}

Deno.test(
  "bound ticket through the embedded relay: a relay redeeming the token with its own keys is refused; the link's holder enrolls",
  opts,
  async () => {
    const fx = await relayController({ prefix: "pharos-claim-binding-" });
    const { ctl } = fx;
    try {
      const { user, link } = fx.invite("cleo@example.com");
      const ticket = parseJoinLink(link);
      assert.ok(ticket.bind, "tickets are bound by default");

      // The genuine client's claim, as the relay in the middle sees it.
      const seen: ClaimRequest[] = [];
      await assert.rejects(enroll(keptByRelay(seen), link), /the relay kept the claim/);
      assert.equal(seen.length, 1);
      const genuine = seen[0];
      assert.equal(genuine.token, ticket.token);
      assert.match(genuine.claimMac ?? "", /^[A-Za-z0-9_-]{43}$/);
      assert.ok(!JSON.stringify(genuine).includes(ticket.bind), "the link secret is never sent");

      // The relay redeems the token through the controller with keys of its own.
      const relay = relayAddress(ticket.relay);
      const proved = await verifyRelayChain(
        await grpcTransport.presentedChain(relay),
        ticket.ca,
        relay.host,
        new Date(),
      );
      const channel = grpcTransport.open(relay, { rootPem: proved.rootPem, checkLeaf: () => {} });
      try {
        const own = await generateCsr("device", { name: "relay-made" });
        const ownEnc = generateEncryptionKeyPair().publicKey;
        const ownWg = generateEncryptionKeyPair().publicKey;
        const attacks: ClaimRequest[] = [
          {
            ...genuine,
            csrPem: own.csrPem,
            encryptionPublicKey: ownEnc,
            wireguardPublicKey: ownWg,
          },
          {
            ...genuine,
            csrPem: own.csrPem,
            encryptionPublicKey: ownEnc,
            wireguardPublicKey: ownWg,
            claimMac: undefined,
          },
          { ...genuine, wireguardPublicKey: ownWg },
          { ...genuine, encryptionPublicKey: ownEnc },
        ];
        for (const [i, forged] of attacks.entries()) {
          await assert.rejects(
            channel.claimEnrollment(forged),
            (e) =>
              e instanceof ClientError && e.code === "rejected" &&
              e.grpcCode === UNAUTHENTICATED && /bound to its link/.test(e.message),
            `attack ${i}`,
          );
        }
        assert.equal(ctl.accounts.listDevices().length, 0, "no refused claim enrolled a device");
      } finally {
        channel.close();
      }

      // Nothing was consumed: the link's holder enrolls now.
      const state = await enroll(grpcTransport, link, { deviceName: "cleo-laptop" });
      const device = ctl.devices.byFingerprint(
        await deviceFingerprint(parseCertificate(state.deviceCertPem)),
      );
      assert.equal(device?.userId, user.id);

      // An unbound ticket: the token alone redeems it (the original app's claim).
      const plain = parseJoinLink(fx.link("cleo@example.com", { unbound: true }));
      assert.equal(plain.bind, undefined);
      const anyone = grpcTransport.open(relay, { rootPem: proved.rootPem, checkLeaf: () => {} });
      try {
        const csr = await generateCsr("device", { name: "old-app" });
        const r = await anyone.claimEnrollment({
          token: plain.token,
          csrPem: csr.csrPem,
          deviceName: "old-app",
          platform: "caravel",
          encryptionPublicKey: generateEncryptionKeyPair().publicKey,
          wireguardPublicKey: generateEncryptionKeyPair().publicKey,
        });
        assert.match(r.deviceCertPem, /BEGIN CERTIFICATE/);
      } finally {
        anyone.close();
      }
    } finally {
      await fx.close();
    }
  },
);
