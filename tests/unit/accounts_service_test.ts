/**
 * The accounts service without transport: claims, tickets, sessions,
 * login back-off, account keys, provisioning and revocation, on a real
 * controller state (database file, keystore, CA).
 */
import assert from "node:assert/strict";
import { AccountError, SESSION_REFUSED, TICKET_REFUSED } from "../../controller/accounts/mod.ts";
import { FREE_FAILURES } from "../../controller/accounts/login_limits.ts";
import { fromBase64, toBase64, toBase64Url } from "../../core/encoding.ts";
import { type AmneziaWgProtocol, decodeProfileDocument } from "../../core/profile/mod.ts";
import {
  encryptionPublicKey,
  generateEncryptionKeyPair,
  openProfile,
  wrapPrivateKey,
} from "../../core/seal/mod.ts";
import {
  accountsFixture,
  ADMIN,
  claimOf,
  clientKeys,
  fingerprintOf,
} from "../support/accounts_fixture.ts";

const PASSWORD = "correct horse battery";

function refused(code: string, message?: string) {
  return (e: unknown) => {
    assert.ok(e instanceof AccountError, String(e));
    assert.equal(e.code, code, e.message);
    if (message) assert.equal(e.message, message);
    return true;
  };
}

Deno.test("accounts: a claim binds the device to the ticket's user; its profile opens only with its key and the pinned signing key", async () => {
  const f = await accountsFixture();
  try {
    const [n1, n2] = [f.addNode("fra-1"), f.addNode("ams-1")];
    f.accounts.createUser(ADMIN, "ann@example.com");
    const t = f.accounts.createTicket("Ann@Example.com", { actor: ADMIN, unbound: true });
    assert.match(t.url, /^pharosvpn:\/\/enroll\?ca=[0-9a-f]{64}&relay=localhost%3A8443&token=/);
    assert.equal(t.expiresAt.getTime() - f.clock.now.getTime(), 15 * 60_000);
    const keys = await clientKeys();
    const token = new URL(t.url).searchParams.get("token")!;
    const r = await f.accounts.claim(claimOf(token, keys));
    assert.equal(r.userId, t.userId);
    assert.equal(r.caFingerprint, f.state.pki.rootFingerprint);
    assert.equal(r.relayAddr, "localhost:8443");
    assert.equal(r.relayServerName, "localhost");
    assert.deepEqual(r.signingPublicKey, f.accounts.signing.publicKey);
    const fp = await fingerprintOf(r.deviceCertPem);
    const device = f.devices.byFingerprint(fp)!;
    assert.equal(device.userId, t.userId);
    assert.equal(device.status, "active");

    // One peer per node, the device's own WireGuard key, a preshared key each.
    const peers = f.state.db.prepare(
      "SELECT node_id, public_key, psk_sealed, allowed_ips FROM node_peers WHERE device_id = ? ORDER BY node_id",
    ).all(device.id) as {
      node_id: string;
      public_key: string;
      psk_sealed: Uint8Array;
      allowed_ips: string;
    }[];
    assert.deepEqual(peers.map((p) => p.node_id).sort(), [n1, n2].sort());
    for (const p of peers) assert.equal(p.public_key, toBase64(keys.wg!.publicKey));
    assert.deepEqual(f.changed.flat().sort(), [n1, n2].sort());

    const prof = await f.accounts.getProfile({ fingerprint: fp });
    assert.equal(prof.revision, 1);
    assert.equal(prof.wrappedPrivateKey.length, 0, "per-device devices get no wrapped key");
    const doc = decodeProfileDocument(
      await openProfile(prof.ciphertext, keys.encryption.privateKey, r.signingPublicKey),
    );
    assert.equal(doc.user, t.userId);
    assert.equal(doc.fleet_id, f.state.pki.rootFingerprint);
    assert.equal(doc.revision, 1);
    assert.ok(Date.parse(doc.expires_at!) > f.clock.now.getTime());
    const nodes = doc.profiles[0].nodes;
    assert.equal(nodes.length, 2);
    const psks = new Set<string>();
    for (const n of nodes) {
      const awg = n.protocols[0] as AmneziaWgProtocol;
      assert.equal(awg.params.public_key, f.nodeKeys.get(n.id));
      assert.equal(awg.params.address, "10.66.0.2/32");
      assert.equal(awg.params.private_key, toBase64(new Uint8Array(32)), "own key: placeholder");
      psks.add(awg.params.preshared_key as string);
    }
    assert.equal(psks.size, 2, "a preshared key per node");
    // Another X25519 key cannot open it; another signing key is refused.
    await assert.rejects(
      openProfile(prof.ciphertext, generateEncryptionKeyPair().privateKey, r.signingPublicKey),
      { code: "wrong-recipient" },
    );
    await assert.rejects(
      openProfile(
        prof.ciphertext,
        keys.encryption.privateKey,
        generateEncryptionKeyPair().publicKey,
      ),
      { code: "bad-signature" },
    );
  } finally {
    await f.close();
  }
});

Deno.test("accounts: a device that cannot make a WireGuard key gets one from the controller, sealed at rest", async () => {
  const f = await accountsFixture();
  try {
    f.addNode("fra-1");
    f.accounts.createUser(ADMIN, "bob@example.com");
    const keys = await clientKeys("tablet", false);
    const t = f.accounts.createTicket("bob@example.com", { unbound: true });
    const r = await f.accounts.claim(claimOf(new URL(t.url).searchParams.get("token")!, keys));
    const fp = await fingerprintOf(r.deviceCertPem);
    const row = f.state.db.prepare(
      "SELECT wg_public_key, wg_private_sealed FROM devices WHERE fingerprint = ?",
    )
      .get(fp) as { wg_public_key: string; wg_private_sealed: Uint8Array };
    assert.ok(row.wg_private_sealed.length > 32);
    const doc = decodeProfileDocument(
      await openProfile(
        (await f.accounts.getProfile({ fingerprint: fp })).ciphertext,
        keys.encryption.privateKey,
        r.signingPublicKey,
      ),
    );
    const params = (doc.profiles[0].nodes[0].protocols[0] as AmneziaWgProtocol).params;
    assert.equal(toBase64(encryptionPublicKey(fromBase64(params.private_key))), row.wg_public_key);
  } finally {
    await f.close();
  }
});

Deno.test("accounts: reused, expired and unknown tickets are refused alike; bad input consumes nothing; a disabled user's ticket is refused", async () => {
  const f = await accountsFixture();
  try {
    f.accounts.createUser(ADMIN, "ann@example.com");
    const tokenOf = (url: string) => new URL(url).searchParams.get("token")!;
    const t = tokenOf(f.accounts.createTicket("ann@example.com", { unbound: true }).url);
    const keys = await clientKeys();
    // Bad input first: the ticket survives it.
    await assert.rejects(
      f.accounts.claim({ ...claimOf(t, keys), csrPem: "garbage" }),
      refused("invalid"),
    );
    await assert.rejects(
      f.accounts.claim({ ...claimOf(t, keys), encryptionPublicKey: new Uint8Array(31) }),
      refused("invalid"),
    );
    await assert.rejects(
      f.accounts.claim({ ...claimOf(t, keys), encryptionPublicKey: new Uint8Array(32) }),
      refused("invalid"),
      "a low-order X25519 key",
    );
    await assert.rejects(
      f.accounts.claim({ ...claimOf(t, keys), wgPublicKey: "AAAA" }),
      refused("invalid"),
    );
    const p384 = await import("../../core/pki/mod.ts").then(async (pki) => {
      const k = await pki.generateKeyPair("P-384");
      return (await pki.generateCsr("device", { keys: k })).csrPem;
    });
    await assert.rejects(
      f.accounts.claim({ ...claimOf(t, keys), csrPem: p384 }),
      refused("invalid"),
    );
    await f.accounts.claim(claimOf(t, keys));
    // Another device's WireGuard key is refused, and the ticket survives that too.
    const copycat = tokenOf(f.accounts.createTicket("ann@example.com", { unbound: true }).url);
    await assert.rejects(
      f.accounts.claim({
        ...claimOf(copycat, await clientKeys()),
        wgPublicKey: toBase64(keys.wg!.publicKey),
      }),
      refused("invalid"),
    );
    await f.accounts.claim(claimOf(copycat, await clientKeys()));
    // Reused.
    await assert.rejects(
      f.accounts.claim(claimOf(t, await clientKeys())),
      refused("unauthenticated", TICKET_REFUSED),
    );
    // Unknown.
    await assert.rejects(
      f.accounts.claim(
        claimOf(toBase64Url(crypto.getRandomValues(new Uint8Array(32))), await clientKeys()),
      ),
      refused("unauthenticated", TICKET_REFUSED),
    );
    // Expired.
    const old = tokenOf(
      f.accounts.createTicket("ann@example.com", { ttlMs: 60_000, unbound: true }).url,
    );
    f.clock.now = new Date(f.clock.now.getTime() + 61_000);
    await assert.rejects(
      f.accounts.claim(claimOf(old, await clientKeys())),
      refused("unauthenticated", TICKET_REFUSED),
    );
    // A ticket of a user disabled after it was made.
    const user = f.accounts.createUser(ADMIN, "eve@example.com");
    const eve = tokenOf(f.accounts.createTicket("eve@example.com", { unbound: true }).url);
    f.accounts.service.mutate(
      { actor: ADMIN, action: "user.disable", target: { type: "user", id: user.id } },
      (tx) => tx.update({ status: "disabled" }),
    );
    await assert.rejects(
      f.accounts.claim(claimOf(eve, await clientKeys())),
      refused("unauthenticated"),
    );
    assert.throws(
      () => f.accounts.createTicket("eve@example.com", { unbound: true }),
      refused("precondition"),
    );
    assert.throws(
      () => f.accounts.createTicket("nobody@example.com", { unbound: true }),
      refused("not-found"),
    );
    // Only ticket hashes are stored.
    const hashes = f.state.db.prepare("SELECT token_hash FROM enrollment_tickets").all() as {
      token_hash: string;
    }[];
    assert.ok(hashes.every((h) => /^[0-9a-f]{64}$/.test(h.token_hash) && h.token_hash !== t));
  } finally {
    await f.close();
  }
});

Deno.test("accounts: two concurrent claims of one ticket on two database connections: exactly one wins", async () => {
  const f = await accountsFixture();
  const other = await f.second();
  try {
    f.accounts.createUser(ADMIN, "ann@example.com");
    for (let round = 0; round < 3; round++) {
      const t = new URL(f.accounts.createTicket("ann@example.com", { unbound: true }).url)
        .searchParams.get("token")!;
      const results = await Promise.allSettled([
        f.accounts.claim(claimOf(t, await clientKeys("a"))),
        other.accounts.claim(claimOf(t, await clientKeys("b"))),
      ]);
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 1, `round ${round}`);
      const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      refused("unauthenticated", TICKET_REFUSED)(lost.reason);
    }
    const devices = f.state.db.prepare("SELECT count(*) AS n FROM devices").get() as { n: number };
    assert.equal(devices.n, 3, "the loser left no device behind");
  } finally {
    other.close();
    await f.close();
  }
});

/** Ann with a password and two enrolled devices; Bob with one. */
async function twoUsers() {
  const f = await accountsFixture();
  f.addNode("fra-1");
  f.accounts.createUser(ADMIN, "ann@example.com");
  f.accounts.createUser(ADMIN, "bob@example.com");
  await f.accounts.setPassword(ADMIN, "ann@example.com", PASSWORD);
  await f.accounts.setPassword(ADMIN, "bob@example.com", PASSWORD + " bob");
  const enroll = async (email: string) => {
    const keys = await clientKeys();
    const t = new URL(f.accounts.createTicket(email, { unbound: true }).url).searchParams.get(
      "token",
    )!;
    const r = await f.accounts.claim(claimOf(t, keys));
    return { keys, r, fp: await fingerprintOf(r.deviceCertPem) };
  };
  return {
    f,
    ann1: await enroll("ann@example.com"),
    ann2: await enroll("ann@example.com"),
    bob: await enroll("bob@example.com"),
  };
}

Deno.test("accounts: sessions are bound to their device, expire, and are stored hashed; a device cannot log in as another account", async () => {
  const { f, ann1, ann2, bob } = await twoUsers();
  try {
    const s = await f.accounts.authenticate({ fingerprint: ann1.fp }, "ann@example.com", PASSWORD);
    assert.equal(s.userId, ann1.r.userId);
    assert.equal(s.keysEnrolled, false);
    assert.match(s.token, /^[A-Za-z0-9_-]{43}$/);
    // The token works from its device…
    await f.accounts.getProfile({ fingerprint: ann1.fp, token: s.token });
    // …not from another device, even of the same user, nor of another user.
    await assert.rejects(
      f.accounts.getProfile({ fingerprint: ann2.fp, token: s.token }),
      refused("unauthenticated", SESSION_REFUSED),
    );
    await assert.rejects(
      f.accounts.getProfile({ fingerprint: bob.fp, token: s.token }),
      refused("unauthenticated", SESSION_REFUSED),
    );
    // Bob's device cannot log in as Ann even with her password.
    await assert.rejects(
      f.accounts.authenticate({ fingerprint: bob.fp }, "ann@example.com", PASSWORD),
      refused("unauthenticated"),
    );
    // Certificate login.
    const dev = await f.accounts.authenticate({ fingerprint: bob.fp }, "", "");
    assert.equal(dev.userId, bob.r.userId);
    // No fingerprint, no call.
    await assert.rejects(f.accounts.getProfile({ token: s.token }), refused("unauthenticated"));
    // Expired after 12 h.
    f.clock.now = new Date(f.clock.now.getTime() + 12 * 3600_000 + 1);
    await assert.rejects(
      f.accounts.getProfile({ fingerprint: ann1.fp, token: s.token }),
      refused("unauthenticated", SESSION_REFUSED),
    );
    const stored = f.state.db.prepare("SELECT token_hash FROM sessions").all() as {
      token_hash: string;
    }[];
    assert.ok(stored.length >= 2 && stored.every((r) => /^[0-9a-f]{64}$/.test(r.token_hash)));
    assert.ok(!stored.some((r) => r.token_hash.includes(s.token)));
  } finally {
    await f.close();
  }
});

Deno.test("accounts: failed logins back off per account and per source, and the right password waits too", async () => {
  const { f, ann1, ann2 } = await twoUsers();
  try {
    for (let i = 0; i < FREE_FAILURES; i++) {
      await assert.rejects(
        f.accounts.authenticate({ fingerprint: ann1.fp }, "ann@example.com", "wrong password " + i),
        refused("unauthenticated"),
      );
    }
    // Locked: even the right password is refused, from this source and from another one.
    await assert.rejects(
      f.accounts.authenticate({ fingerprint: ann1.fp }, "ann@example.com", "still wrong!"),
      refused("unauthenticated"),
    );
    await assert.rejects(
      f.accounts.authenticate({ fingerprint: ann1.fp }, "ann@example.com", PASSWORD),
      refused("rate-limited"),
    );
    await assert.rejects(
      f.accounts.authenticate({ fingerprint: ann2.fp }, "ann@example.com", PASSWORD),
      refused("rate-limited"),
    );
    // Unknown accounts count against the source as well.
    await assert.rejects(
      f.accounts.authenticate({ fingerprint: ann1.fp }, "nobody@example.com", "x"),
      refused("rate-limited"),
    );
    // After the back-off the right password works and clears the counters.
    f.clock.now = new Date(f.clock.now.getTime() + 60_000);
    await f.accounts.authenticate({ fingerprint: ann2.fp }, "ann@example.com", PASSWORD);
    const left = f.state.db.prepare("SELECT key FROM login_attempts").all() as { key: string }[];
    assert.ok(!left.some((r) => r.key === "account:ann@example.com"));
  } finally {
    await f.close();
  }
});

Deno.test("accounts: EnrollKeys needs a session of the calling device, and replacing a key needs proof of the old one", async () => {
  const { f, ann1, bob } = await twoUsers();
  try {
    const account = generateEncryptionKeyPair();
    const wrapped = await wrapPrivateKey("wrap passphrase", account.privateKey);
    await assert.rejects(
      f.accounts.enrollKeys({ fingerprint: ann1.fp }, account.publicKey, wrapped),
      refused("unauthenticated"),
    );
    // A certificate login suffices for the first key.
    const dev = await f.accounts.authenticate({ fingerprint: ann1.fp }, "", "");
    const caller = { fingerprint: ann1.fp, token: dev.token };
    await assert.rejects(
      f.accounts.enrollKeys(caller, new Uint8Array(16), wrapped),
      refused("invalid"),
    );
    await assert.rejects(
      f.accounts.enrollKeys(caller, account.publicKey, new TextEncoder().encode("{}")),
      refused("invalid"),
    );
    await f.accounts.enrollKeys(caller, account.publicKey, wrapped);
    await f.accounts.enrollKeys(caller, account.publicKey, wrapped); // the same again: no-op
    // A relay forging Ann's fingerprint with Bob's session gets nothing.
    const bobPw = await f.accounts.authenticate(
      { fingerprint: bob.fp },
      "bob@example.com",
      PASSWORD + " bob",
    );
    await assert.rejects(
      f.accounts.enrollKeys(
        { fingerprint: ann1.fp, token: bobPw.token },
        generateEncryptionKeyPair().publicKey,
        wrapped,
      ),
      refused("unauthenticated"),
    );
    // Replacement: refused with a challenge sealed to the old key.
    const next = generateEncryptionKeyPair();
    const nextWrapped = await wrapPrivateKey("wrap passphrase", next.privateKey);
    let challenge = "";
    await assert.rejects(
      f.accounts.enrollKeys(caller, next.publicKey, nextWrapped),
      (e: unknown) => {
        refused("precondition")(e);
        challenge = (e as AccountError).metadata["pharos-key-challenge"];
        return true;
      },
    );
    await assert.rejects(
      f.accounts.enrollKeys(caller, next.publicKey, nextWrapped, "guess"),
      refused("precondition"),
    );
    // The guess burned nothing but the challenge is new; take the latest one.
    await assert.rejects(
      f.accounts.enrollKeys(caller, next.publicKey, nextWrapped),
      (e: unknown) => {
        challenge = (e as AccountError).metadata["pharos-key-challenge"];
        return true;
      },
    );
    const nonce = await openProfile(
      fromBase64(challenge),
      account.privateKey,
      f.accounts.signing.publicKey,
    );
    await f.accounts.enrollKeys(caller, next.publicKey, nextWrapped, toBase64Url(nonce));
    const row = f.state.db.prepare(
      "SELECT public_key FROM users WHERE email_key = 'ann@example.com'",
    ).get() as { public_key: Uint8Array };
    assert.deepEqual(new Uint8Array(row.public_key), next.publicKey);
    // A proof is good once.
    await assert.rejects(
      f.accounts.enrollKeys(caller, account.publicKey, wrapped, toBase64Url(nonce)),
      refused("precondition"),
    );
  } finally {
    await f.close();
  }
});

Deno.test("accounts: a revoked or disabled device is refused on every call; revocation removes its peers and reseals the others", async () => {
  const { f, ann1, ann2 } = await twoUsers();
  try {
    const before = (await f.accounts.getProfile({ fingerprint: ann2.fp })).revision;
    const s = await f.accounts.authenticate({ fingerprint: ann1.fp }, "ann@example.com", PASSWORD);
    const dev = f.devices.byFingerprint(ann1.fp)!;
    f.changed.length = 0;
    await f.accounts.revokeDevice(dev.id, ADMIN, "lost");
    assert.equal(f.revocations.has(dev.serial), true);
    assert.equal(
      (f.state.db.prepare("SELECT count(*) AS n FROM node_peers WHERE device_id = ?").get(
        dev.id,
      ) as { n: number }).n,
      0,
    );
    assert.equal(f.changed.flat().length, 1);
    for (
      const call of [
        () => f.accounts.getProfile({ fingerprint: ann1.fp }),
        () => f.accounts.getProfile({ fingerprint: ann1.fp, token: s.token }),
        () => f.accounts.authenticate({ fingerprint: ann1.fp }, "", ""),
        () => f.accounts.authenticate({ fingerprint: ann1.fp }, "ann@example.com", PASSWORD),
      ]
    ) await assert.rejects(call(), refused("unauthenticated"));
    assert.ok((await f.accounts.getProfile({ fingerprint: ann2.fp })).revision > before);
    // Disabled (reversible) is refused the same way.
    const other = f.devices.byFingerprint(ann2.fp)!;
    f.devices.setStatus(other.id, "disabled");
    await assert.rejects(
      f.accounts.getProfile({ fingerprint: ann2.fp }),
      refused("unauthenticated"),
    );
    f.devices.setStatus(other.id, "active");
    await f.accounts.getProfile({ fingerprint: ann2.fp });
  } finally {
    await f.close();
  }
});

Deno.test("accounts: a node's new AmneziaWG key reseals every profile; disabling a device takes its peers away, enabling gives them back", async () => {
  const { f, ann1, ann2 } = await twoUsers();
  try {
    const nodeId = [...f.nodeKeys.keys()][0];
    const open = async (who: typeof ann1) =>
      decodeProfileDocument(
        await openProfile(
          (await f.accounts.getProfile({ fingerprint: who.fp })).ciphertext,
          who.keys.encryption.privateKey,
          who.r.signingPublicKey,
        ),
      );
    const before = await open(ann1);
    // The fixture's lookup takes precedence over the table; drop it to use the column.
    f.nodeKeys.delete(nodeId);
    const fresh = toBase64(generateEncryptionKeyPair().publicKey);
    const g = await accountsFixtureOnSameState(f);
    await g.nodeKeyObserved(nodeId, fresh);
    const after = await open(ann1);
    assert.ok(after.revision > before.revision);
    assert.equal(
      (after.profiles[0].nodes[0].protocols[0] as AmneziaWgProtocol).params.public_key,
      fresh,
    );
    await assert.rejects(g.nodeKeyObserved(nodeId, "not a key"), { code: "invalid" });

    const dev = f.devices.byFingerprint(ann2.fp)!;
    const peers = () =>
      (f.state.db.prepare("SELECT count(*) AS n FROM node_peers WHERE device_id = ?").get(
        dev.id,
      ) as { n: number }).n;
    assert.equal(peers(), 1);
    await g.setDeviceStatus(dev.id, "disabled", ADMIN);
    assert.equal(peers(), 0);
    await assert.rejects(g.getProfile({ fingerprint: ann2.fp }), refused("unauthenticated"));
    await g.setDeviceStatus(dev.id, "active", ADMIN);
    assert.equal(peers(), 1);
    await g.getProfile({ fingerprint: ann2.fp });

    const listed = g.listDevices("ann@example.com");
    assert.equal(listed.length, 2);
    assert.ok(
      listed.every((d) =>
        d.email === "ann@example.com" && d.status === "active" && d.profileRevision! >= 1
      ),
    );
    assert.equal(g.listDevices().length, 3);
    assert.throws(() => g.listDevices("nobody@example.com"), refused("not-found"));
  } finally {
    await f.close();
  }
});

/** Accounts on the fixture's state reading node keys from the `nodes` table (as the controller does). */
async function accountsFixtureOnSameState(f: Awaited<ReturnType<typeof accountsFixture>>) {
  const { Accounts } = await import("../../controller/accounts/mod.ts");
  return await Accounts.open({
    db: f.state.db,
    keystore: f.state.keystore,
    pki: f.state.pki,
    devices: f.devices,
    relay: { addr: "localhost:8443" },
    now: () => f.clock.now,
  });
}

Deno.test("accounts: a device picks its cascade exit; the entry's peer is bound to the path, the entry node is told, the profile shows the cascade", async () => {
  const f = await accountsFixture();
  try {
    const entry = f.addNode("fra-1");
    const exit = f.addNode("ams-1");
    f.accounts.service.mutate(
      { actor: ADMIN, action: "path.create", target: { type: "path", id: "p1" }, expectVersion: 0 },
      (tx) => tx.insert({ entry_node_id: entry, exit_node_id: exit, created_at: tx.now }),
    );
    f.accounts.createUser(ADMIN, "ann@example.com");
    const keys = await clientKeys();
    const t = new URL(f.accounts.createTicket("ann@example.com", { unbound: true }).url)
      .searchParams.get("token")!;
    const r = await f.accounts.claim(claimOf(t, keys));
    const fp = await fingerprintOf(r.deviceCertPem);
    const open = async () =>
      decodeProfileDocument(
        await openProfile(
          (await f.accounts.getProfile({ fingerprint: fp })).ciphertext,
          keys.encryption.privateKey,
          r.signingPublicKey,
        ),
      );
    assert.deepEqual((await open()).profiles.map((p) => p.id), ["pspec_default"]);
    f.changed.length = 0;
    await f.accounts.selectExit({ fingerprint: fp }, exit);
    assert.deepEqual(f.changed, [[entry]]);
    const pathOf = (node: string) =>
      (f.state.db.prepare("SELECT path_id FROM node_peers WHERE node_id = ?").get(node) as {
        path_id: string | null;
      }).path_id;
    assert.equal(pathOf(entry), "p1");
    assert.equal(pathOf(exit), null);
    const doc = await open();
    const cascade = doc.profiles.find((p) => p.id === "path_p1")!;
    assert.equal(cascade.nodes[0].id, entry);
    assert.deepEqual(cascade.path!.hops.map((h) => [h.id, h.role]), [[entry, "entry"], [
      exit,
      "exit",
    ]]);
    assert.equal(cascade.mtu, 1340);
    assert.deepEqual(
      doc.profiles[0].nodes.map((n) => n.id),
      [exit],
      "the exit is still a direct node",
    );
    // No path to this exit: refused, nothing changed.
    await assert.rejects(f.accounts.selectExit({ fingerprint: fp }, entry), refused("not-found"));
    assert.equal(pathOf(entry), "p1");
    // Back to direct.
    await f.accounts.selectExit({ fingerprint: fp }, null);
    assert.equal(pathOf(entry), null);
    assert.deepEqual((await open()).profiles.map((p) => p.id), ["pspec_default"]);
  } finally {
    await f.close();
  }
});
