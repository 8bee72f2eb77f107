/**
 * `relays add` against a real OpenSSH sshd on loopback: the real
 * `relay gen-csr` makes the relay key over SSH in a temp directory standing
 * for /etc/pharos-relay, the controller signs the CSR for the relay's
 * names, installs relay.crt and the CA files `relay run` reads, the start
 * step launches the real relay (loopback ports), and onboarding ends when
 * the relay's tunnel port presents the new certificate to the controller's
 * client certificate. Only then does the relay appear in
 * relayTunnelTargets (what a running controller polls).
 */
import assert from "node:assert/strict";
import { verifyAudit } from "../../controller/audit_verify.ts";
import {
  type OnboardingProgress,
  onboardRelay,
  type RelayOnboarding,
  relayTunnelTargets,
} from "../../controller/onboarding/mod.ts";
import { Relays } from "../../controller/service/relays.ts";
import * as pki from "../../core/pki/mod.ts";
import { ACTOR, DENO, OnboardingLab, ROOT } from "../support/onboarding_fixture.ts";
import { freePort, sshdCapability } from "../support/sshd.ts";

const cap = sshdCapability("SSH onboarding of relays");

Deno.test({
  name: "SSH onboarding of a relay: real sshd, real relay, tunnel target only once onboarded",
  ignore: cap.ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const o = await OnboardingLab.create();
    const dir = o.hostDir("relay");
    const tunnelPort = freePort();
    const clientPort = freePort();
    const relayRun = [
      DENO,
      "run",
      "-A",
      `${ROOT}relay/main.ts`,
      "run",
      "--dir",
      "{dir}",
      "--client-addr",
      `127.0.0.1:${clientPort}`,
      "--tunnel-addr",
      `127.0.0.1:${tunnelPort}`,
      "--egress-addr",
      "off",
    ];
    const request = (events?: OnboardingProgress[]): RelayOnboarding => ({
      target: { user: "root", host: "127.0.0.1", port: o.sshd.port },
      hosts: ["localhost"],
      tunnelPort,
      credentials: { kind: "key" },
      sudo: false,
      setup: o.setup(dir, o.background(dir, relayRun), [
        DENO,
        "run",
        "-A",
        `${ROOT}relay/main.ts`,
        "gen-csr",
        "--dir",
        "{dir}",
      ]),
      ready: { attempts: 120, intervalMs: 500, callTimeoutMs: 5000 },
      onProgress: events ? (e) => events.push(e) : undefined,
    });
    try {
      await t.step("a failed start leaves it out of the tunnel targets", async () => {
        await o.raise("start");
        await assert.rejects(
          onboardRelay(o.state, ACTOR, request()),
          (e: Error & { step?: string }) => e.step === "start",
        );
        await o.clear("start");
        const relay = new Relays(o.service).byHost("127.0.0.1")!;
        assert.equal(relay.onboarding, "failed");
        assert.ok(relay.certSerial);
        assert.deepEqual(relayTunnelTargets(o.state.db), []);
      });

      await t.step("resumed: the relay runs with its own key and the new certificate", async () => {
        const events: OnboardingProgress[] = [];
        const r = await onboardRelay(o.state, ACTOR, request(events));
        assert.equal(r.certificateReused, true); // signed in the failed run already
        assert.equal(events.at(-1)?.status, "finished");
        assert.match(
          events.at(-2)!.message,
          /presents the new certificate \(ALPN pharos-tunnel\/1\)/,
        );
        const relay = r.relay;
        assert.equal(relay.onboarding, "done");
        assert.deepEqual(relay.certHosts, ["127.0.0.1", "localhost"]);
        assert.equal(relay.tunnelPort, tunnelPort);
        assert.ok(relay.sshHostKey?.startsWith("ssh-ed25519 "));

        const keys = await pki.importKeyPair(await Deno.readTextFile(`${dir}/relay.key`));
        const chain = pki.parseCertificates(await Deno.readTextFile(`${dir}/relay.crt`));
        assert.deepEqual(
          new Uint8Array(chain[0].publicKey.rawData),
          new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
        );
        const who = await o.state.pki.trust.verify(chain, { expect: "relay", usage: "serverAuth" });
        assert.equal(who.serial, relay.certSerial);
        for (const f of ["ca.crt", "fleet-ca.crt", "device-ca.crt"]) {
          assert.ok((await Deno.stat(`${dir}/${f}`)).isFile);
        }

        assert.deepEqual(relayTunnelTargets(o.state.db), [{
          id: relay.id,
          host: "127.0.0.1",
          port: tunnelPort,
          kind: "pharos",
          target: `127.0.0.1:${tunnelPort}`,
        }]);
        assert.equal(verifyAudit(o.state.db).ok, true);
      });

      await t.step("a re-run keeps the relay in the targets even when it fails", async () => {
        await o.raise("install");
        await assert.rejects(onboardRelay(o.state, ACTOR, request()));
        await o.clear("install");
        assert.equal(relayTunnelTargets(o.state.db).length, 1);
        const r = await onboardRelay(o.state, ACTOR, request());
        assert.equal(r.relay.onboarding, "done");
        assert.equal(r.certificateReused, true);
      });
    } finally {
      await o.stopService(dir);
      await o.close();
    }
  },
});
