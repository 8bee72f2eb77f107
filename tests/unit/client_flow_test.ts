/**
 * core/client: enrollment, sync and tunnel planning against an in-memory
 * AccountSync with a real PKI and real sealed profiles — and every attack
 * the client must refuse (CONTRACTS.md §7.3, §7.4, §7.9), each with its code.
 */
import assert from "node:assert/strict";
import {
  ClientError,
  decodeClientState,
  encodeClientState,
  enroll,
  openProfileResponse,
  planTunnel,
  syncProfile,
} from "../../core/client/mod.ts";
import { fromHex, toBase64, utf8 } from "../../core/encoding.ts";
import * as pki from "../../core/pki/mod.ts";
import { ProfileError } from "../../core/profile/mod.ts";
import {
  encryptionPublicKey,
  generateEncryptionKeyPair,
  generateSigningKeyPair,
  SealError,
  wrapPrivateKey,
} from "../../core/seal/mod.ts";
import { fakeAccountSync, sealSample } from "../support/client_fixture.ts";
import { makeFleet } from "../support/pki_fixture.ts";
import { fill, loadVector } from "./seal_support.ts";

async function refused<T extends Error>(
  p: Promise<unknown>,
  cls: new (...a: never[]) => T,
  code: string,
): Promise<T> {
  const e = await p.then(() => assert.fail(`expected ${code}`), (e) => e);
  assert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
  assert.equal((e as unknown as { code: string }).code, code, (e as Error).message);
  return e as T;
}

Deno.test("client: enroll, sync, plan — only public keys leave, the own WireGuard key is used", async () => {
  const f = await fakeAccountSync();
  const state = await enroll(f, f.link, { deviceName: "laptop" });
  assert.equal(f.claims.length, 1);
  const claim = f.claims[0];
  assert.deepEqual(claim.wireguardPublicKey, encryptionPublicKey(state.wireguardKey));
  assert.deepEqual(claim.encryptionPublicKey, encryptionPublicKey(state.encryptionKey));
  const sent = JSON.stringify(
    { ...claim, csr: claim.csrPem },
    (_k, v) => v instanceof Uint8Array ? toBase64(v) : v,
  );
  for (const secret of [state.wireguardKey, state.encryptionKey]) {
    assert.ok(!sent.includes(toBase64(secret)), "a private key was sent");
  }
  assert.ok(!sent.includes("PRIVATE KEY"), "the TLS key was sent");
  assert.deepEqual(state.signingKey, f.signing.publicKey, "signing key pinned at enrollment");

  const synced = await syncProfile(f, state);
  assert.equal(synced.document.revision, 3);
  assert.equal(synced.state.lastRevision, 3);
  assert.equal(synced.state.user, "usr_demo");
  assert.equal(synced.state.fleetId, "fleet-demo");

  const plan = planTunnel(synced.document, state.wireguardKey);
  assert.equal(plan.privateKey, toBase64(state.wireguardKey));
  assert.match(plan.configText, new RegExp(`PrivateKey = ${escape(plan.privateKey)}\n`));
  assert.ok(!plan.configText.includes("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="));
  assert.deepEqual(plan.peer.endpoint, { host: "203.0.113.7", port: 51820 });
  assert.equal(plan.address, "10.7.0.3/32");

  // The state survives a round trip through its file format.
  const again = decodeClientState(encodeClientState(synced.state));
  assert.deepEqual(again, synced.state);
});

const escape = (s: string) => s.replace(/[+/=]/g, (c) => `\\${c}`);

Deno.test("client: a relay chained to another root is refused before the token is sent", async () => {
  const f = await fakeAccountSync();
  const other = await makeFleet();
  const rogue = await other.issue({ kind: "relay", hosts: ["relay.example"] });
  f.chain = [rogue.cert, other.pki.fleet.cert, other.pki.root.cert].map(pki.certDer);
  await refused(enroll(f, f.link), ClientError, "relay-untrusted");
  assert.equal(f.claims.length, 0, "no claim reached the controller");
});

Deno.test("client: a relay that does not send its root, presents a node cert, or names another host is refused", async () => {
  const f = await fakeAccountSync();
  const good = f.chain;
  f.chain = good.slice(0, 2);
  const e = await refused(enroll(f, f.link), ClientError, "relay-untrusted");
  assert.match(e.message, /pinned by the enrollment link/);

  const node = await f.fleet.issue({ kind: "node", host: "relay.example" });
  f.chain = [pki.certDer(node.cert), good[1], good[2]];
  await refused(enroll(f, f.link), ClientError, "relay-untrusted");

  const elsewhere = await f.fleet.issue({ kind: "relay", hosts: ["other.example"] });
  f.chain = [pki.certDer(elsewhere.cert), good[1], good[2]];
  const e2 = await refused(enroll(f, f.link), ClientError, "relay-untrusted");
  assert.match(e2.message, /does not name the host relay\.example/);

  // A forged leaf: right names, signed by a key that is not the Fleet CA's.
  const rogueFleet = await makeFleet();
  const forged = await rogueFleet.issue({ kind: "relay", hosts: ["relay.example"] });
  f.chain = [pki.certDer(forged.cert), good[1], good[2]];
  await refused(enroll(f, f.link), ClientError, "relay-untrusted");
  assert.equal(f.claims.length, 0);
});

Deno.test("client: a claim answer contradicting the verified chain is refused", async () => {
  const f = await fakeAccountSync();
  const other = await makeFleet();
  f.claimPatch = { fleetCaPem: pki.certPem(other.pki.fleet.cert) };
  await refused(enroll(f, f.link), ClientError, "fleet-mismatch");
  f.claimPatch = { caFingerprint: "ab".repeat(32) };
  await refused(enroll(f, f.link), ClientError, "fleet-mismatch");
  const dev = await f.fleet.issue({ kind: "device", name: "someone-else" });
  f.claimPatch = { deviceCertPem: pki.certPem(dev.cert) };
  await refused(enroll(f, f.link), ClientError, "bad-response");
  f.claimPatch = { signingPublicKey: new Uint8Array(0) };
  await refused(enroll(f, f.link), ClientError, "bad-response");
});

Deno.test("client: tampered bundle, older revision, changed signing key, expired profile are refused", async () => {
  const f = await fakeAccountSync();
  const state = await enroll(f, f.link);
  const first = await syncProfile(f, state);

  // Tamper: one ciphertext character changed.
  f.profilePatch = (r) => {
    const text = utf8.decode(r.ciphertext);
    const i = text.indexOf('"ct":"') + 8;
    const c = text[i] === "A" ? "B" : "A";
    return { ...r, ciphertext: utf8.encode(text.slice(0, i) + c + text.slice(i + 1)) };
  };
  await refused(syncProfile(f, first.state), SealError, "bad-signature");

  // Replay of an older revision (validly signed).
  f.profilePatch = (r) => r;
  f.revision = 2;
  await refused(syncProfile(f, first.state), ProfileError, "stale-revision");
  f.revision = 3;
  assert.equal(
    (await syncProfile(f, first.state)).document.revision,
    3,
    "same revision re-delivered",
  );

  // A new signing key announced in the answer is never adopted …
  const rogue = generateSigningKeyPair();
  f.profilePatch = async (r) => ({
    ...r,
    ciphertext: await sealSample(
      encryptionPublicKey(state.encryptionKey),
      rogue.privateKey,
      9,
      f.expiresAt,
    ),
    signingPublicKey: rogue.publicKey,
  });
  const e = await refused(syncProfile(f, first.state), ClientError, "signing-key-changed");
  assert.match(e.message, /pinned at enrollment/);
  // … and a bundle signed by it fails even when the answer repeats the pinned key.
  f.profilePatch = async (r) => ({
    ...r,
    ciphertext: await sealSample(
      encryptionPublicKey(state.encryptionKey),
      rogue.privateKey,
      9,
      f.expiresAt,
    ),
  });
  await refused(syncProfile(f, first.state), SealError, "bad-signature");

  // Expired.
  f.profilePatch = (r) => r;
  f.revision = 4;
  f.expiresAt = new Date(Date.now() - 1000).toISOString();
  await refused(syncProfile(f, first.state), ProfileError, "expired");
});

Deno.test("client: a profile for another user is refused", async () => {
  const f = await fakeAccountSync();
  const state = await enroll(f, f.link);
  const synced = await syncProfile(f, state);
  f.profilePatch = async (r) => ({
    ...r,
    ciphertext: await sealSample(
      encryptionPublicKey(state.encryptionKey),
      f.signing.privateKey,
      5,
      f.expiresAt,
      "usr_other",
    ),
  });
  await refused(syncProfile(f, synced.state), ProfileError, "wrong-owner");
});

Deno.test("client: the §8 V1 sealed-bundle vector opens only under the pinned key and untouched", async () => {
  const v = loadVector<{ inputs: Record<string, string>; expected: Record<string, string> }>(
    "seal/v1_sealed_bundle.json",
  );
  const f = await fakeAccountSync();
  const base = await enroll(f, f.link);
  const state = {
    ...base,
    encryptionKey: fill(v.inputs.recipient_private_fill, 32),
    signingKey: fromHex(v.expected.signer_pub),
  };
  const res = {
    ciphertext: utf8.encode(v.expected.bundle),
    revision: 1,
    signingPublicKey: new Uint8Array(0),
    wrappedPrivateKey: new Uint8Array(0),
  };
  // The vector's payload is a bare header (no profiles[]): it opens, then the schema refuses it.
  await refused(openProfileResponse(res, state), ProfileError, "invalid-field");
  await refused(
    openProfileResponse(res, { ...state, signingKey: generateSigningKeyPair().publicKey }),
    SealError,
    "bad-signature",
  );
  const tampered = v.expected.bundle.replace('"v":1', '"v":1,"x":0').replace('ct":"Y', 'ct":"Z');
  await refused(
    openProfileResponse({ ...res, ciphertext: utf8.encode(tampered) }, state),
    SealError,
    "bad-signature",
  );
  await refused(
    openProfileResponse({ ...res, wrappedPrivateKey: utf8.encode("{}") }, state),
    ClientError,
    "passphrase-required",
  );
});

Deno.test("client: a damaged state file is refused with bad-state", () => {
  for (const text of ["", "{}", '{"fmt":"pharos-client-state","v":1}', "[1]"]) {
    assert.throws(
      () => decodeClientState(text),
      (e) => e instanceof ClientError && e.code === "bad-state",
    );
  }
});

Deno.test("client: a profile sealed to the account key opens with the passphrase only", async () => {
  const f = await fakeAccountSync();
  const state = await enroll(f, f.link);
  const account = generateEncryptionKeyPair();
  const wrapped = await wrapPrivateKey("correct horse battery", account.privateKey);
  f.profilePatch = async (r) => ({
    ...r,
    ciphertext: await sealSample(account.publicKey, f.signing.privateKey, 3, f.expiresAt),
    wrappedPrivateKey: wrapped,
  });
  await refused(syncProfile(f, state), ClientError, "passphrase-required");
  await refused(syncProfile(f, state, { passphrase: "wrong" }), SealError, "wrong-passphrase");
  const ok = await syncProfile(f, state, { passphrase: "correct horse battery" });
  assert.equal(ok.document.revision, 3);
});
