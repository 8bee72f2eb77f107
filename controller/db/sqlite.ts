/**
 * The controller's SQLite database (node:sqlite): WAL mode, foreign keys,
 * a busy timeout, and migrations applied at open.
 *
 * The database and its -wal and -shm files are readable by the owner only
 * (0600): a new database file is created with that mode before SQLite
 * opens it (SQLite gives the -wal and -shm files the database file's
 * mode), and an existing one, with its companions, is narrowed to it.
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { type Migration, MIGRATIONS } from "./migrations.ts";

export type Db = DatabaseSync;

export class MigrationError extends Error {}

const statements = new WeakMap<Db, Map<string, StatementSync>>();
/** Statements kept per connection; beyond it the cache starts again (generated SQL). */
const MAX_CACHED = 512;

/**
 * The prepared statement for `sql` on `db`, made once and reused: the hot
 * paths (every service mutation, every audit append) would otherwise
 * prepare anew on each call, and Deno's node:sqlite keeps a few KB per
 * statement prepared until the connection closes.
 */
export function statement(db: Db, sql: string): StatementSync {
  let cache = statements.get(db);
  if (!cache) statements.set(db, cache = new Map());
  let stmt = cache.get(sql);
  if (!stmt) {
    if (cache.size >= MAX_CACHED) cache.clear();
    stmt = db.prepare(sql);
    cache.set(sql, stmt);
  }
  return stmt;
}

/** Mode of the database file and its -wal and -shm companions. */
export const DATABASE_MODE = 0o600;

export function openDatabase(path: string, migrations: Migration[] = MIGRATIONS): Db {
  const onDisk = path !== ":memory:" && !path.startsWith("file:");
  if (onDisk) ownerOnly(path, true);
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;");
  if (onDisk) { for (const f of [`${path}-wal`, `${path}-shm`]) ownerOnly(f, false); }
  migrate(db, migrations);
  return db;
}

/**
 * Gives `path` mode 0600: creates it empty with that mode (`create`, when
 * missing: SQLite takes an empty file as a new database), or narrows an
 * existing file's mode. Best effort on a file we do not own.
 */
function ownerOnly(path: string, create: boolean): void {
  let mode: number | null;
  try {
    mode = Deno.statSync(path).mode;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) return;
    if (create) {
      try {
        Deno.writeFileSync(path, new Uint8Array(0), { mode: DATABASE_MODE, createNew: true });
      } catch {
        // created meanwhile, or not creatable: SQLite reports what matters
      }
    }
    return;
  }
  if (mode !== null && (mode & 0o777) !== DATABASE_MODE) {
    try {
      Deno.chmodSync(path, DATABASE_MODE);
    } catch {
      // not ours to change
    }
  }
}

/** Applies every migration newer than the database, each in its own transaction. */
export function migrate(db: Db, migrations: Migration[]): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
  const row = db.prepare("SELECT MAX(version) AS v FROM schema_migrations").get() as {
    v: number | null;
  };
  const current = row.v ?? 0;
  const latest = migrations.at(-1)?.version ?? 0;
  if (current > latest) {
    throw new MigrationError(
      `database schema version ${current} is newer than this program knows (${latest}); upgrade PharosVPN`,
    );
  }
  let applied = 0;
  for (const m of migrations) {
    if (m.version <= current) continue;
    transaction(db, () => {
      // Another process opening the same database may have applied it meanwhile.
      if (db.prepare("SELECT 1 FROM schema_migrations WHERE version = ?").get(m.version)) return;
      db.exec(m.sql);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
        .run(m.version, m.name, new Date().toISOString());
      applied++;
    });
  }
  return applied;
}

/** Runs `fn` inside BEGIN IMMEDIATE … COMMIT, rolling back on any error. */
export function transaction<T>(db: Db, fn: () => T): T {
  db.exec("BEGIN IMMEDIATE");
  try {
    const out = fn();
    db.exec("COMMIT");
    return out;
  } catch (e) {
    db.exec("ROLLBACK");
    throw e;
  }
}
