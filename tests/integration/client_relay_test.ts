/**
 * The reference client (`deno task client`, in-process) against a real
 * controller through its embedded relay on loopback: real TLS, real gRPC,
 * the accounts service. Enrollment checks the relay's chain before the
 * token leaves (a link pinning another root sends nothing, the ticket stays
 * good), the profile decrypts, a reused ticket is refused, state is 0600,
 * and a revoked device is refused by the relay. The account key is replaced
 * only with proof of the old one, answered through the relay.
 */
import assert from "node:assert/strict";
import { runClientCli } from "../../agent/client/cli.ts";
import { buildJoinLink, parseJoinLink } from "../../core/profile/mod.ts";
import { relayController } from "../support/client_fixture.ts";
import { deviceFingerprint, parseCertificate } from "../../core/pki/mod.ts";
import { loadState } from "../../agent/client/state_file.ts";
import { grpcTransport } from "../../agent/client/grpc_transport.ts";
import {
  answerKeyChallenge,
  ClientError,
  keyChallengeBinding,
  openChannel,
} from "../../core/client/mod.ts";
import { toBase64Url } from "../../core/encoding.ts";
import {
  encryptionPublicKey,
  generateEncryptionKeyPair,
  unwrapPrivateKey,
  wrapPrivateKey,
} from "../../core/seal/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

function io() {
  const out: string[] = [], err: string[] = [];
  return { out, err, io: { out: (t: string) => out.push(t), err: (l: string) => err.push(l) } };
}

Deno.test(
  "client through the embedded relay: enroll, sync, reuse refused, revoke refused",
  opts,
  async () => {
    const fx = await relayController({ prefix: "pharos-client-test-" });
    const { ctl, dir } = fx;
    try {
      const { user, link } = fx.invite("alice@example.com");
      assert.equal(parseJoinLink(link).relay, `127.0.0.1:${fx.port}`, "the link names the relay");
      const state = `${dir}/client`;

      // A link pinning another root: refused before the token is sent.
      const wrong = buildJoinLink({ ...parseJoinLink(link), ca: "ab".repeat(32) });
      const a = io();
      assert.equal(
        await runClientCli(["enroll", wrong, "--state", `${dir}/other`], a.io, () => undefined),
        1,
      );
      assert.match(
        a.err.join("\n"),
        /relay not trusted: none of its certificates is the root CA pinned/,
      );

      // The real link still works: the token never left the first time.
      const b = io();
      const code = await runClientCli(
        ["enroll", link, "--state", state, "--name", "laptop"],
        b.io,
        () => undefined,
      );
      assert.equal(code, 0, b.err.join("\n"));
      assert.match(b.out.join(""), new RegExp(`^enrolled as ${user.id}; profile revision \\d+;`));
      assert.equal((await Deno.stat(`${state}/state.json`)).mode! & 0o777, 0o600);
      assert.equal((await Deno.stat(state)).mode! & 0o777, 0o700);

      // Single use.
      const c = io();
      assert.equal(
        await runClientCli(["enroll", link, "--state", `${dir}/again`], c.io, () => undefined),
        1,
      );
      assert.match(c.err.join("\n"), /ClaimEnrollment refused/);

      const d = io();
      assert.equal(
        await runClientCli(["sync", "--state", state], d.io, () => undefined),
        0,
        d.err.join("\n"),
      );
      assert.match(d.out.join(""), /^profile revision \d+; /);

      // Revoked: the relay (sharing the controller's list) refuses the device.
      const saved = await loadState(state);
      const device = ctl.devices.byFingerprint(
        await deviceFingerprint(parseCertificate(saved.deviceCertPem)),
      );
      assert.ok(device, "the device is registered under its certificate's fingerprint");
      assert.equal(device.userId, user.id);
      await ctl.accounts.revokeDevice(device.id, "cli:test", "lost");
      const e = io();
      assert.equal(await runClientCli(["sync", "--state", state], e.io, () => undefined), 1);
      assert.match(
        e.err.join("\n"),
        /error: (Authenticate|GetProfile) refused: .*(revoked|refused)/i,
      );
    } finally {
      await fx.close();
    }
  },
);

Deno.test(
  "client through the embedded relay: the account key is replaced only with proof of the old one",
  opts,
  async () => {
    const fx = await relayController({ prefix: "pharos-client-test-" });
    const { ctl, dir } = fx;
    try {
      const { user, link } = fx.invite("bea@example.com");
      const state = `${dir}/client`;
      const OLD = "the old passphrase", NEW = "the new passphrase";
      const env = (vars: Record<string, string>) => (n: string) => vars[n];
      const accountKey = () => {
        const row = ctl.state.db.prepare(
          "SELECT public_key, wrapped_private_key FROM users WHERE id = ?",
        ).get(user.id) as { public_key: Uint8Array | null; wrapped_private_key: string | null };
        return {
          pub: row.public_key && new Uint8Array(row.public_key),
          wrapped: row.wrapped_private_key,
        };
      };
      const client = async (args: string[], vars: Record<string, string> = {}) => {
        const c = io();
        const code = await runClientCli([...args, "--state", state], c.io, env(vars));
        return { code, out: c.out.join(""), err: c.err.join("\n") };
      };

      const e = await client(["enroll", link]);
      assert.equal(e.code, 0, e.err);
      const l = await client(["login"], { PHAROS_PASSPHRASE: OLD });
      assert.equal(l.code, 0, l.err);
      const first = accountKey();
      assert.ok(first.pub, "login with a passphrase enrolled the account key");
      assert.equal((await loadState(state)).accountWrappedKey, first.wrapped);

      // The CLI answers the challenge with the key it holds.
      const r = await client(["rekey"], { PHAROS_PASSPHRASE: OLD, PHAROS_NEW_PASSPHRASE: NEW });
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, new RegExp(`^account key of ${user.id} replaced;`));
      const second = accountKey();
      const held = await loadState(state);
      assert.equal(held.accountWrappedKey, second.wrapped);
      assert.deepEqual(
        encryptionPublicKey(await unwrapPrivateKey(NEW, held.accountWrappedKey!)),
        second.pub,
      );
      assert.notDeepEqual(second.pub, first.pub);

      // Without the current passphrase: one clear line, exit 1, key unchanged.
      const n = await client(["rekey"], { PHAROS_NEW_PASSPHRASE: OLD });
      assert.equal(n.code, 1);
      assert.match(n.err, /^error: the account already has a key: give its current passphrase/);
      assert.deepEqual(accountKey(), second);

      // On the wire, through the relay: no proof, a wrong proof, a replayed proof.
      const channel = openChannel(grpcTransport, held);
      try {
        const session = held.session!;
        const k3 = generateEncryptionKeyPair();
        const w3 = await wrapPrivateKey(NEW, k3.privateKey);
        const precondition = async (proof?: string) => {
          const err = await channel.enrollKeys(k3.publicKey, w3, session, proof).then(
            () => assert.fail("the replacement was taken"),
            (x) => x,
          );
          assert.ok(err instanceof ClientError && err.grpcCode === 9, String(err));
          assert.deepEqual(accountKey(), second, "the account key is unchanged");
          return err.trailers["pharos-key-challenge"];
        };
        const bound = keyChallengeBinding(k3.publicKey, w3);
        assert.ok(await precondition(), "a refusal carries the challenge trailer");
        await precondition(toBase64Url(new Uint8Array(64)));
        // A relay spending the device's answer on its own key: refused, and the
        // device will not answer a challenge issued for another key.
        const k4 = generateEncryptionKeyPair();
        const w4 = await wrapPrivateKey(NEW, k4.privateKey);
        const stolen = await answerKeyChallenge(await precondition(), held, NEW, bound);
        const swapped = await channel.enrollKeys(k4.publicKey, w4, session, stolen).then(
          () => assert.fail("a proof for another key was taken"),
          (x) => x,
        );
        assert.ok(swapped instanceof ClientError && swapped.grpcCode === 9, String(swapped));
        assert.deepEqual(accountKey(), second);
        const forRelay = swapped.trailers["pharos-key-challenge"];
        await assert.rejects(
          answerKeyChallenge(forRelay, held, NEW, bound),
          (x) => x instanceof ClientError && x.code === "key-challenge-mismatch",
        );

        const challenge = await precondition();
        const proof = await answerKeyChallenge(challenge, held, NEW, bound);
        await channel.enrollKeys(k3.publicKey, w3, session, proof);
        const third = accountKey();
        assert.deepEqual(third.pub, k3.publicKey, "the proof was taken once");
        // Replayed for yet another key: refused, the third key stays.
        const replay = await channel.enrollKeys(k4.publicKey, w4, session, proof).then(
          () => assert.fail("a replayed proof was taken"),
          (x) => x,
        );
        assert.ok(replay instanceof ClientError && replay.grpcCode === 9, String(replay));
        assert.deepEqual(accountKey(), third);

        // The CLI's copy is now stale: a clear refusal, nothing changed.
        const s = await client(["rekey"], { PHAROS_PASSPHRASE: NEW, PHAROS_NEW_PASSPHRASE: OLD });
        assert.equal(s.code, 1);
        assert.match(s.err, /^error: the account key this device holds is no longer the account's/);
        assert.deepEqual(accountKey(), third);
      } finally {
        channel.close();
      }
    } finally {
      await fx.close();
    }
  },
);
