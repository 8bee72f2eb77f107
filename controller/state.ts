/**
 * The controller's state directory: the database, `secret.key` (which seals
 * the keys in the database) and the PKI kept in it.
 *
 * Rules, so that a mistyped path or a lost file never silently yields a new
 * CA or a new key:
 * - Only `openState(dir, { create: true })` (the controller's start and
 *   `cox init`) makes a state: the directory, `secret.key`, the database and
 *   the CA. Every other caller gets a StateError naming the path when there
 *   is no database or no CA in it.
 * - `secret.key` is only ever created together with a new database, never
 *   beside an existing one: a database without its key is an error telling
 *   the operator to restore the key from backup.
 * - The directory is 0700, `secret.key` and the database files (with -wal
 *   and -shm) 0600; a wider mode found at open is narrowed.
 */
import { PharosError } from "../core/errors.ts";
import { type Db, openDatabase } from "./db/sqlite.ts";
import { Keystore, SECRET_FILE } from "./keystore.ts";
import { type ControllerPki, createPki, hasPki, loadPki } from "./pki_store.ts";

export class StateError extends PharosError {}

/** The database's file name in the state directory. */
export const DATABASE_FILE = "pharos.db";

export interface ControllerState {
  dir: string;
  db: Db;
  keystore: Keystore;
  pki: ControllerPki;
  /** True when this call created a new PKI. */
  created: boolean;
  close(): void;
}

export interface OpenStateOptions {
  /**
   * Make a new state (directory, secret.key, database, CA) where there is
   * none. Only the controller's start and `cox init` pass true.
   */
  create?: boolean;
}

type PathKind = "missing" | "dir" | "file";

async function pathKind(path: string): Promise<PathKind> {
  try {
    return (await Deno.stat(path)).isDirectory ? "dir" : "file";
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "missing";
    throw new StateError("unusable-state", `cannot inspect ${path}: ${(e as Error).message}`);
  }
}

function howToCreate(dir: string): string {
  return `a new state is made only by the controller's first start ("deno task controller --state ${dir}") or by "deno task cox init --state ${dir}"`;
}

/** Mode of the state directory: it holds secret.key and the sealed CA keys. */
export const STATE_DIR_MODE = 0o700;

/** Narrows the state directory to its owner (umask may have widened it; best effort). */
async function ownerOnlyDir(dir: string): Promise<void> {
  try {
    const mode = (await Deno.stat(dir)).mode;
    if (mode !== null && (mode & 0o777) !== STATE_DIR_MODE) await Deno.chmod(dir, STATE_DIR_MODE);
  } catch {
    // not ours to change; the files inside are 0600 regardless
  }
}

export async function openState(
  dir: string,
  opts: OpenStateOptions = {},
): Promise<ControllerState> {
  const create = opts.create ?? false;
  const dbPath = `${dir}/${DATABASE_FILE}`;
  const keyPath = `${dir}/${SECRET_FILE}`;
  const dirKind = await pathKind(dir);
  if (dirKind === "file") {
    throw new StateError(
      "not-a-directory",
      `the state directory ${dir} is a file; check --state (PHAROS_STATE)`,
    );
  }
  const dbExists = dirKind === "dir" && await pathKind(dbPath) !== "missing";
  if (!dbExists && !create) {
    throw new StateError(
      "no-state",
      `no controller state in ${dir} (${dbPath} does not exist): check --state (PHAROS_STATE); ${
        howToCreate(dir)
      }`,
    );
  }
  const keyExists = dirKind === "dir" && await pathKind(keyPath) !== "missing";
  if (dbExists && !keyExists) {
    throw new StateError(
      "missing-secret",
      `${dbPath} exists but ${keyPath} is missing: restore secret.key from your backup (the keys in the database are sealed with it; a new key could not open them, so none is made)`,
    );
  }
  if (dirKind === "missing") {
    try {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new StateError(
        "unusable-state",
        `cannot create the state directory ${dir}: ${
          (e as Error).message
        }; choose another --state (PHAROS_STATE)`,
      );
    }
  }
  await ownerOnlyDir(dir);
  // No database yet: a new key goes with the new database (an existing key
  // is kept — it is what an interrupted first start left behind).
  const keystore = keyExists ? await Keystore.open(dir) : await Keystore.create(dir);
  let db: Db;
  try {
    db = openDatabase(dbPath);
  } catch (e) {
    throw new StateError("bad-database", `cannot open ${dbPath}: ${(e as Error).message}`);
  }
  try {
    let pki: ControllerPki;
    let created = false;
    if (hasPki(db)) {
      pki = await loadPki(db, keystore);
    } else if (create) {
      pki = await createPki(db, keystore);
      created = true;
    } else {
      throw new StateError(
        "no-ca",
        `${dbPath} holds no certificate authority: check --state (PHAROS_STATE); ${
          howToCreate(dir)
        }`,
      );
    }
    return { dir, db, keystore, pki, created, close: () => db.close() };
  } catch (e) {
    db.close();
    throw e;
  }
}
