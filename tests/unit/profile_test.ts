import assert from "node:assert/strict";
import { toBase64, toHex, utf8 } from "../../core/encoding.ts";
import { PharosError } from "../../core/errors.ts";
import {
  decodeProfileDocument,
  encodeProfileDocument,
  isPharosFile,
  knownProtocols,
  MAX_PHAROS_BYTES,
  MAX_PROFILE_BYTES,
  openPharos,
  parseProfileDocument,
  passwordAad,
  pharosAccount,
  type PharosEnvelope,
  pharosNone,
  pharosPassword,
  profileDocumentToJson,
  ProfileError,
  ProfileFieldError,
  readPharos,
  readProfileFile,
  writePharos,
} from "../../core/profile/mod.ts";
import {
  deriveArgon2idKey,
  generateEncryptionKeyPair,
  generateSigningKeyPair,
  SealError,
  sealProfile,
} from "../../core/seal/mod.ts";
import {
  fill,
  fixedRandom,
  type Json,
  loadVector,
  mutateJson,
  mutateText,
  prng,
  SAMPLE_PROFILE_TEXT,
} from "./seal_support.ts";

const sampleText = SAMPLE_PROFILE_TEXT;
const sample = () => JSON.parse(sampleText);
const v3 = loadVector<{ inputs: Record<string, string>; expected: Record<string, string> }>(
  "profile/v3_pharos_password.json",
);
const v3Random = fixedRandom({ salt: v3.inputs.salt_fill, nonce: v3.inputs.nonce_fill });

async function expectCode(fn: () => unknown, code: string, path?: string): Promise<PharosError> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof PharosError, `expected a PharosError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (path !== undefined) {
      assert.ok(e instanceof ProfileFieldError);
      assert.equal(e.path, path);
      assert.ok(e.message.startsWith(path), e.message);
    }
    return e;
  }
  assert.fail(`expected ${code}, nothing thrown`);
}

// ---------------------------------------------------------------- schema (§4.6)

Deno.test("schema: the 10-node sample round-trips exactly, unknown fields and protocols included", () => {
  const doc = decodeProfileDocument(sampleText);
  assert.equal(doc.profiles[0].nodes.length, 10);
  assert.deepEqual(profileDocumentToJson(doc), sample());
  // Same key order as the input at every level, not just the same content.
  assert.equal(JSON.stringify(profileDocumentToJson(doc)), JSON.stringify(sample()));
  assert.equal(
    encodeProfileDocument(decodeProfileDocument(encodeProfileDocument(doc))),
    encodeProfileDocument(doc),
  );
});

Deno.test("schema: unknown protocol types and versions are skipped by the typed view and preserved", () => {
  const doc = decodeProfileDocument(sampleText);
  const [n1, n2, n3] = doc.profiles[0].nodes;
  assert.deepEqual(knownProtocols(n1).map((p) => p.type), ["amneziawg", "xray-reality"]);
  assert.equal(n2.protocols.length, 3);
  assert.deepEqual(knownProtocols(n2).map((p) => p.type), ["amneziawg", "xray-reality"]);
  assert.deepEqual(knownProtocols(n3).map((p) => `${p.type}/${p.v}`), [
    "amneziawg/2",
    "xray-reality/1",
  ]);
  const opaque = n3.protocols[2];
  assert.ok("opaque" in opaque);
  assert.deepEqual(opaque.opaque, sample().profiles[0].nodes[2].protocols[2]);
  const out = profileDocumentToJson(doc) as { profiles: { nodes: { protocols: unknown[] }[] }[] };
  assert.deepEqual(out.profiles[0].nodes[1].protocols[2], {
    type: "hysteria2",
    v: 1,
    params: { password: "future", port: 8443 },
  });
});

Deno.test("schema: unknown fields are kept in extra at every level", () => {
  const doc = decodeProfileDocument(sampleText);
  assert.equal(doc.extra?.x_future_top_level, "kept verbatim");
  assert.deepEqual(doc.profiles[0].extra?.x_profile_extension, { anything: [1, "two", null] });
  assert.equal(doc.profiles[0].nodes[3].extra?.weight, 5);
  assert.equal(doc.profiles[0].path!.hops[1].extra?.future_hop_field, true);
  // A "__proto__" key is data, not a prototype change.
  const tricky = sample();
  Object.defineProperty(tricky, "__proto__", { value: { polluted: true }, enumerable: true });
  const parsed = parseProfileDocument(JSON.parse(JSON.stringify(tricky)));
  assert.equal(Object.getPrototypeOf(parsed.extra), Object.prototype);
  assert.deepEqual(Object.getOwnPropertyDescriptor(parsed.extra, "__proto__")?.value, {
    polluted: true,
  });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("schema: the writer emits the controller's field order", () => {
  const doc = decodeProfileDocument(sampleText);
  const out = profileDocumentToJson(doc) as Record<string, Json>;
  assert.deepEqual(Object.keys(out), [
    "fleet_id",
    "user",
    "revision",
    "issued_at",
    "expires_at",
    "profiles",
    "control",
    "x_future_top_level",
  ]);
  const profile = out.profiles[0];
  assert.deepEqual(Object.keys(profile), [
    "id",
    "name",
    "protocol",
    "nodes",
    "path",
    "mtu",
    "x_profile_extension",
  ]);
  assert.deepEqual(Object.keys(profile.nodes[0]), [
    "id",
    "name",
    "region",
    "endpoints",
    "protocols",
  ]);
  assert.deepEqual(Object.keys(profile.nodes[0].protocols[0].params), [
    "private_key",
    "address",
    "public_key",
    "preshared_key",
    "endpoints",
    "rotation",
    "allowed_ips",
    "obfuscation",
  ]);
  assert.deepEqual(Object.keys(profile.nodes[0].protocols[1].params), [
    "uuid",
    "flow",
    "address",
    "public_key",
    "server_name",
    "short_id",
    "fingerprint",
    "endpoints",
    "allowed_ips",
  ]);
  assert.deepEqual(Object.keys(profile.nodes[0].protocols[0].params.rotation), [
    "enabled",
    "interval_seconds",
    "jitter_seconds",
  ]);
  // Written from a typed value built in a different key order:
  const p = doc.profiles[0].nodes[0].protocols[0];
  assert.ok("params" in p && p.type === "amneziawg");
  const shuffled = {
    ...doc,
    profiles: [{
      ...doc.profiles[0],
      nodes: [{
        protocols: [{ params: p.params, v: 2 as const, type: "amneziawg" as const, extra: {} }],
        endpoints: [],
        id: "n",
        extra: {},
      }],
    }],
  };
  assert.deepEqual(Object.keys((profileDocumentToJson(shuffled) as Json).profiles[0].nodes[0]), [
    "id",
    "endpoints",
    "protocols",
  ]);
  // i1..i5 are omitted when empty.
  const obf = { ...p.params.obfuscation, i1: "", i2: "<b 0x01>" };
  const written = profileDocumentToJson({
    ...shuffled,
    profiles: [{
      ...shuffled.profiles[0],
      nodes: [{
        ...shuffled.profiles[0].nodes[0],
        protocols: [{ ...p, params: { ...p.params, obfuscation: obf } }],
      }],
    }],
  }) as Json;
  const o = written.profiles[0].nodes[0].protocols[0].params.obfuscation;
  assert.equal("i1" in o, false);
  assert.equal(o.i2, "<b 0x01>");
  assert.ok(
    encodeProfileDocument({ ...doc, extra: { html: "<&>" } }).includes(
      '"html":"\\u003c\\u0026\\u003e"',
    ),
  );
});

Deno.test("schema: validation errors name the field path", async () => {
  const cases: [string, (d: Json) => void][] = [
    ["profiles[0].nodes[1].endpoints", (d) => (d.profiles[0].nodes[1].endpoints = "203.0.113.7")],
    ["profiles[0].nodes[1].endpoints", (d) => delete d.profiles[0].nodes[1].endpoints],
    [
      "profiles[0].nodes[2].endpoints[1]",
      (d) => (d.profiles[0].nodes[2].endpoints[1] = "1.2.3.4:443"),
    ],
    [
      "profiles[0].nodes[0].protocols[0].params.private_key",
      (d) => delete d.profiles[0].nodes[0].protocols[0].params.private_key,
    ],
    [
      "profiles[0].nodes[0].protocols[0].params.public_key",
      (d) => (d.profiles[0].nodes[0].protocols[0].params.public_key = "AAAA"),
    ],
    [
      "profiles[0].nodes[0].protocols[0].params.endpoints[0].port_max",
      (d) => (d.profiles[0].nodes[0].protocols[0].params.endpoints[0].port_max = 70000),
    ],
    [
      "profiles[0].nodes[0].protocols[0].params.rotation.enabled",
      (d) => (d.profiles[0].nodes[0].protocols[0].params.rotation.enabled = "yes"),
    ],
    [
      "profiles[0].nodes[0].protocols[0].params.obfuscation.h1",
      (d) => (d.profiles[0].nodes[0].protocols[0].params.obfuscation.h1 = -5),
    ],
    [
      "profiles[0].nodes[0].protocols[0].params.obfuscation.i1",
      (d) => (d.profiles[0].nodes[0].protocols[0].params.obfuscation.i1 = "x\nPostUp = rm -rf /"),
    ],
    [
      "profiles[0].nodes[0].protocols[0].params.address",
      (d) => (d.profiles[0].nodes[0].protocols[0].params.address = "10.7.0.3"),
    ],
    [
      "profiles[0].nodes[0].protocols[0].params.allowed_ips[1]",
      (d) => (d.profiles[0].nodes[0].protocols[0].params.allowed_ips[1] = "::/129"),
    ],
    [
      "profiles[0].nodes[0].protocols[1].params.uuid",
      (d) => (d.profiles[0].nodes[0].protocols[1].params.uuid = "not-a-uuid"),
    ],
    [
      "profiles[0].nodes[0].protocols[1].params.public_key",
      (d) => (d.profiles[0].nodes[0].protocols[1].params.public_key = "AAAA"),
    ],
    [
      "profiles[0].nodes[0].protocols[1].params.short_id",
      (d) => (d.profiles[0].nodes[0].protocols[1].params.short_id = "xyz"),
    ],
    [
      "profiles[0].nodes[0].protocols[2]",
      (d) => (d.profiles[0].nodes[0].protocols[2] = "wireguard"),
    ],
    [
      "profiles[0].nodes[0].protocols[0].type",
      (d) => (d.profiles[0].nodes[0].protocols[0].type = 7),
    ],
    ["profiles[0].nodes[0].id", (d) => (d.profiles[0].nodes[0].id = "")],
    ["profiles[0].path.hops[0].role", (d) => (d.profiles[0].path.hops[0].role = "middle")],
    ["profiles[0].mtu", (d) => (d.profiles[0].mtu = 575)],
    ["profiles[0].mtu", (d) => (d.profiles[0].mtu = 65536)],
    ["profiles[0].nodes", (d) => (d.profiles[0].nodes = {})],
    ["profiles", (d) => delete d.profiles],
    ["revision", (d) => (d.revision = 1.5)],
    ["issued_at", (d) => (d.issued_at = "yesterday")],
    ["control.lat", (d) => (d.control.lat = 91)],
  ];
  for (const [path, mutate] of cases) {
    const d = sample();
    mutate(d);
    await expectCode(() => parseProfileDocument(d), "invalid-field", path);
  }
  await expectCode(() => parseProfileDocument([]), "wrong-format");
});

Deno.test("schema: optional fields may be absent or null; absent stays absent on write", () => {
  const d = sample();
  const p = d.profiles[0];
  delete p.path;
  p.mtu = null;
  delete d.control;
  delete d.issued_at;
  delete p.nodes[0].protocols[0].params.rotation;
  const doc = parseProfileDocument(d);
  const out = profileDocumentToJson(doc) as Json;
  assert.equal(
    "path" in out.profiles[0] || "mtu" in out.profiles[0] || "control" in out || "issued_at" in out,
    false,
  );
  const awg = knownProtocols(doc.profiles[0].nodes[0])[0];
  assert.equal(awg.type === "amneziawg" && awg.params.rotation, undefined);
  assert.equal("rotation" in out.profiles[0].nodes[0].protocols[0].params, false);
});

Deno.test("schema: oversized or non-JSON payloads are rejected before parsing", async () => {
  await expectCode(
    () => decodeProfileDocument("[".repeat(MAX_PROFILE_BYTES + 1)),
    "input-too-large",
  );
  await expectCode(() => decodeProfileDocument("{"), "not-json");
  await expectCode(() => decodeProfileDocument(new Uint8Array([0xc3, 0x28])), "not-json");
});

Deno.test("schema fuzz: 2,000 structural and textual mutations give a profile or a typed error", () => {
  const r = prng(0xfa11);
  const base = sample();
  let valid = 0;
  for (let i = 0; i < 2000; i++) {
    const input = i % 4 === 0 ? mutateText(sampleText, r) : JSON.stringify(mutateJson(base, r));
    try {
      const doc = decodeProfileDocument(input);
      // Whatever is accepted must write back to the same document.
      assert.deepEqual(decodeProfileDocument(encodeProfileDocument(doc)), doc);
      valid++;
    } catch (e) {
      assert.ok(e instanceof ProfileError, `case ${i}: ${e}`);
      if (e instanceof ProfileFieldError) assert.ok(e.message.length > e.path.length);
    }
  }
  assert.ok(valid > 0 && valid < 2000, `valid=${valid}`);
});

// ---------------------------------------------------------------- .pharos (§4.5)

Deno.test("V3: password mode reproduces the key, the AAD and the payload byte for byte", async () => {
  const kdfSalt = fill(v3.inputs.salt_fill, 16);
  assert.equal(toHex(await deriveArgon2idKey(v3.inputs.password, kdfSalt)), v3.expected.key);
  const env = await pharosPassword(v3.inputs.plaintext, v3.inputs.password, v3Random);
  assert.equal(env.enc, "password");
  if (env.enc !== "password") return;
  assert.equal(utf8.decode(passwordAad(env.kdf, env.nonce)), v3.expected.aad);
  assert.equal(toBase64(env.ciphertext), v3.expected.payload);
  const text = writePharos(env);
  const parsed = JSON.parse(text);
  assert.deepEqual(Object.keys(parsed), ["fmt", "v", "enc", "kdf", "nonce", "payload"]);
  assert.deepEqual(Object.keys(parsed.kdf), ["algo", "t", "m", "p", "salt"]);
  assert.equal(parsed.payload, v3.expected.payload);
  assert.equal(text, JSON.stringify(parsed, null, 2), "pretty-printed with a 2-space indent");
});

function v3File(): Record<string, Json> {
  const aad = JSON.parse(v3.expected.aad);
  return { ...aad, payload: v3.expected.payload };
}

Deno.test("V3: a file rebuilt from the vector opens, in any JSON layout, with extra header fields", async () => {
  const compact = JSON.stringify(v3File());
  const plain = await openPharos(readPharos(compact), { password: v3.inputs.password });
  assert.equal(utf8.decode(plain), v3.inputs.plaintext);
  // Unknown header fields are not authenticated (§4.5) and do not stop reading.
  const odd = { payload: v3.expected.payload, note: "x", ...JSON.parse(v3.expected.aad) };
  odd.payload = v3.expected.payload;
  const again = await openPharos(readPharos(JSON.stringify(odd, null, 7)), {
    password: v3.inputs.password,
  });
  assert.equal(utf8.decode(again), v3.inputs.plaintext);
});

Deno.test(".pharos: wrong password gives wrong-password", async () => {
  await expectCode(
    async () => await openPharos(readPharos(JSON.stringify(v3File())), { password: "hunter3" }),
    "wrong-password",
  );
});

Deno.test(".pharos: header downgrades fail before any Argon2id work", async () => {
  const bad: [string, (f: Record<string, Json>) => void][] = [
    ["kdf-rejected", (f) => (f.kdf.t = 0)],
    ["kdf-rejected", (f) => (f.kdf.t = 2)],
    ["kdf-rejected", (f) => (f.kdf.m = 1024)],
    ["kdf-rejected", (f) => (f.kdf.m = 4294967295)],
    ["kdf-rejected", (f) => (f.kdf.p = 1)],
    ["kdf-rejected", (f) => (f.kdf.p = 64)],
    ["kdf-rejected", (f) => (f.kdf.algo = "argon2i")],
    ["kdf-rejected", (f) => delete f.kdf.algo],
    ["kdf-rejected", (f) => (f.kdf.t = "1")],
    ["unknown-version", (f) => (f.v = 2)],
    ["unknown-version", (f) => (f.v = 0)],
    ["header-mismatch", (f) => (f.enc = "none")],
    ["header-mismatch", (f) => (f.enc = "account")],
    ["header-mismatch", (f) => delete f.kdf],
    ["header-mismatch", (f) => (f.nonce = toBase64(fill(1, 12)))],
    ["header-mismatch", (f) => (f.kdf.salt = toBase64(fill(1, 8)))],
    ["header-mismatch", (f) => (f.payload = { profiles: [] })],
    ["unknown-encryption", (f) => (f.enc = "aes")],
    ["wrong-format", (f) => (f.fmt = "pharos-device")],
  ];
  for (const [code, mutate] of bad) {
    const f = v3File();
    mutate(f);
    // A password is supplied: were the header trusted, Argon2id would run.
    await expectCode(
      async () => await openPharos(readPharos(JSON.stringify(f)), { password: v3.inputs.password }),
      code,
    );
  }
});

/** The sample profile sealed to a fresh recipient by a fresh signer. */
async function sealedSample() {
  const recipient = generateEncryptionKeyPair();
  const signer = generateSigningKeyPair();
  const doc = decodeProfileDocument(sampleText);
  const bundle = await sealProfile(
    utf8.encode(encodeProfileDocument(doc)),
    recipient.publicKey,
    signer.privateKey,
  );
  return { recipient, signer, doc, bundle };
}

Deno.test(".pharos: account → none downgrade and unwanted plaintext are refused", async () => {
  const { doc, bundle } = await sealedSample();
  const accountFile = JSON.parse(writePharos(pharosAccount(bundle)));
  await expectCode(
    () => readPharos(JSON.stringify({ ...accountFile, enc: "none" })),
    "header-mismatch",
  );
  await expectCode(
    () => readPharos(JSON.stringify({ ...accountFile, enc: "password" })),
    "header-mismatch",
  );
  // A genuine plaintext file is refused where only sealed files are expected.
  const noneFile = writePharos(pharosNone(doc));
  await expectCode(
    () => readProfileFile(noneFile, { accept: ["account", "password"] }),
    "downgrade-refused",
  );
});

Deno.test(".pharos: account mode round trip verifies with the pinned key only", async () => {
  const { recipient, signer, doc, bundle } = await sealedSample();
  const text = writePharos(pharosAccount(bundle));
  assert.deepEqual(Object.keys(JSON.parse(text)), ["fmt", "v", "enc", "payload"]);
  const opened = await readProfileFile(text, {
    account: { privateKey: recipient.privateKey, pinnedSigningKey: signer.publicKey },
    accept: ["account"],
  });
  assert.deepEqual(opened, { document: doc, skipped: [] });
  await expectCode(
    () =>
      readProfileFile(text, {
        account: {
          privateKey: recipient.privateKey,
          pinnedSigningKey: generateSigningKeyPair().publicKey,
        },
      }),
    "bad-signature",
  );
  await expectCode(() => readProfileFile(text, {}), "secret-missing");
  try {
    await readProfileFile(text, {
      account: {
        privateKey: generateEncryptionKeyPair().privateKey,
        pinnedSigningKey: signer.publicKey,
      },
    });
    assert.fail("opened with the wrong key");
  } catch (e) {
    assert.ok(e instanceof SealError && e.code === "wrong-recipient");
  }
});

Deno.test(".pharos: none mode and password mode round-trip a full profile", async () => {
  const doc = decodeProfileDocument(sampleText);
  const none = writePharos(pharosNone(doc));
  assert.deepEqual(await readProfileFile(none, {}), { document: doc, skipped: [] });
  assert.ok(
    none.startsWith('{\n  "fmt": "pharos-profile",\n  "v": 1,\n  "enc": "none",\n  "payload": {'),
  );
  const pw = writePharos(await pharosPassword(encodeProfileDocument(doc), "s3cret ✓"));
  assert.deepEqual(await readProfileFile(pw, { password: "s3cret ✓" }), {
    document: doc,
    skipped: [],
  });
  await expectCode(() => readProfileFile(pw, {}), "secret-missing");
});

Deno.test(".pharos: detection is by fmt, not by name; bounds are checked first", async () => {
  const doc = decodeProfileDocument(sampleText);
  assert.equal(isPharosFile(writePharos(pharosNone(doc))), true);
  assert.equal(isPharosFile(utf8.encode(JSON.stringify(v3File()))), true);
  assert.equal(isPharosFile(sampleText), false);
  assert.equal(isPharosFile('{"fmt":"pharos-device","v":1}'), false);
  assert.equal(isPharosFile("not json"), false);
  await expectCode(() => readPharos(sampleText), "wrong-format");
  await expectCode(() => readPharos(" ".repeat(MAX_PHAROS_BYTES + 1)), "input-too-large");
  await expectCode(() => readPharos("{]"), "not-json");
  await expectCode(
    () => readPharos(JSON.stringify({ fmt: "pharos-profile", v: 1, enc: "none", payload: "x" })),
    "header-mismatch",
  );
  await expectCode(
    () =>
      readPharos(
        JSON.stringify({ fmt: "pharos-profile", v: 1, enc: "none", kdf: {}, payload: {} }),
      ),
    "header-mismatch",
  );
});

Deno.test(".pharos fuzz: 2,000 mutated files give a profile or a typed error", async () => {
  const r = prng(0x9a05);
  const doc = decodeProfileDocument(sampleText);
  const noneText = writePharos(pharosNone(doc));
  const files: string[] = [noneText, JSON.stringify(v3File())];
  let accepted = 0;
  for (let i = 0; i < 2000; i++) {
    const base = files[i % 2];
    const input = i % 3 === 0
      ? mutateText(base, r)
      : JSON.stringify(mutateJson(JSON.parse(base), r));
    try {
      // No password given: nothing may reach Argon2id, every outcome is typed.
      const env: PharosEnvelope = readPharos(input);
      await readProfileFile(input, {});
      assert.equal(env.enc, "none");
      accepted++;
    } catch (e) {
      assert.ok(e instanceof PharosError, `case ${i}: ${e}`);
    }
  }
  assert.ok(accepted < 2000);
});
