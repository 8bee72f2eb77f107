/**
 * core/client's account key (CONTRACTS.md §7.3) against an in-memory
 * AccountSync that runs the controller's own challenge logic: the key made
 * at login is kept wrapped in the state; replacing it answers the
 * challenge with that key; every way of not holding the old key ends in
 * one typed error and leaves the controller's key as it was.
 */
import assert from "node:assert/strict";
import {
  ClientError,
  decodeClientState,
  encodeClientState,
  enroll,
  enrollAccountKey,
  keyChallengeBinding,
  login,
  openChannel,
} from "../../core/client/mod.ts";
import { concat, toBase64, utf8 } from "../../core/encoding.ts";
import {
  encodeSealedBundle,
  encryptionPublicKey,
  generateEncryptionKeyPair,
  generateSigningKeyPair,
  SealError,
  sealProfile,
  unwrapPrivateKey,
  wrapPrivateKey,
} from "../../core/seal/mod.ts";
import { type FakeAccountSync, fakeAccountSync } from "../support/client_fixture.ts";

const OLD = "old passphrase, long enough";
const NEW = "new passphrase, long enough";

async function refused(p: Promise<unknown>, code: string): Promise<Error> {
  const e = await p.then(() => assert.fail(`expected ${code}`), (e) => e);
  assert.ok(e instanceof ClientError || e instanceof SealError, String(e));
  assert.equal(e.code, code, e.message);
  return e;
}

/** An enrolled device that logged in with OLD and so made the account key. */
async function enrolledWithKey() {
  const f = await fakeAccountSync();
  const enrolled = await enroll(f, f.link);
  const channel = openChannel(f, enrolled);
  const state = await login(channel, enrolled, { passphrase: OLD });
  return { f, channel, state };
}

const keyOf = (f: FakeAccountSync) => ({ ...f.account! });

Deno.test("account key: login makes it on the device, sends the public half, keeps the wrapped form", async () => {
  const { f, state } = await enrolledWithKey();
  assert.ok(f.account, "the controller received a key");
  assert.ok(state.accountWrappedKey, "the state keeps the wrapped key");
  assert.equal(utf8.decode(f.account.wrapped), state.accountWrappedKey);
  const priv = await unwrapPrivateKey(OLD, state.accountWrappedKey);
  assert.deepEqual(encryptionPublicKey(priv), f.account.publicKey);
  // It survives the state file.
  assert.equal(
    decodeClientState(encodeClientState(state)).accountWrappedKey,
    state.accountWrappedKey,
  );
});

Deno.test("account key: replaced with proof of the old one; the new one opens with the new passphrase", async () => {
  const { f, channel, state } = await enrolledWithKey();
  const before = keyOf(f);
  const next = await enrollAccountKey(channel, state, state.session!, {
    passphrase: NEW,
    oldPassphrase: OLD,
  });
  assert.notDeepEqual(f.account!.publicKey, before.publicKey, "the key changed");
  assert.equal(next.accountWrappedKey, utf8.decode(f.account!.wrapped));
  const priv = await unwrapPrivateKey(NEW, next.accountWrappedKey!);
  assert.deepEqual(encryptionPublicKey(priv), f.account!.publicKey);
  await refused(unwrapPrivateKey(OLD, next.accountWrappedKey!), "wrong-passphrase");
  // And again from the new state, with the new passphrase as the old one.
  const second = keyOf(f);
  await enrollAccountKey(channel, next, next.session!, { passphrase: OLD, oldPassphrase: NEW });
  assert.notDeepEqual(f.account!.publicKey, second.publicKey);
});

Deno.test("account key: without the old key, its passphrase, or with a stale key: typed error, key unchanged", async () => {
  const { f, channel, state } = await enrolledWithKey();
  const before = keyOf(f);
  const session = state.session!;
  const attempt = (s = state, opts: { oldPassphrase?: string } = { oldPassphrase: OLD }) =>
    enrollAccountKey(channel, s, session, { passphrase: NEW, ...opts });

  // Another device that never held the account key.
  const e = await refused(
    attempt({ ...state, accountWrappedKey: undefined }),
    "account-key-unknown",
  );
  assert.match(e.message, /this device does not hold it/);
  assert.deepEqual(keyOf(f), before);

  await refused(attempt(state, {}), "passphrase-required");
  assert.deepEqual(keyOf(f), before);
  await refused(attempt(state, { oldPassphrase: "not the passphrase" }), "wrong-passphrase");
  assert.deepEqual(keyOf(f), before);

  // The account key was changed elsewhere: this device's copy is stale.
  const other = generateEncryptionKeyPair();
  f.account = {
    publicKey: other.publicKey,
    wrapped: await wrapPrivateKey(OLD, other.privateKey),
  };
  const moved = keyOf(f);
  await refused(attempt(), "account-key-stale");
  assert.deepEqual(keyOf(f), moved);
});

Deno.test("account key: a challenge not signed by the pinned key, bound to another key, or none at all, is refused", async () => {
  const { f, channel, state } = await enrolledWithKey();
  const before = keyOf(f);
  const attempt = () =>
    enrollAccountKey(channel, state, state.session!, { passphrase: NEW, oldPassphrase: OLD });

  // A relay that seals its own nonce to the (public) old key and signs it itself.
  const rogue = generateSigningKeyPair();
  f.keyChallenge = async () =>
    toBase64(utf8.encode(encodeSealedBundle(
      await sealProfile(new Uint8Array(32).fill(7), before.publicKey, rogue.privateKey),
    )));
  await refused(attempt(), "bad-signature");
  assert.deepEqual(keyOf(f), before);

  // The controller's own challenge, signed with the pinned key, but issued for
  // another key than the one this device asked to install (a relay's).
  const theirs = keyChallengeBinding(generateEncryptionKeyPair().publicKey, utf8.encode("{}"));
  f.keyChallenge = async () =>
    toBase64(utf8.encode(encodeSealedBundle(
      await sealProfile(concat(new Uint8Array(32), theirs), before.publicKey, f.signing.privateKey),
    )));
  await refused(attempt(), "key-challenge-mismatch");
  assert.deepEqual(keyOf(f), before);

  f.keyChallenge = () => "";
  await refused(attempt(), "bad-response");
  f.keyChallenge = () => "not base64!";
  await refused(attempt(), "bad-response");
  assert.deepEqual(keyOf(f), before);
});

Deno.test("account key: a state file with a damaged wrapped key is refused", async () => {
  const { state } = await enrolledWithKey();
  const text = encodeClientState(state).replace(
    /"accountWrappedKey": "[^\n]*"/,
    '"accountWrappedKey": "{\\"v\\":1}"',
  );
  assert.notEqual(text, encodeClientState(state));
  assert.throws(
    () => decodeClientState(text),
    (e) => e instanceof ClientError && e.code === "bad-state",
  );
});
