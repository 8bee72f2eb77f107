import assert from "node:assert/strict";
import { utf8 } from "../../core/encoding.ts";
import {
  checkProfileFreshness,
  decodeProfileDocument,
  encodeProfileDocument,
  pharosAccount,
  type ProfileDocument,
  ProfileError,
  readPharos,
  readProfileFile,
  writePharos,
} from "../../core/profile/mod.ts";
import {
  generateEncryptionKeyPair,
  generateSigningKeyPair,
  sealProfile,
} from "../../core/seal/mod.ts";
import { SAMPLE_PROFILE_TEXT } from "./seal_support.ts";

const sample = decodeProfileDocument(SAMPLE_PROFILE_TEXT);
const now = new Date("2025-06-01T00:00:00Z");

function expectCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (e) => e instanceof ProfileError && e.code === code);
}

Deno.test("freshness: rollback, expiry and another owner are refused (§7.9)", () => {
  const doc: ProfileDocument = { ...sample, revision: 7, expires_at: "2025-07-01T00:00:00Z" };
  checkProfileFreshness(doc, { lastRevision: 7, user: "usr_demo", fleetId: "fleet-demo", now });
  checkProfileFreshness(doc, { lastRevision: 6, now, requireExpiry: true });
  expectCode(() => checkProfileFreshness(doc, { lastRevision: 8, now }), "stale-revision");
  expectCode(() => checkProfileFreshness(doc, { user: "usr_other", now }), "wrong-owner");
  expectCode(() => checkProfileFreshness(doc, { fleetId: "fleet-other", now }), "wrong-owner");
  expectCode(
    () => checkProfileFreshness(doc, { now: new Date("2025-07-01T00:00:00Z") }),
    "expired",
  );
  expectCode(
    () =>
      checkProfileFreshness({ ...doc, expires_at: "2025-07-01T02:00:00+03:00" }, {
        now: new Date("2025-06-30T23:30:00Z"),
      }),
    "expired",
  );
});

Deno.test("freshness: the original's zero expiry passes unless an expiry is required", () => {
  const doc: ProfileDocument = { ...sample, expires_at: "0001-01-01T00:00:00Z" };
  checkProfileFreshness(doc, { now });
  checkProfileFreshness({ ...doc, expires_at: undefined }, { now });
  expectCode(() => checkProfileFreshness(doc, { now, requireExpiry: true }), "expired");
});

Deno.test("freshness: checked on a profile opened from an account-mode .pharos file", async () => {
  const recipient = generateEncryptionKeyPair();
  const signer = generateSigningKeyPair();
  const old: ProfileDocument = { ...sample, revision: 3, expires_at: "2025-07-01T00:00:00Z" };
  const bundle = await sealProfile(
    utf8.encode(encodeProfileDocument(old)),
    recipient.publicKey,
    signer.privateKey,
  );
  const text = writePharos(pharosAccount(bundle));
  const { document: opened } = await readProfileFile(text, {
    account: { privateKey: recipient.privateKey, pinnedSigningKey: signer.publicKey },
  });
  // A validly signed but older profile replayed by a relay is still refused.
  expectCode(() => checkProfileFreshness(opened, { lastRevision: 7, now }), "stale-revision");
  // A sealed payload of an unknown version is reported as such.
  const v2 = JSON.parse(text);
  v2.payload.v = 2;
  expectCode(() => readPharos(JSON.stringify(v2)), "unknown-version");
});
