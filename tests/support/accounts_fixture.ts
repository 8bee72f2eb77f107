/**
 * A controller state with the accounts service on it, for the accounts
 * tests: real database file, real keystore and CA, nodes with known
 * AmneziaWG keys, and helpers that enroll a device the way a client does
 * (its own P-256 key + CSR, X25519 key, optionally its own WireGuard key).
 */
import { Accounts, type AccountsOptions } from "../../controller/accounts/mod.ts";
import { Devices } from "../../controller/devices.ts";
import { Revocations } from "../../controller/revocation.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { type ControllerState, openState } from "../../controller/state.ts";
import { toBase64 } from "../../core/encoding.ts";
import * as pki from "../../core/pki/mod.ts";
import { generateEncryptionKeyPair, type KeyPair } from "../../core/seal/mod.ts";

export const ADMIN = "cli:admin";

export interface AccountsFixture {
  dir: string;
  state: ControllerState;
  revocations: Revocations;
  devices: Devices;
  accounts: Accounts;
  /** Node id → AmneziaWG public key the profile builder sees. */
  nodeKeys: Map<string, string>;
  changed: string[][];
  clock: { now: Date };
  /** Adds a node with a known AmneziaWG key. */
  addNode(name: string): string;
  /** A second Accounts on its own database connection (another process, in effect). */
  second(): Promise<{ accounts: Accounts; close(): void }>;
  close(): Promise<void>;
}

export interface ClientKeys {
  csrPem: string;
  keyPem: string;
  encryption: KeyPair;
  wg?: KeyPair;
}

/** What a client makes before it claims. */
export async function clientKeys(name = "phone", ownWg = true): Promise<ClientKeys> {
  const csr = await pki.generateCsr("device", { name });
  return {
    csrPem: csr.csrPem,
    keyPem: csr.keyPem,
    encryption: generateEncryptionKeyPair(),
    wg: ownWg ? generateEncryptionKeyPair() : undefined,
  };
}

export function claimOf(token: string, keys: ClientKeys) {
  return {
    token,
    csrPem: keys.csrPem,
    deviceName: "phone",
    platform: "caravel",
    encryptionPublicKey: keys.encryption.publicKey,
    wgPublicKey: keys.wg ? toBase64(keys.wg.publicKey) : undefined,
  };
}

export async function accountsFixture(
  extra: Partial<AccountsOptions> = {},
): Promise<AccountsFixture> {
  const dir = await Deno.makeTempDir();
  const state = await openState(`${dir}/state`, { create: true });
  const revocations = new Revocations(state.db);
  const devices = new Devices(state.db, revocations);
  const nodeKeys = new Map<string, string>();
  const changed: string[][] = [];
  const clock = { now: new Date() };
  const options = (db = state.db): AccountsOptions => ({
    db,
    keystore: state.keystore,
    pki: state.pki,
    devices: db === state.db ? devices : new Devices(db, new Revocations(db)),
    relay: { addr: "localhost:8443" },
    nodeKeys: (id) => nodeKeys.get(id),
    onPeersChanged: (ids) => changed.push(ids),
    now: () => clock.now,
    ...extra,
  });
  const accounts = await Accounts.open(options());
  const nodes = new Nodes(new Service(state.db));
  return {
    dir,
    state,
    revocations,
    devices,
    accounts,
    nodeKeys,
    changed,
    clock,
    addNode(name) {
      const n = nodes.create(ADMIN, {
        name,
        host: `203.0.113.${nodeKeys.size + 10}`,
        region: "fra1",
      });
      nodeKeys.set(n.id, toBase64(generateEncryptionKeyPair().publicKey));
      return n.id;
    },
    async second() {
      const { openDatabase } = await import("../../controller/db/sqlite.ts");
      const db = openDatabase(`${dir}/state/pharos.db`);
      return { accounts: await Accounts.open(options(db)), close: () => db.close() };
    },
    async close() {
      state.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** The device fingerprint of a claimed certificate, as a relay would inject it. */
export async function fingerprintOf(certPem: string): Promise<string> {
  return await pki.deviceFingerprint(pki.parseCertificate(certPem));
}
