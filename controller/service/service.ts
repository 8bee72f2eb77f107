/**
 * The one door through which every change to the controller's database
 * goes (CLI, API, fleet driver, reconcile). A mutation names who does it
 * (actor), what (action) and to which row (target); inside one write
 * transaction (BEGIN IMMEDIATE, or a savepoint when already inside one)
 * the service
 *
 * 1. reads the target row and, given `expectVersion`, refuses a stale one
 *    with a ConflictError carrying the current row (0 = "must not exist");
 * 2. runs the caller's change through `tx.insert` / `tx.update` /
 *    `tx.remove`, which keep `version` and `updated_at` right;
 * 3. appends an audit entry (audit.ts) with the digests of the row before
 *    and after, and moves the audit head.
 *
 * Any error rolls back all three. A change that writes nothing records
 * nothing. Several mutations can share one transaction (`transaction`), or
 * nest (each is a savepoint and gets its own entry).
 */
import { PharosError } from "../../core/errors.ts";
import { appendAudit } from "../audit.ts";
import { type Db, statement } from "../db/sqlite.ts";
import { type Row, rowDigest } from "./canonical.ts";
import { ConflictError, ServiceError } from "./errors.ts";
import { type Target, TARGETS } from "./targets.ts";

/**
 * Who acts: `cli:<os user>`, `api:token:<id>`, `api:user:<id>`,
 * `system:<part>` (e.g. `system:reconcile`).
 */
export type Actor = string;
const ACTOR = /^(cli|api|system)(:[A-Za-z0-9._@+-]{1,128}){1,3}$/;
/** `<type>.<verb>`, e.g. `node.policy`. */
const ACTION = /^[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_-]{0,31}){1,3}$/;
const COLUMN = /^[a-z][a-z0-9_]{0,62}$/;
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;
const MAX_ID = 256;

/** The actor of the controller's own changes when no operator is involved. */
export const SYSTEM_ACTOR: Actor = "system:controller";

export interface Mutation {
  actor: Actor;
  action: string;
  target: Target;
  /** The version the caller loaded; 0 means "the row must not exist yet". */
  expectVersion?: number;
}

/** A column value as node:sqlite binds it. */
export type Value = null | number | bigint | string | Uint8Array;

export interface Tx {
  readonly db: Db;
  /** This mutation's time (ISO 8601), also its `updated_at` and audit time. */
  readonly now: string;
  /** The target row as it was when the mutation started. */
  readonly current: Row | undefined;
  /** Creates the target row (`version` 1); its key column is the target id. */
  insert(values: Record<string, Value>): void;
  /** Changes the target row; `version` goes up by one per mutation. */
  update(changes: Record<string, Value>): void;
  /** Deletes the target row. */
  remove(): void;
}

/** One committed mutation, as commit listeners hear it (no row contents: no secrets). */
export interface CommittedChange {
  time: string;
  actor: Actor;
  action: string;
  target: Target;
  /** The row's version after the change; null when it was removed. */
  version: number | null;
}

export type CommitListener = (changes: readonly CommittedChange[]) => void;

/**
 * Per database connection (not per Service: several Service objects over one
 * connection share its transactions): the changes of the open transaction,
 * and the listeners that hear them after its COMMIT.
 */
const COMMITS = new WeakMap<Db, { pending: CommittedChange[]; listeners: Set<CommitListener> }>();

function commitsOf(db: Db) {
  let c = COMMITS.get(db);
  if (!c) COMMITS.set(db, c = { pending: [], listeners: new Set() });
  return c;
}

export class Service {
  readonly #clock: () => Date;

  constructor(readonly db: Db, opts: { clock?: () => Date } = {}) {
    this.#clock = opts.clock ?? (() => new Date());
  }

  /**
   * Calls `fn` after each COMMIT with the mutations it made (never for a
   * rollback), whichever Service object on this connection made them. A
   * throwing listener is dropped. Returns the unsubscribe.
   */
  onCommit(fn: CommitListener): () => void {
    const { listeners } = commitsOf(this.db);
    listeners.add(fn);
    return () => listeners.delete(fn);
  }

  /** Reads one row of a target type. */
  get(target: Target): Row | undefined {
    const { table, key } = TARGETS[target.type];
    return statement(this.db, `SELECT * FROM ${table} WHERE ${key} = ?`).get(target.id) as
      | Row
      | undefined;
  }

  /** Runs `fn` as one audited mutation of `m.target` (see the module comment). */
  mutate<T>(m: Mutation, fn: (tx: Tx) => T): T {
    checkMutation(m);
    const { table, key } = TARGETS[m.target.type];
    const id = m.target.id;
    return this.atomic(() => {
      const now = this.#clock().toISOString();
      const before = this.get(m.target);
      if (m.expectVersion !== undefined && Number(before?.version ?? 0) !== m.expectVersion) {
        throw new ConflictError(m.target, m.expectVersion, before ?? null);
      }
      let wrote = false;
      let bumped = false;
      const db = this.db;
      const tx: Tx = {
        db,
        now,
        current: before,
        insert(values) {
          const row: Record<string, Value> = { ...values, [key]: id, version: 1, updated_at: now };
          const cols = Object.keys(row).map(checkColumn);
          if (statement(db, `SELECT 1 FROM ${table} WHERE ${key} = ?`).get(id)) {
            throw new ServiceError("exists", `${m.target.type} ${id} already exists`);
          }
          statement(
            db,
            `INSERT INTO ${table} (${cols.join(", ")}) VALUES (${cols.map(() => "?").join(", ")})`,
          ).run(...cols.map((c) => row[c]));
          wrote = true;
        },
        update(changes) {
          const cols = Object.keys(changes).map(checkColumn);
          const managed = cols.find((c) => c === "version" || c === "updated_at" || c === key);
          if (managed) {
            throw new ServiceError("invalid", `${table}.${managed} is kept by the service layer`);
          }
          const sets = [...cols.map((c) => `${c} = ?`), "updated_at = ?"];
          if (!bumped) sets.push("version = version + 1");
          const res = statement(db, `UPDATE ${table} SET ${sets.join(", ")} WHERE ${key} = ?`)
            .run(...cols.map((c) => changes[c]), now, id);
          if (Number(res.changes) === 0) {
            throw new ServiceError("not-found", `no ${m.target.type} ${id}`);
          }
          wrote = bumped = true;
        },
        remove() {
          const res = statement(db, `DELETE FROM ${table} WHERE ${key} = ?`).run(id);
          if (Number(res.changes) === 0) {
            throw new ServiceError("not-found", `no ${m.target.type} ${id}`);
          }
          wrote = true;
        },
      };
      const out = fn(tx);
      if (wrote) {
        const after = this.get(m.target);
        commitsOf(db).pending.push({
          time: now,
          actor: m.actor,
          action: m.action,
          target: { type: m.target.type, id },
          version: after === undefined ? null : Number(after.version),
        });
        appendAudit(db, {
          time: now,
          actor: m.actor,
          action: m.action,
          target_type: m.target.type,
          target_id: id,
          before_digest: rowDigest(before),
          after_digest: rowDigest(after),
        });
      }
      return out;
    });
  }

  /** Runs several mutations (and reads) as one transaction: all or nothing. */
  transaction<T>(fn: () => T): T {
    return this.atomic(fn);
  }

  /**
   * BEGIN IMMEDIATE … COMMIT, or a savepoint inside an open transaction;
   * rolls back on any error, which leaves as a typed error.
   */
  private atomic<T>(fn: () => T): T {
    const db = this.db;
    const nested = db.isTransaction;
    const commits = commitsOf(db);
    const mark = nested ? commits.pending.length : 0;
    try {
      db.exec(nested ? "SAVEPOINT pharos_mutation" : "BEGIN IMMEDIATE");
    } catch (e) {
      throw databaseError(e);
    }
    try {
      const out = fn();
      if (out instanceof Promise) {
        out.catch(() => {}); // its outcome can no longer matter: the transaction is undone
        throw new ServiceError(
          "async-mutation",
          "a mutation must be synchronous: an await inside it would commit half of it",
        );
      }
      db.exec(nested ? "RELEASE pharos_mutation" : "COMMIT");
      if (!nested) this.#flush();
      return out;
    } catch (e) {
      commits.pending.length = mark;
      if (nested) {
        db.exec("ROLLBACK TO pharos_mutation; RELEASE pharos_mutation");
      } else if (db.isTransaction) {
        db.exec("ROLLBACK");
      }
      throw databaseError(e);
    }
  }

  #flush(): void {
    const commits = commitsOf(this.db);
    const changes = commits.pending;
    commits.pending = [];
    if (changes.length === 0) return;
    for (const fn of [...commits.listeners]) {
      try {
        fn(changes);
      } catch {
        commits.listeners.delete(fn);
      }
    }
  }
}

function checkMutation(m: Mutation): void {
  if (typeof m.actor !== "string" || !ACTOR.test(m.actor)) {
    throw new ServiceError(
      "invalid",
      `actor "${String(m.actor).slice(0, 80)}" is not cli:…, api:… or system:…`,
    );
  }
  if (!ACTION.test(m.action)) {
    throw new ServiceError("invalid", `action "${m.action.slice(0, 80)}" is not <type>.<verb>`);
  }
  if (!Object.hasOwn(TARGETS, m.target.type)) {
    throw new ServiceError("invalid", `"${m.target.type}" is not a target type`);
  }
  const id = m.target.id;
  if (typeof id !== "string" || id.length === 0 || id.length > MAX_ID || CONTROL.test(id)) {
    throw new ServiceError(
      "invalid",
      `a ${m.target.type} id must be 1-${MAX_ID} printable characters`,
    );
  }
  if (
    m.expectVersion !== undefined &&
    (!Number.isSafeInteger(m.expectVersion) || m.expectVersion < 0)
  ) {
    throw new ServiceError(
      "invalid",
      `expected version ${m.expectVersion} is not a whole number ≥ 0`,
    );
  }
}

function checkColumn(c: string): string {
  if (!COLUMN.test(c)) throw new ServiceError("invalid", `"${c}" is not a column name`);
  return c;
}

const SQLITE = "ERR_SQLITE_ERROR";

/** Typed errors pass; SQLite's become ServiceErrors; anything else is a bug and passes. */
function databaseError(e: unknown): unknown {
  if (e instanceof PharosError || (e as { code?: string })?.code !== SQLITE) return e;
  const msg = (e as Error).message;
  if (/database (table )?is locked|database is busy/.test(msg)) {
    return new ServiceError(
      "busy",
      "the database stayed locked by another writer for too long; try again",
      { cause: e },
    );
  }
  if (/^UNIQUE constraint failed/.test(msg)) {
    return new ServiceError("exists", `already recorded: ${msg}`, { cause: e });
  }
  if (/constraint failed/.test(msg)) {
    return new ServiceError("invalid", `refused by the database: ${msg}`, { cause: e });
  }
  return new ServiceError("database", `database error: ${msg}`, { cause: e });
}
