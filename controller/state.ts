/**
 * Opens (or, on first run, creates) the controller's state directory: the
 * database, the keystore and the PKI.
 */
import { type Db, openDatabase } from "./db/sqlite.ts";
import { Keystore } from "./keystore.ts";
import { type ControllerPki, loadOrCreatePki } from "./pki_store.ts";

export interface ControllerState {
  dir: string;
  db: Db;
  keystore: Keystore;
  pki: ControllerPki;
  /** True when this call created a new PKI. */
  created: boolean;
  close(): void;
}

export async function openState(dir: string): Promise<ControllerState> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const keystore = await Keystore.open(dir);
  const db = openDatabase(`${dir}/pharos.db`);
  try {
    const { pki, created } = await loadOrCreatePki(db, keystore);
    return { dir, db, keystore, pki, created, close: () => db.close() };
  } catch (e) {
    db.close();
    throw e;
  }
}
