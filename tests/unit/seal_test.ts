import assert from "node:assert/strict";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { fromBase64, toBase64, toHex, utf8 } from "../../core/encoding.ts";
import { PharosError } from "../../core/errors.ts";
import {
  decodeSealedBundle,
  decodeWrappedKey,
  deriveArgon2idKey,
  encodeSealedBundle,
  encodeWrappedKey,
  encryptionPublicKey,
  generateEncryptionKeyPair,
  generateSigningKeyPair,
  KEYWRAP_INFO,
  MAX_SEALED_BUNDLE_BYTES,
  MAX_WRAPPED_KEY_BYTES,
  openProfile,
  openSealedBundle,
  type SealedBundle,
  SealError,
  sealProfile,
  signedMessage,
  signingPublicKey,
  unwrapPrivateKey,
  wrapPrivateKey,
} from "../../core/seal/mod.ts";
import {
  ed25519Sign,
  ed25519Verify,
  x25519 as webX25519,
  x25519Ephemeral,
} from "../../core/seal/curves.ts";
import { fill, fixedRandom, loadVector, mutateJson, mutateText, prng } from "./seal_support.ts";

interface V1 {
  inputs: Record<string, string>;
  expected: Record<string, string>;
}
const v1 = loadVector<V1>("seal/v1_sealed_bundle.json");
const v2 = loadVector<V1>("seal/v2_wrapped_key.json");

const v1Random = fixedRandom({
  "data-key": v1.inputs.data_key_fill,
  nonce: v1.inputs.nonce_fill,
  "ephemeral-key": v1.inputs.ephemeral_private_fill,
  "wrap-nonce": v1.inputs.wrap_nonce_fill,
});
const recipientPrivate = fill(v1.inputs.recipient_private_fill, 32);
const signingSeed = fill(v1.inputs.signing_seed_fill, 32);
const plaintext = utf8.encode(v1.inputs.plaintext);

function sealV1(): Promise<SealedBundle> {
  return sealProfile(plaintext, encryptionPublicKey(recipientPrivate), signingSeed, v1Random);
}

async function expectSealError(fn: () => unknown, code: string): Promise<SealError> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof SealError, `expected SealError, got ${e}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected SealError ${code}, nothing thrown`);
}

Deno.test("V1: intermediate values of the key wrap match the vector", () => {
  const e = fill(v1.inputs.ephemeral_private_fill, 32);
  const recipientPub = encryptionPublicKey(recipientPrivate);
  assert.equal(toHex(recipientPub), v1.expected.recipient_pub);
  assert.equal(toHex(x25519.getPublicKey(e)), v1.expected.epk);
  const shared = x25519.getSharedSecret(e, recipientPub);
  assert.equal(toHex(shared), v1.expected.shared);
  assert.equal(
    toHex(hkdf(sha256, shared, new Uint8Array(0), utf8.encode(KEYWRAP_INFO), 32)),
    v1.expected.wrap_key,
  );
  assert.equal(toHex(signingPublicKey(signingSeed)), v1.expected.signer_pub);
});

Deno.test("V1: sealing with the vector's randomness reproduces M, sig and the bundle byte for byte", async () => {
  const bundle = await sealV1();
  assert.equal(utf8.decode(signedMessage(bundle)), v1.expected.signed_message);
  assert.equal(toHex(bundle.sig), v1.expected.sig);
  assert.equal(encodeSealedBundle(bundle), v1.expected.bundle);
});

Deno.test("V1: the vector bundle opens with the pinned key, from text and from bytes", async () => {
  const pinned = Uint8Array.fromHex(v1.expected.signer_pub);
  assert.deepEqual(await openProfile(v1.expected.bundle, recipientPrivate, pinned), plaintext);
  assert.deepEqual(
    await openProfile(utf8.encode(v1.expected.bundle), recipientPrivate, pinned),
    plaintext,
  );
});

Deno.test("seal/open round trip with fresh keys and system randomness", async () => {
  const recipient = generateEncryptionKeyPair();
  const signer = generateSigningKeyPair();
  const message = utf8.encode(JSON.stringify({ profiles: [], note: "ünïcödé ✓" }));
  const a = await sealProfile(message, recipient.publicKey, signer.privateKey);
  const b = await sealProfile(message, recipient.publicKey, signer.privateKey);
  assert.notDeepEqual(a.epk, b.epk, "fresh ephemeral key per seal");
  assert.notDeepEqual(a.n, b.n, "fresh nonce per seal");
  const text = encodeSealedBundle(a);
  assert.deepEqual(decodeSealedBundle(text), a);
  assert.deepEqual(await openProfile(text, recipient.privateKey, signer.publicKey), message);
  assert.deepEqual(await openSealedBundle(b, recipient.privateKey, signer.publicKey), message);
});

Deno.test("flipping any single byte of epk, wn, wk, n, ct or sig fails to open (bad-signature)", async () => {
  const bundle = await sealV1();
  const pinned = signingPublicKey(signingSeed);
  let cases = 0;
  for (const field of ["epk", "wn", "wk", "n", "ct", "sig"] as const) {
    for (let i = 0; i < bundle[field].length; i++) {
      const bytes = bundle[field].slice();
      bytes[i] ^= 0x01;
      const text = encodeSealedBundle({ ...bundle, [field]: bytes });
      await expectSealError(() => openProfile(text, recipientPrivate, pinned), "bad-signature");
      cases++;
    }
  }
  assert.equal(cases, 32 + 24 + 48 + 24 + bundle.ct.length + 64);
});

Deno.test("flipping any single byte of the encoded bundle text never opens", async () => {
  const text = v1.expected.bundle;
  const pinned = signingPublicKey(signingSeed);
  for (let i = 0; i < text.length; i++) {
    const mutated = text.slice(0, i) + String.fromCharCode(text.charCodeAt(i) ^ 0x01) +
      text.slice(i + 1);
    await assert.rejects(
      () => openProfile(mutated, recipientPrivate, pinned),
      SealError,
      `byte ${i}`,
    );
  }
});

Deno.test("wrong recipient key gives wrong-recipient", async () => {
  const other = generateEncryptionKeyPair();
  await expectSealError(
    async () => openSealedBundle(await sealV1(), other.privateKey, signingPublicKey(signingSeed)),
    "wrong-recipient",
  );
});

Deno.test("a bundle signed by any key other than the pinned one is rejected (§7.3 b)", async () => {
  const relay = generateSigningKeyPair();
  const forged = await sealProfile(
    plaintext,
    encryptionPublicKey(recipientPrivate),
    relay.privateKey,
  );
  // The forger's key would verify it; the pinned controller key does not.
  assert.deepEqual(await openSealedBundle(forged, recipientPrivate, relay.publicKey), plaintext);
  await expectSealError(
    () => openSealedBundle(forged, recipientPrivate, signingPublicKey(signingSeed)),
    "bad-signature",
  );
});

Deno.test("a validly signed bundle whose ciphertext is corrupt gives tampered-ciphertext", async () => {
  const bundle = await sealV1();
  const ct = bundle.ct.slice();
  ct[0] ^= 0x80;
  const unsigned = { ...bundle, ct };
  const resigned = { ...unsigned, sig: ed25519.sign(signedMessage(unsigned), signingSeed) };
  await expectSealError(
    () => openSealedBundle(resigned, recipientPrivate, signingPublicKey(signingSeed)),
    "tampered-ciphertext",
  );
});

Deno.test("the verifier rebuilds M: whitespace, field order and extra fields do not matter", async () => {
  const parsed = JSON.parse(v1.expected.bundle);
  const reordered = JSON.stringify(
    {
      sig: parsed.sig,
      ct: parsed.ct,
      extra: { x: 1 },
      n: parsed.n,
      wk: parsed.wk,
      wn: parsed.wn,
      epk: parsed.epk,
      v: 1,
    },
    null,
    3,
  );
  assert.deepEqual(
    await openProfile(reordered, recipientPrivate, signingPublicKey(signingSeed)),
    plaintext,
  );
});

Deno.test("version other than 1 gives unknown-version before any crypto", async () => {
  const parsed = JSON.parse(v1.expected.bundle);
  for (const v of [0, 2, 99]) {
    await expectSealError(
      () => decodeSealedBundle(JSON.stringify({ ...parsed, v })),
      "unknown-version",
    );
  }
});

Deno.test("malformed bundles give malformed-bundle", async () => {
  const parsed = JSON.parse(v1.expected.bundle);
  const cases: unknown[] = [
    "not json",
    "[]",
    "null",
    "42",
    JSON.stringify({ ...parsed, v: "1" }),
    JSON.stringify({ ...parsed, v: 1.5 }),
    ...["epk", "wn", "wk", "n", "ct", "sig"].flatMap((k) => [
      JSON.stringify({ ...parsed, [k]: undefined }),
      JSON.stringify({ ...parsed, [k]: null }),
      JSON.stringify({ ...parsed, [k]: 7 }),
      JSON.stringify({ ...parsed, [k]: "not*base64" }),
      JSON.stringify({ ...parsed, [k]: toBase64(fill(1, 15)) }),
    ]),
    JSON.stringify({ ...parsed, epk: parsed.epk.replaceAll("=", "") }),
  ];
  for (const c of cases) {
    await expectSealError(() => decodeSealedBundle(c as string), "malformed-bundle");
  }
  await expectSealError(() => decodeSealedBundle(new Uint8Array([0xff, 0xfe])), "malformed-bundle");
});

Deno.test("a low-order epk in a signed bundle is malformed, a low-order recipient key is refused", async () => {
  const bundle = await sealV1();
  const unsigned = { ...bundle, epk: new Uint8Array(32) };
  const signed = { ...unsigned, sig: ed25519.sign(signedMessage(unsigned), signingSeed) };
  await expectSealError(
    () => openSealedBundle(signed, recipientPrivate, signingPublicKey(signingSeed)),
    "malformed-bundle",
  );
  await expectSealError(() => sealProfile(plaintext, new Uint8Array(32), signingSeed), "bad-key");
});

Deno.test("oversized bundles are rejected before parsing", async () => {
  // Not JSON at all: a parser would say malformed, the size check says too large.
  const huge = "x".repeat(MAX_SEALED_BUNDLE_BYTES + 1);
  await expectSealError(() => decodeSealedBundle(huge), "input-too-large");
  await expectSealError(
    () => decodeSealedBundle(new Uint8Array(MAX_SEALED_BUNDLE_BYTES + 1)),
    "input-too-large",
  );
});

Deno.test("keys of the wrong length and bad randomness give typed errors", async () => {
  const bundle = await sealV1();
  await expectSealError(() => encryptionPublicKey(new Uint8Array(31)), "bad-key");
  await expectSealError(() => signingPublicKey(new Uint8Array(33)), "bad-key");
  await expectSealError(
    () => openSealedBundle(bundle, recipientPrivate, new Uint8Array(31)),
    "bad-key",
  );
  await expectSealError(
    () =>
      sealProfile(plaintext, encryptionPublicKey(recipientPrivate), signingSeed, () => fill(1, 3)),
    "bad-randomness",
  );
  const kp = generateEncryptionKeyPair(fixedRandom({ "private-key": "11" }));
  assert.equal(toHex(kp.publicKey), v1.expected.recipient_pub);
});

Deno.test("fuzz: 2,000 mutated bundles either open to the plaintext or fail with a SealError", async () => {
  const r = prng(0x5ea1);
  const pinned = signingPublicKey(signingSeed);
  const parsed = JSON.parse(v1.expected.bundle);
  let opened = 0;
  for (let i = 0; i < 2000; i++) {
    const input = i % 2 === 0
      ? mutateText(v1.expected.bundle, r)
      : JSON.stringify(mutateJson(parsed, r));
    try {
      assert.deepEqual(await openProfile(input, recipientPrivate, pinned), plaintext);
      opened++;
    } catch (e) {
      assert.ok(e instanceof SealError, `case ${i}: ${e}`);
    }
  }
  // Only semantically neutral mutations (whitespace, extra fields) may open.
  assert.ok(opened < 400, `${opened} mutated bundles opened`);
});

Deno.test("V2: passphrase wrap reproduces the KEK and the blob byte for byte, and unwraps", async () => {
  const salt = fill(v2.inputs.salt_fill, 16);
  assert.equal(toHex(await deriveArgon2idKey(v2.inputs.passphrase, salt)), v2.expected.kek);
  const blob = await wrapPrivateKey(
    v2.inputs.passphrase,
    fill(v2.inputs.private_fill, 32),
    fixedRandom({ salt: v2.inputs.salt_fill, nonce: v2.inputs.nonce_fill }),
  );
  assert.equal(utf8.decode(blob), v2.expected.blob);
  assert.deepEqual(
    await unwrapPrivateKey(v2.inputs.passphrase, v2.expected.blob),
    fill(v2.inputs.private_fill, 32),
  );
});

Deno.test("wrong passphrase gives wrong-passphrase", async () => {
  await expectSealError(
    () => unwrapPrivateKey("correct horse battery stapler", v2.expected.blob),
    "wrong-passphrase",
  );
});

Deno.test("wrap/unwrap round trip with system randomness and a non-ASCII passphrase", async () => {
  const key = generateEncryptionKeyPair().privateKey;
  const blob = await wrapPrivateKey("pässwörd ✓", key);
  const w = decodeWrappedKey(blob);
  assert.equal(w.salt.length, 16);
  assert.equal(encodeWrappedKey(w), utf8.decode(blob));
  assert.deepEqual(await unwrapPrivateKey("pässwörd ✓", blob), key);
});

Deno.test("malformed, oversized or unknown-version wrapped keys fail before Argon2id", async () => {
  const parsed = JSON.parse(v2.expected.blob);
  const malformed = [
    "nope",
    "[]",
    JSON.stringify({ ...parsed, salt: undefined }),
    JSON.stringify({ ...parsed, salt: toBase64(fill(1, 8)) }),
    JSON.stringify({ ...parsed, n: 5 }),
    JSON.stringify({ ...parsed, ct: toBase64(fill(1, 47)) }),
    JSON.stringify({ ...parsed, v: "1" }),
  ];
  for (const c of malformed) {
    await expectSealError(() => unwrapPrivateKey("x", c), "malformed-wrapped-key");
  }
  await expectSealError(
    () => unwrapPrivateKey("x", JSON.stringify({ ...parsed, v: 2 })),
    "unknown-version",
  );
  await expectSealError(
    () => unwrapPrivateKey("x", "{".repeat(MAX_WRAPPED_KEY_BYTES + 1)),
    "input-too-large",
  );
  await expectSealError(
    () => unwrapPrivateKey("x".repeat(5000), v2.expected.blob),
    "input-too-large",
  );
  await expectSealError(() => wrapPrivateKey("x", fill(1, 16)), "bad-key");
});

Deno.test("every seal failure is a PharosError with a distinct stable code", async () => {
  const codes = new Set<string>();
  const record = async (fn: () => unknown) => {
    try {
      await fn();
    } catch (e) {
      assert.ok(e instanceof PharosError);
      codes.add(e.code);
    }
  };
  const pinned = signingPublicKey(signingSeed);
  const bundle = await sealV1();
  await record(() => openSealedBundle(bundle, generateEncryptionKeyPair().privateKey, pinned));
  await record(() => openSealedBundle({ ...bundle, sig: fill(0, 64) }, recipientPrivate, pinned));
  await record(() => decodeSealedBundle("{}"));
  await record(() =>
    decodeSealedBundle(JSON.stringify({ ...JSON.parse(v1.expected.bundle), v: 2 }))
  );
  assert.deepEqual(
    [...codes].sort(),
    ["bad-signature", "malformed-bundle", "unknown-version", "wrong-recipient"],
  );
});

Deno.test("V1: ct is encrypted under the injected data key and nonce", async () => {
  const bundle = await sealV1();
  assert.deepEqual(fromBase64(JSON.parse(v1.expected.bundle).n, "n"), bundle.n);
  assert.deepEqual(
    xchacha20poly1305(fill(v1.inputs.data_key_fill, 32), bundle.n).decrypt(bundle.ct),
    plaintext,
  );
});

Deno.test("WebCrypto X25519/Ed25519 agree with @noble/curves on random keys", async () => {
  const r = prng(0xc0de);
  for (let i = 0; i < 20; i++) {
    const a = Uint8Array.from({ length: 32 }, () => r.int(256));
    const b = Uint8Array.from({ length: 32 }, () => r.int(256));
    const msg = Uint8Array.from({ length: r.int(300) }, () => r.int(256));
    const eph = await x25519Ephemeral(a, x25519.getPublicKey(b));
    assert.deepEqual(eph.publicKey, x25519.getPublicKey(a));
    assert.deepEqual(eph.shared, x25519.getSharedSecret(a, x25519.getPublicKey(b)));
    assert.deepEqual(
      await webX25519(a, x25519.getPublicKey(b)),
      x25519.getSharedSecret(a, x25519.getPublicKey(b)),
    );
    const sig = await ed25519Sign(a, msg);
    assert.deepEqual(sig, ed25519.sign(msg, a));
    assert.equal(await ed25519Verify(ed25519.getPublicKey(a), sig, msg), true);
    const bad = sig.slice();
    bad[r.int(64)] ^= 1 << r.int(8);
    assert.equal(await ed25519Verify(ed25519.getPublicKey(a), bad, msg), false);
  }
  assert.equal(
    await webX25519(fill(1, 32), new Uint8Array(32)),
    undefined,
    "all-zero result refused",
  );
  assert.equal(await ed25519Verify(fill(0xff, 32), fill(0, 64), new Uint8Array(0)), false);
});

Deno.test("a signature with S + L (malleated) does not verify", async () => {
  const bundle = await sealV1();
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  let s = 0n;
  for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(bundle.sig[32 + i]);
  const t = s + L;
  const sig = bundle.sig.slice();
  for (let i = 0; i < 32; i++) sig[32 + i] = Number((t >> BigInt(8 * i)) & 0xffn);
  assert.ok(t < 2n ** 256n);
  await expectSealError(
    () => openSealedBundle({ ...bundle, sig }, recipientPrivate, signingPublicKey(signingSeed)),
    "bad-signature",
  );
});
