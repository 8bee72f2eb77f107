import assert from "node:assert/strict";
import { toBase64 } from "../../core/encoding.ts";
import { PharosError } from "../../core/errors.ts";
import {
  decodeX25519Pem,
  type DeviceIdentity,
  encodeX25519Pem,
  MAX_DEVICE_IDENTITY_BYTES,
  ProfileFieldError,
  readDeviceIdentity,
  writeDeviceIdentity,
} from "../../core/profile/mod.ts";
import { generateEncryptionKeyPair, generateSigningKeyPair } from "../../core/seal/mod.ts";
import { fill, mutateJson, mutateText, prng } from "./seal_support.ts";

const pem = (label: string, fillByte: number) =>
  `-----BEGIN ${label}-----\n${toBase64(fill(fillByte, 48))}\n-----END ${label}-----\n`;

function identity(): DeviceIdentity {
  return {
    user: "usr_demo",
    alias: "phone",
    relay_addr: "relay.example.net:8443",
    relay_server_name: "relay.example.net",
    ca_fingerprint: "08df53bddb6d49c3be93cddaab2fb4ec9101b3f4a428f5898c84edafafecb00c",
    fleet_ca: pem("CERTIFICATE", 1),
    device_cert: pem("CERTIFICATE", 2),
    device_key: pem("PRIVATE KEY", 3),
    signing_public_key: generateSigningKeyPair().publicKey,
    encryption_key: generateEncryptionKeyPair().privateKey,
  };
}

function expectCode(fn: () => unknown, code: string, path?: string): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof PharosError, `${e}`);
    assert.equal(e.code, code, e.message);
    if (path) assert.equal((e as ProfileFieldError).path, path);
    return;
  }
  assert.fail(`expected ${code}`);
}

Deno.test(".pharosid: write/read round trip in the field order of §4.7", () => {
  const id = identity();
  const text = writeDeviceIdentity(id);
  assert.deepEqual(Object.keys(JSON.parse(text)), [
    "fmt",
    "v",
    "user",
    "alias",
    "relay_addr",
    "relay_server_name",
    "ca_fingerprint",
    "fleet_ca",
    "device_cert",
    "device_key",
    "signing_public_key",
    "encryption_key",
  ]);
  assert.ok(!text.includes("\n  "), "compact JSON");
  assert.deepEqual(readDeviceIdentity(text), id);
  const parsed = JSON.parse(text);
  assert.equal(parsed.signing_public_key, toBase64(id.signing_public_key!));
  assert.ok(parsed.encryption_key.startsWith("-----BEGIN X25519 PRIVATE KEY-----\n"));
});

Deno.test(".pharosid: optional fields are omitted when empty and read back as absent", () => {
  const {
    user: _u,
    alias: _a,
    ca_fingerprint: _c,
    signing_public_key: _s,
    encryption_key: _e,
    ...minimal
  } = identity();
  const text = writeDeviceIdentity({ ...minimal, user: "" });
  assert.deepEqual(Object.keys(JSON.parse(text)), [
    "fmt",
    "v",
    "relay_addr",
    "relay_server_name",
    "fleet_ca",
    "device_cert",
    "device_key",
  ]);
  assert.deepEqual(readDeviceIdentity(text), minimal);
});

Deno.test(".pharosid: null (Go's nil) reads as absent; a null required field is missing", () => {
  const id = identity();
  const base = JSON.parse(writeDeviceIdentity(id));
  const optional = ["user", "alias", "ca_fingerprint", "signing_public_key", "encryption_key"];
  const nulls = { ...base, ...Object.fromEntries(optional.map((k) => [k, null])) };
  const read = readDeviceIdentity(JSON.stringify({ ...nulls, relay_server_name: null }));
  for (const k of optional) assert.equal(k in read, false, k);
  assert.equal(read.relay_server_name, "");
  assert.equal(read.relay_addr, id.relay_addr);
  // The format has no list fields; required ones stay required.
  for (const key of ["relay_addr", "fleet_ca", "device_cert", "device_key"]) {
    expectCode(
      () => readDeviceIdentity(JSON.stringify({ ...base, [key]: null })),
      "invalid-field",
      key,
    );
  }
  expectCode(() => readDeviceIdentity(JSON.stringify({ ...base, v: null })), "unknown-version");
});

Deno.test(".pharosid: required fields and their shapes are checked", () => {
  const base = JSON.parse(writeDeviceIdentity(identity()));
  for (const key of ["relay_addr", "fleet_ca", "device_cert", "device_key"]) {
    expectCode(
      () => readDeviceIdentity(JSON.stringify({ ...base, [key]: undefined })),
      "invalid-field",
      key,
    );
    expectCode(
      () => readDeviceIdentity(JSON.stringify({ ...base, [key]: "" })),
      "invalid-field",
      key,
    );
  }
  expectCode(
    () => readDeviceIdentity(JSON.stringify({ ...base, relay_addr: "relay" })),
    "invalid-field",
    "relay_addr",
  );
  expectCode(
    () => readDeviceIdentity(JSON.stringify({ ...base, fleet_ca: pem("PRIVATE KEY", 1) })),
    "invalid-field",
    "fleet_ca",
  );
  expectCode(
    () => readDeviceIdentity(JSON.stringify({ ...base, user: 5 })),
    "invalid-field",
    "user",
  );
  expectCode(
    () => readDeviceIdentity(JSON.stringify({ ...base, signing_public_key: "AAAA" })),
    "invalid-field",
    "signing_public_key",
  );
  expectCode(
    () =>
      readDeviceIdentity(JSON.stringify({ ...base, encryption_key: pem("X25519 PRIVATE KEY", 1) })),
    "invalid-field",
    "encryption_key",
  );
  expectCode(() => readDeviceIdentity(JSON.stringify({ ...base, v: 2 })), "unknown-version");
  expectCode(
    () => readDeviceIdentity(JSON.stringify({ ...base, fmt: "pharos-profile" })),
    "wrong-format",
  );
  expectCode(
    () => readDeviceIdentity("x".repeat(MAX_DEVICE_IDENTITY_BYTES + 1)),
    "input-too-large",
  );
  expectCode(() => readDeviceIdentity("{"), "not-json");
  // Unknown fields are ignored.
  assert.equal(
    readDeviceIdentity(JSON.stringify({ ...base, future: 1 })).relay_addr,
    base.relay_addr,
  );
});

Deno.test(".pharosid: X25519 PEM codec round-trips and rejects other blocks", () => {
  const key = generateEncryptionKeyPair().privateKey;
  assert.deepEqual(decodeX25519Pem(encodeX25519Pem(key)), key);
  assert.deepEqual(decodeX25519Pem(encodeX25519Pem(key).replaceAll("\n", "\r\n")), key);
  expectCode(() => decodeX25519Pem(pem("PRIVATE KEY", 1)), "invalid-field");
  expectCode(() => encodeX25519Pem(fill(1, 31)), "invalid-field");
});

Deno.test(".pharosid fuzz: 1,000 mutated files read or fail with a typed error", () => {
  const r = prng(0x1d);
  const text = writeDeviceIdentity(identity());
  const base = JSON.parse(text);
  for (let i = 0; i < 1000; i++) {
    const input = i % 2 ? mutateText(text, r) : JSON.stringify(mutateJson(base, r));
    try {
      readDeviceIdentity(input);
    } catch (e) {
      assert.ok(e instanceof PharosError, `case ${i}: ${e}`);
    }
  }
});
