// deno-lint-ignore-file no-explicit-any
/**
 * AccountSync through relays: a device claims a ticket through the
 * controller's embedded relay, logs in, fetches and decrypts its profile;
 * a forged fingerprint or another device's token gets nothing; concurrent
 * claims of one ticket yield one device; the controller refuses a revoked
 * device that a remote relay (which never heard of the revocation) still
 * lets through; and the database, its WAL and the logs hold no usable
 * secret.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { Accounts, accountSyncService, SESSION_REFUSED } from "../../controller/accounts/mod.ts";
import { Devices } from "../../controller/devices.ts";
import { DEVICE_REFUSED } from "../../controller/grpc/device_guard.ts";
import { createControllerGrpc } from "../../controller/grpc/server.ts";
import { Revocations } from "../../controller/revocation.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { openState } from "../../controller/state.ts";
import { fromBase64, toBase64, toBase64Url, toHex } from "../../core/encoding.ts";
import { createLogger } from "../../core/log.ts";
import * as pki from "../../core/pki/mod.ts";
import { type AmneziaWgProtocol, decodeProfileDocument } from "../../core/profile/mod.ts";
import { generateEncryptionKeyPair, openProfile, wrapPrivateKey } from "../../core/seal/mod.ts";
import { ACCOUNT_PROTO, loadProto } from "../../proto/load.ts";
import { startRelay } from "../../relay/relay.ts";
import { type ClientKeys, clientKeys } from "../support/accounts_fixture.ts";
import { relayController } from "../support/client_fixture.ts";
import type { Fleet } from "../support/pki_fixture.ts";
import { unary } from "../support/relay_harness.ts";
import { startTunnel } from "../support/tunnel_fixture.ts";
import { closeClients, WAIT_MS, within } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const accountPkg = (grpc.loadPackageDefinition(loadProto(ACCOUNT_PROTO)) as any).pharos.account.v1;
const ADMIN = "cli:admin";
const ANN_PASSWORD = "ann's long password";
const BOB_PASSWORD = "bob's long password";

interface Enrolled {
  keys: ClientKeys;
  certPem: string;
  signingKey: Uint8Array;
  client: any;
}

/** Claims `link` through the relay at `port` the way a client does, then connects with the new cert. */
async function enrollThrough(
  port: number,
  rootPem: string,
  link: string,
  clients: any[],
  ownWg = true,
): Promise<Enrolled> {
  const keys = await clientKeys("phone", ownWg);
  const claimClient = new accountPkg.AccountSync(
    `localhost:${port}`,
    grpc.credentials.createSsl(Buffer.from(rootPem)),
  );
  clients.push(claimClient);
  const md = new grpc.Metadata();
  if (keys.wg) md.set("pharos-wg-public-key", toBase64(keys.wg.publicKey));
  const { res } = await unary(claimClient, "ClaimEnrollment", {
    token: new URL(link).searchParams.get("token"),
    csr_pem: Buffer.from(keys.csrPem),
    device_name: "phone",
    platform: "caravel",
    encryption_pubkey: Buffer.from(keys.encryption.publicKey),
  }, md);
  const certPem = new TextDecoder().decode(res.device_cert_pem);
  const chain = certPem + new TextDecoder().decode(res.fleet_ca_pem);
  const client = new accountPkg.AccountSync(
    `localhost:${port}`,
    grpc.credentials.createSsl(Buffer.from(rootPem), Buffer.from(keys.keyPem), Buffer.from(chain)),
  );
  clients.push(client);
  return { keys, certPem, signingKey: new Uint8Array(res.signing_public_key), client };
}

function session(token?: string, extra: Record<string, string> = {}): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token) md.set("pharos-session", token);
  for (const [k, v] of Object.entries(extra)) md.set(k, v);
  return md;
}

async function refused(p: Promise<unknown>, code: grpc.status, details?: string): Promise<void> {
  await assert.rejects(p, (e: any) => {
    assert.equal(e.code, code, e.details);
    if (details) assert.equal(e.details, details);
    return true;
  });
}

/** Every form a secret could be written in: raw, base64, base64url, hex. */
function forms(secret: Uint8Array | string): Uint8Array[] {
  const bytes = typeof secret === "string" ? new TextEncoder().encode(secret) : secret;
  const text = [toBase64(bytes), toBase64Url(bytes), toHex(bytes), toHex(bytes).toUpperCase()];
  return [bytes, ...text.map((t) => new TextEncoder().encode(t))];
}

function leaks(haystack: Uint8Array, secrets: Record<string, Uint8Array | string>): string[] {
  const buf = Buffer.from(haystack);
  return Object.entries(secrets).filter(([, s]) =>
    forms(s).some((f) => buf.indexOf(Buffer.from(f)) !== -1)
  ).map(([name]) => name);
}

async function readIf(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch {
    return new Uint8Array(0);
  }
}

Deno.test({
  name:
    "accounts: claim, login and profile through the embedded relay; forged fingerprints and foreign tokens get nothing; no secret at rest",
  ...opts,
  fn: async () => {
    const logs: string[] = [];
    const changed: string[][] = [];
    // The clients below dial the relay as "localhost", the name in its certificate.
    const fx = await relayController({
      relayHosts: "localhost",
      logSink: (l) => logs.push(l),
      onPeersChanged: (ids) => changed.push(ids),
    });
    const { ctl, dir, port, rootPem } = fx;
    const clients: any[] = [];
    const secrets: Record<string, Uint8Array | string> = {
      "ann's password": ANN_PASSWORD,
      "bob's password": BOB_PASSWORD,
      "profile-signing seed": ctl.accounts.signing.privateKey,
    };
    try {
      const nodes = new Nodes(new Service(ctl.state.db));
      const node = nodes.create(ADMIN, { name: "fra-1", host: "203.0.113.7", region: "fra1" });
      await ctl.accounts.nodeKeyObserved(node.id, toBase64(generateEncryptionKeyPair().publicKey));
      const a = ctl.accounts;
      a.createUser(ADMIN, "ann@example.com");
      a.createUser(ADMIN, "bob@example.com");
      await a.setPassword(ADMIN, "ann@example.com", ANN_PASSWORD);
      await a.setPassword(ADMIN, "bob@example.com", BOB_PASSWORD);

      const annLink = a.createTicket("ann@example.com", { actor: ADMIN, unbound: true }).url;
      assert.ok(annLink.includes(`relay=localhost%3A${port}`), annLink);
      secrets["ann's ticket"] = new URL(annLink).searchParams.get("token")!;
      // Bad input is INVALID_ARGUMENT and consumes nothing.
      const probe = new accountPkg.AccountSync(
        `localhost:${port}`,
        grpc.credentials.createSsl(Buffer.from(rootPem)),
      );
      clients.push(probe);
      await refused(
        unary(probe, "ClaimEnrollment", {
          token: secrets["ann's ticket"],
          csr_pem: Buffer.from("not a csr"),
          encryption_pubkey: Buffer.from(new Uint8Array(32).fill(9)),
        }),
        grpc.status.INVALID_ARGUMENT,
      );
      const ann = await enrollThrough(port, rootPem, annLink, clients);
      // Bob's client cannot make a WireGuard key: the controller makes it.
      const bobLink = a.createTicket("bob@example.com", { unbound: true }).url;
      secrets["bob's ticket"] = new URL(bobLink).searchParams.get("token")!;
      const bob = await enrollThrough(port, rootPem, bobLink, clients, false);
      assert.deepEqual(ann.signingKey, a.signing.publicKey);
      assert.deepEqual(changed.flat(), [node.id, node.id]);
      // The reused ticket is refused through the relay too.
      await refused(
        enrollThrough(port, rootPem, annLink, clients),
        grpc.status.UNAUTHENTICATED,
      );

      // Concurrent claims of one ticket through the relay: one device.
      const race = a.createTicket("ann@example.com", { unbound: true }).url;
      const results = await Promise.allSettled([
        enrollThrough(port, rootPem, race, clients),
        enrollThrough(port, rootPem, race, clients),
      ]);
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);

      // Log in with a password, enroll an account key, fetch and decrypt.
      const login = await unary(ann.client, "Authenticate", {
        email: "ann@example.com",
        password: ANN_PASSWORD,
      });
      const annToken = login.res.session_token;
      secrets["ann's session"] = annToken;
      assert.equal(login.res.keys_enrolled, false);
      const account = generateEncryptionKeyPair();
      secrets["ann's account private key"] = account.privateKey;
      await unary(ann.client, "EnrollKeys", {
        public_key: Buffer.from(account.publicKey),
        wrapped_private_key: Buffer.from(await wrapPrivateKey("wrap it", account.privateKey)),
      }, session(annToken));
      const got = (await unary(ann.client, "GetProfile", {}, session(annToken))).res;
      assert.equal(got.wrapped_private_key.length, 0);
      const plain = await openProfile(
        new Uint8Array(got.ciphertext),
        ann.keys.encryption.privateKey,
        ann.signingKey,
      );
      const doc = decodeProfileDocument(plain);
      assert.equal(doc.user, login.res.user_id);
      assert.equal(String(doc.revision), got.revision);
      const annAwg = (doc.profiles[0].nodes[0].protocols[0] as AmneziaWgProtocol).params;
      secrets["ann's preshared key"] = fromBase64(annAwg.preshared_key!);
      secrets["ann's profile plaintext"] = plain;

      const bobLogin = await unary(bob.client, "Authenticate", { email: "", password: "" });
      secrets["bob's session"] = bobLogin.res.session_token;
      const bobGot = (await unary(bob.client, "GetProfile", {})).res;
      const bobDoc = decodeProfileDocument(
        await openProfile(
          new Uint8Array(bobGot.ciphertext),
          bob.keys.encryption.privateKey,
          bob.signingKey,
        ),
      );
      const bobAwg = (bobDoc.profiles[0].nodes[0].protocols[0] as AmneziaWgProtocol).params;
      secrets["bob's WireGuard private key (controller-made)"] = fromBase64(bobAwg.private_key);
      secrets["bob's preshared key"] = fromBase64(bobAwg.preshared_key!);

      // Exit selection over the same channel: a path fra-1 → ams-1, asked for in GetProfile.
      const exit = nodes.create(ADMIN, { name: "ams-1", host: "203.0.113.8", region: "ams1" });
      await ctl.accounts.nodeKeyObserved(exit.id, toBase64(generateEncryptionKeyPair().publicKey));
      new Service(ctl.state.db).mutate(
        {
          actor: ADMIN,
          action: "path.create",
          target: { type: "path", id: "p1" },
          expectVersion: 0,
        },
        (tx) => tx.insert({ entry_node_id: node.id, exit_node_id: exit.id, created_at: tx.now }),
      );
      changed.length = 0;
      const viaExit = await unary(
        ann.client,
        "GetProfile",
        {},
        session(annToken, { "pharos-exit-node": exit.id }),
      );
      const cascadeDoc = decodeProfileDocument(
        await openProfile(
          new Uint8Array(viaExit.res.ciphertext),
          ann.keys.encryption.privateKey,
          ann.signingKey,
        ),
      );
      assert.deepEqual(cascadeDoc.profiles.map((p) => p.id).sort(), ["path_p1", "pspec_default"]);
      assert.ok(changed.some((ids) => ids.includes(node.id)), "the entry node is told");
      await refused(
        unary(ann.client, "GetProfile", {}, session(annToken, { "pharos-exit-node": "nowhere" })),
        grpc.status.NOT_FOUND,
      );

      // Ann's device forging Bob's fingerprint: the relay strips the header, the
      // controller serves Ann's own profile.
      const bobFp = await pki.deviceFingerprint(pki.parseCertificate(bob.certPem));
      const forged = await unary(
        ann.client,
        "GetProfile",
        {},
        session(undefined, { "x-pharos-device-fp": bobFp }),
      );
      const forgedDoc = decodeProfileDocument(
        await openProfile(
          new Uint8Array(forged.res.ciphertext),
          ann.keys.encryption.privateKey,
          ann.signingKey,
        ),
      );
      assert.equal(forgedDoc.user, login.res.user_id);
      // …and with Bob's session token as well: refused (bound to Bob's device).
      await refused(
        unary(
          ann.client,
          "GetProfile",
          {},
          session(bobLogin.res.session_token, { "x-pharos-device-fp": bobFp }),
        ),
        grpc.status.UNAUTHENTICATED,
        SESSION_REFUSED,
      );
      // Ann's device cannot log in as Bob.
      await refused(
        unary(ann.client, "Authenticate", { email: "bob@example.com", password: BOB_PASSWORD }),
        grpc.status.UNAUTHENTICATED,
        "invalid credentials",
      );
      // Without a certificate only the claim passes (the relay refuses the rest).
      const bare = new accountPkg.AccountSync(
        `localhost:${port}`,
        grpc.credentials.createSsl(Buffer.from(rootPem)),
      );
      clients.push(bare);
      await refused(unary(bare, "GetProfile", {}, session(annToken)), grpc.status.UNAUTHENTICATED);

      // Nothing usable at rest: the database, its WAL (live) and the logs.
      const dbPath = `${dir}/state/pharos.db`;
      const live = [await readIf(dbPath), await readIf(`${dbPath}-wal`)];
      const logBytes = new TextEncoder().encode(logs.join("\n"));
      for (
        const [what, bytes] of [["database", live[0]], ["WAL", live[1]], [
          "logs",
          logBytes,
        ]] as const
      ) {
        assert.deepEqual(leaks(bytes, secrets), [], `secrets in the ${what}`);
      }
      // The search does find what is there: Ann's WireGuard public key (base64 in node_peers).
      const both = new Uint8Array([...live[0], ...live[1]]);
      assert.deepEqual(leaks(both, { wg: ann.keys.wg!.publicKey }), ["wg"]);
    } finally {
      await closeClients(clients, ctl.relays.embedded);
      await fx.stop();
    }
    try {
      const dbPath = `${dir}/state/pharos.db`;
      assert.deepEqual(leaks(await readIf(dbPath), secrets), [], "secrets in the closed database");
      assert.deepEqual(leaks(await readIf(`${dbPath}-wal`), secrets), []);
    } finally {
      await fx.close();
    }
  },
});

/** A Fleet issuing from the CAs of a controller state. */
function stateFleet(st: { pki: { cas: pki.Pki; trust: pki.TrustStore } }): Fleet {
  return {
    pki: st.pki.cas,
    trust: st.pki.trust,
    rootPem: pki.certPem(st.pki.cas.root.cert),
    issue: async (profile, o) => {
      const csr = await pki.generateCsr(profile.kind === "device" ? "device" : "relay");
      const cert = await pki.issueLeaf(st.pki.cas, csr.csrPem, profile, o);
      const ca = profile.kind === "device" ? st.pki.cas.device.cert : st.pki.cas.fleet.cert;
      return { cert, chainPem: pki.bundlePem([cert, ca]), keyPem: csr.keyPem };
    },
  };
}

Deno.test({
  name:
    "accounts: a revoked device is refused by the controller through a remote relay that never heard of the revocation",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const st = await openState(`${dir}/state`, { create: true });
    const revocations = new Revocations(st.db);
    const devices = new Devices(st.db, revocations);
    const fleet = stateFleet(st);
    const relayLeaf = await fleet.issue({ kind: "relay", hosts: ["localhost", "127.0.0.1"] });
    const grpcLogs: string[] = [];
    const log = createLogger("grpc", { sink: (l) => grpcLogs.push(l) });
    const clients: any[] = [];
    let relayPort = 0;
    const accounts = await Accounts.open({
      db: st.db,
      keystore: st.keystore,
      pki: st.pki,
      devices,
      relay: () => ({ addr: `localhost:${relayPort}` }),
    });
    const server = await fleet.issue({ kind: "controller-server" });
    const g = createControllerGrpc({
      certPem: server.chainPem,
      keyPem: server.keyPem,
      fleetCaPem: pki.certPem(fleet.pki.fleet.cert),
      trust: fleet.trust,
      revoked: revocations.list,
      devices,
      log,
      services: [accountSyncService(accounts, log)],
    });
    // The relay's policy never carries a revocation.
    const t = await startTunnel((c) => g.accept(c), fleet, relayLeaf, { revokedSerials: [] });
    const relay = await within(
      startRelay({
        listen: { hostname: "127.0.0.1", port: 0 },
        certPem: relayLeaf.chainPem,
        keyPem: relayLeaf.keyPem,
        caPem: fleet.rootPem + pki.certPem(fleet.pki.fleet.cert),
        deviceCaPem: pki.certPem(fleet.pki.device.cert),
        trust: fleet.trust,
        revoked: t.policy.revoked,
        transport: t.transport,
        log: createLogger("relay", { sink: () => {} }),
      }),
      WAIT_MS,
      "the relay to start",
    );
    relayPort = relay.port;
    try {
      accounts.createUser(ADMIN, "ann@example.com");
      const link = accounts.createTicket("ann@example.com", { unbound: true }).url;
      const ann = await enrollThrough(relay.port, fleet.rootPem, link, clients);
      const s = await unary(ann.client, "Authenticate", { email: "", password: "" });
      await unary(ann.client, "GetProfile", {}, session(s.res.session_token));

      const fp = await pki.deviceFingerprint(pki.parseCertificate(ann.certPem));
      const device = devices.byFingerprint(fp)!;
      await accounts.revokeDevice(device.id, ADMIN, "stolen");
      assert.equal(t.policy.revoked.has(device.serial), false, "the relay does not know");
      for (const [method, req] of [["GetProfile", {}], ["Authenticate", { email: "" }]] as const) {
        await refused(
          unary(ann.client, method, req, session(s.res.session_token)),
          grpc.status.UNAUTHENTICATED,
          DEVICE_REFUSED,
        );
      }
      assert.ok(grpcLogs.some((l) => JSON.parse(l).code === "device-revoked"));
    } finally {
      await closeClients(clients, relay);
      await within(relay.close(), WAIT_MS, "the relay to close");
      await within(t.transport.close!(), WAIT_MS, "the tunnel to close");
      g.close();
      st.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
