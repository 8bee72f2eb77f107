import assert from "node:assert/strict";
import { encode as cborEncode } from "cbor2";
import { sha256 } from "@noble/hashes/sha2.js";
import { toHex, utf8 } from "../../core/encoding.ts";
import { PharosError } from "../../core/errors.ts";
import {
  BASE45_ALPHABET,
  Base45Error,
  decodeOfflineProfile,
  decodeProfileDocument,
  deflate,
  encodeOfflineProfile,
  fromBase45,
  inflateBounded,
  MAX_OFFLINE_PROFILE_BYTES,
  profileDocumentToJson,
  selectOfflineNode,
  toBase45,
} from "../../core/profile/mod.ts";
import { loadVector, prng, SAMPLE_PROFILE_TEXT } from "./seal_support.ts";

const sample = decodeProfileDocument(SAMPLE_PROFILE_TEXT);
const base45 = loadVector<{ encode: { text: string; base45: string }[]; invalid: string[] }>(
  "profile/base45_rfc9285.json",
);

async function expectCode(fn: () => unknown, code: string): Promise<PharosError> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof PharosError, `${e}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

/** A part with a correct header for an arbitrary base45 payload. */
function partsFor(payload: string): string {
  const digest = toHex(sha256(utf8.encode(payload)).subarray(0, 4)).toUpperCase();
  return `PV1:1/1:${digest}:${payload}`;
}

Deno.test("base45 reproduces the RFC 9285 examples and rejects invalid input", () => {
  for (const { text, base45: b45 } of base45.encode) {
    assert.equal(toBase45(utf8.encode(text)), b45);
    assert.equal(utf8.decode(fromBase45(b45)), text);
  }
  for (const bad of base45.invalid) assert.throws(() => fromBase45(bad), Base45Error, bad);
  const r = prng(45);
  for (let n = 0; n < 200; n++) {
    const bytes = Uint8Array.from({ length: n }, () => r.int(256));
    const text = toBase45(bytes);
    assert.ok([...text].every((c) => BASE45_ALPHABET.includes(c)));
    assert.deepEqual(fromBase45(text), bytes);
  }
});

Deno.test("offline QR: one node round-trips in a single alphanumeric code", async () => {
  const one = selectOfflineNode(sample, "pspec_default", "node_2");
  assert.equal(one.profiles[0].nodes.length, 1);
  const parts = await encodeOfflineProfile(one);
  assert.equal(parts.length, 1, `${parts[0].length} characters`);
  assert.ok(/^PV1:1\/1:[0-9A-F]{8}:/.test(parts[0]));
  assert.ok([...parts[0]].every((c) => BASE45_ALPHABET.includes(c)), "QR alphanumeric set only");
  const back = await decodeOfflineProfile(parts);
  assert.deepEqual(back, one);
  assert.deepEqual(profileDocumentToJson(back), profileDocumentToJson(one), "unknown entries kept");
});

Deno.test("offline QR: split into 1-of-N parts and reassembled in any order", async () => {
  const one = selectOfflineNode(sample, "pspec_default", "node_1");
  const parts = await encodeOfflineProfile(one, 100);
  assert.ok(parts.length > 3, `${parts.length} parts`);
  parts.forEach((p, i) => {
    assert.ok(p.length <= 100);
    assert.ok(p.startsWith(`PV1:${i + 1}/${parts.length}:`));
  });
  assert.deepEqual(await decodeOfflineProfile([...parts].reverse()), one);
});

Deno.test("offline QR: missing, duplicate, mismatched and corrupt parts are rejected clearly", async () => {
  const a = await encodeOfflineProfile(selectOfflineNode(sample, "pspec_default", "node_1"), 100);
  const b = await encodeOfflineProfile(selectOfflineNode(sample, "pspec_default", "node_5"), 100);
  const missing = await expectCode(
    () => decodeOfflineProfile(a.filter((_, i) => i !== 1)),
    "missing-part",
  );
  assert.ok(
    missing.message.includes(`2 of ${a.length}`) || missing.message.includes(`missing part(s) 2`),
  );
  await expectCode(() => decodeOfflineProfile([...a, a[0]]), "duplicate-part");
  await expectCode(() => decodeOfflineProfile([a[0], b[1]]), "mismatched-parts");
  await expectCode(() => decodeOfflineProfile([]), "missing-part");
  await expectCode(() => decodeOfflineProfile(["hello"]), "bad-part");
  await expectCode(() => decodeOfflineProfile(["PV1:3/2:00000000:AB"]), "bad-part");
  await expectCode(() => decodeOfflineProfile(["PV1:1/1:00000000:abc"]), "bad-part");
  await expectCode(() => decodeOfflineProfile(Array(17).fill(a[0])), "too-many-parts");
  const last = a[a.length - 1];
  const flipped = last.slice(0, -1) + (last.endsWith("0") ? "1" : "0");
  await expectCode(() => decodeOfflineProfile([...a.slice(0, -1), flipped]), "corrupt-payload");
  await expectCode(() => decodeOfflineProfile([partsFor("AB")]), "corrupt-payload");
});

Deno.test("offline QR: a zip bomb stops at the inflate cap", async () => {
  const bomb = await deflate(new Uint8Array(4 * 1024 * 1024), "deflate-raw");
  assert.ok(bomb.length < 8 * 1024);
  const payload = toBase45(bomb);
  const size = Math.ceil(payload.length / 16);
  const digest = toHex(sha256(utf8.encode(payload)).subarray(0, 4)).toUpperCase();
  const parts = Array.from(
    { length: 16 },
    (_, i) => `PV1:${i + 1}/16:${digest}:${payload.slice(i * size, (i + 1) * size)}`,
  );
  assert.ok(parts.every((p) => p.length < 4296));
  await expectCode(() => decodeOfflineProfile(parts), "payload-too-large");
  await expectCode(
    () => inflateBounded(bomb, "deflate-raw", MAX_OFFLINE_PROFILE_BYTES),
    "inflate-too-large",
  );
});

Deno.test("offline QR: non-profile CBOR and invalid documents give typed errors", async () => {
  const encodePayload = async (value: unknown) =>
    partsFor(toBase45(await deflate(cborEncode(value), "deflate-raw")));
  const valid = profileDocumentToJson(selectOfflineNode(sample, "pspec_default", "node_1"));
  await expectCode(
    async () => decodeOfflineProfile([await encodePayload(new Map([[1, 2]]))]),
    "wrong-format",
  );
  await expectCode(
    async () =>
      decodeOfflineProfile([await encodePayload({ ...valid, revision: new Uint8Array(3) })]),
    "invalid-field",
  );
  await expectCode(
    async () =>
      decodeOfflineProfile([await encodePayload({ ...valid, extra_bytes: new Uint8Array(3) })]),
    "invalid-field",
  );
  await expectCode(
    () => decodeOfflineProfile([partsFor(toBase45(utf8.encode("not deflate")))]),
    "corrupt-payload",
  );
  await expectCode(() => encodeOfflineProfile(sample), "not-single-node");
  await expectCode(
    () => selectOfflineNode(sample, "pspec_default", "nope"),
    "node-not-found",
  );
  await expectCode(
    () => encodeOfflineProfile(selectOfflineNode(sample, "pspec_default", "node_1"), 10),
    "bad-part",
  );
});

Deno.test("offline QR fuzz: 500 mutated parts decode or fail with a typed error", async () => {
  const r = prng(0x0f);
  const parts = await encodeOfflineProfile(
    selectOfflineNode(sample, "pspec_default", "node_3"),
    200,
  );
  for (let i = 0; i < 500; i++) {
    const copy = [...parts];
    const k = r.int(copy.length);
    const pos = r.int(copy[k].length);
    copy[k] = copy[k].slice(0, pos) + r.pick([...BASE45_ALPHABET, "a", "\n"]) +
      copy[k].slice(pos + 1);
    try {
      await decodeOfflineProfile(copy);
    } catch (e) {
      assert.ok(e instanceof PharosError, `case ${i}: ${e}`);
    }
  }
});
