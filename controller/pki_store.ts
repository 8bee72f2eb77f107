/**
 * The controller's CA: created once (the controller's first start or
 * `cox init`, see state.ts), kept in the database with the private keys
 * sealed by the keystore, never copied off the controller.
 */
import * as pki from "../core/pki/mod.ts";
import { type Db, statement, transaction } from "./db/sqlite.ts";
import type { Keystore } from "./keystore.ts";

export interface ControllerPki {
  cas: pki.Pki;
  trust: pki.TrustStore;
  /** Root CA fingerprint (hex SHA-256 of DER), as join links pin it. */
  rootFingerprint: string;
}

type CaName = "root" | "fleet" | "device";
const NAMES: CaName[] = ["root", "fleet", "device"];

interface CaRow {
  name: CaName;
  cert_pem: string;
  key_sealed: Uint8Array;
}

/** True when the database holds a CA (any row of it). */
export function hasPki(db: Db): boolean {
  return statement(db, "SELECT 1 FROM ca LIMIT 1").get() !== undefined;
}

/** Makes a new CA and stores it, keys sealed; the database must hold none yet. */
export async function createPki(db: Db, keys: Keystore): Promise<ControllerPki> {
  const cas = await pki.createPki();
  const prepared = await Promise.all(NAMES.map(async (n) => ({
    n,
    sealed: await keys.seal(await pki.exportPrivateKeyDer(cas[n].privateKey), `ca:${n}`),
    fingerprint: await pki.caFingerprint(cas[n].cert),
  })));
  const now = new Date().toISOString();
  transaction(db, () => {
    const insert = statement(
      db,
      "INSERT INTO ca (name, cert_pem, key_sealed, fingerprint, not_after, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
    );
    for (const { n, sealed, fingerprint } of prepared) {
      insert.run(
        n,
        pki.certPem(cas[n].cert),
        sealed,
        fingerprint,
        cas[n].cert.notAfter.toISOString(),
        now,
      );
    }
  });
  return await withTrust(cas);
}

/** Loads the stored CA, unsealing its keys; the database must hold one. */
export async function loadPki(db: Db, keys: Keystore): Promise<ControllerPki> {
  const rows = statement(db, "SELECT name, cert_pem, key_sealed FROM ca")
    .all() as unknown as CaRow[];
  if (rows.length !== 3) {
    throw new pki.PkiError(
      "malformed",
      `the ca table holds ${rows.length} rows instead of 3; restore the database`,
    );
  }
  const byName = new Map(rows.map((r) => [r.name, r]));
  const load = async (n: CaName): Promise<pki.CaMaterial> => {
    const row = byName.get(n)!;
    const der = await keys.open(row.key_sealed, `ca:${n}`);
    return {
      cert: pki.parseCertificate(row.cert_pem),
      privateKey: (await pki.importKeyPair(der)).privateKey,
    };
  };
  return await withTrust({
    root: await load("root"),
    fleet: await load("fleet"),
    device: await load("device"),
  });
}

async function withTrust(cas: pki.Pki): Promise<ControllerPki> {
  const trust = await pki.TrustStore.create({
    root: cas.root.cert,
    fleetCa: cas.fleet.cert,
    deviceCa: cas.device.cert,
  });
  return { cas, trust, rootFingerprint: await pki.caFingerprint(cas.root.cert) };
}
