/**
 * Paths (table `paths`, a cascade: CONTRACTS 5.6): traffic of the devices
 * bound to a path enters at the entry node and leaves at the exit node.
 * Operators create, switch the exit of, re-size and remove them here; the
 * reconciler notices each write through the audit log and turns paths into
 * inner links, edge peers and transits on the nodes.
 */
import { type Db, statement } from "../db/sqlite.ts";
import { ServiceError } from "./errors.ts";
import { Nodes } from "./nodes.ts";
import type { Actor, Service } from "./service.ts";

/** The inner-link MTU range the table allows (NULL = the default, 1340). */
export const PATH_MTU_MIN = 1280;
export const PATH_MTU_MAX = 9000;

export interface Path {
  id: string;
  entryNodeId: string;
  exitNodeId: string;
  /** null: the inner-link default. */
  mtu: number | null;
  status: string | null;
  createdAt: Date;
  version: number;
  updatedAt: Date;
}

interface Row {
  id: string;
  entry_node_id: string;
  exit_node_id: string;
  mtu: number | null;
  status: string | null;
  created_at: string;
  version: number;
  updated_at: string;
}

function fromRow(r: Row): Path {
  return {
    id: r.id,
    entryNodeId: r.entry_node_id,
    exitNodeId: r.exit_node_id,
    mtu: r.mtu ?? null,
    status: r.status ?? null,
    createdAt: new Date(r.created_at),
    version: r.version,
    updatedAt: new Date(r.updated_at),
  };
}

export interface NewPath {
  /** Node id or name. */
  entry: string;
  /** Node id or name. */
  exit: string;
  mtu?: number | null;
}

function checkMtu(mtu: number | null | undefined): void {
  if (mtu === undefined || mtu === null) return;
  if (!Number.isInteger(mtu) || mtu < PATH_MTU_MIN || mtu > PATH_MTU_MAX) {
    throw new ServiceError(
      "invalid",
      `path MTU ${mtu}: use a whole number ${PATH_MTU_MIN}-${PATH_MTU_MAX} (or none for the default 1340)`,
    );
  }
}

/** The row a mutation started from; gone (removed meanwhile) is `not-found`. */
function current(row: unknown, ref: string): Path {
  if (row === undefined) {
    throw new ServiceError("not-found", `path "${ref.slice(0, 80)}" was removed meanwhile`);
  }
  return fromRow(row as Row);
}

export class Paths {
  private readonly nodes: Nodes;

  constructor(private readonly service: Service) {
    this.nodes = new Nodes(service);
  }

  private get db(): Db {
    return this.service.db;
  }

  list(): Path[] {
    return (statement(this.db, "SELECT * FROM paths ORDER BY created_at, id")
      .all() as unknown as Row[]).map(fromRow);
  }

  find(id: string): Path | undefined {
    const row = statement(this.db, "SELECT * FROM paths WHERE id = ?").get(id) as Row | undefined;
    return row ? fromRow(row) : undefined;
  }

  /** Like find, but a missing path is a `not-found` error naming the id. */
  require(id: string): Path {
    const path = this.find(id);
    if (!path) {
      throw new ServiceError(
        "not-found",
        `no path "${id.slice(0, 80)}"; "cox paths list" shows them`,
      );
    }
    return path;
  }

  /** A cascade from entry to exit (nodes by id or name; they must differ). */
  create(actor: Actor, input: NewPath): Path {
    checkMtu(input.mtu);
    const entry = this.nodes.require(input.entry);
    const exit = this.nodes.require(input.exit);
    if (entry.id === exit.id) {
      throw new ServiceError(
        "invalid",
        `a path needs two different nodes; ${entry.name} is both entry and exit`,
      );
    }
    const id = crypto.randomUUID();
    this.service.mutate(
      { actor, action: "path.create", target: { type: "path", id }, expectVersion: 0 },
      (tx) => {
        if (
          statement(tx.db, "SELECT 1 FROM paths WHERE entry_node_id = ? AND exit_node_id = ?")
            .get(entry.id, exit.id)
        ) {
          throw new ServiceError(
            "exists",
            `a path ${entry.name} → ${exit.name} exists already; "cox paths list" shows it`,
          );
        }
        tx.insert({
          entry_node_id: entry.id,
          exit_node_id: exit.id,
          mtu: input.mtu ?? null,
          created_at: tx.now,
        });
      },
    );
    return this.require(id);
  }

  /** The exit switch: the path's traffic leaves at another node from now on. */
  setExit(actor: Actor, id: string, exitRef: string, expectVersion?: number): Path {
    const path = this.require(id);
    const exit = this.nodes.require(exitRef);
    this.service.mutate(
      { actor, action: "path.exit", target: { type: "path", id: path.id }, expectVersion },
      (tx) => {
        const cur = current(tx.current, id);
        if (exit.id === cur.entryNodeId) {
          throw new ServiceError(
            "invalid",
            `node ${exit.name} is this path's entry; choose another exit`,
          );
        }
        if (exit.id === cur.exitNodeId) return;
        if (
          statement(tx.db, "SELECT 1 FROM paths WHERE entry_node_id = ? AND exit_node_id = ?")
            .get(cur.entryNodeId, exit.id)
        ) {
          throw new ServiceError(
            "exists",
            `another path from this entry leaves at ${exit.name} already; remove one of them`,
          );
        }
        tx.update({ exit_node_id: exit.id });
      },
    );
    return this.require(path.id);
  }

  /** Sets the inner-link MTU (null: the default). */
  setMtu(actor: Actor, id: string, mtu: number | null, expectVersion?: number): Path {
    checkMtu(mtu);
    const path = this.require(id);
    this.service.mutate(
      { actor, action: "path.mtu", target: { type: "path", id: path.id }, expectVersion },
      (tx) => {
        if (current(tx.current, id).mtu !== mtu) tx.update({ mtu });
      },
    );
    return this.require(path.id);
  }

  /** Deletes a path; peers bound to it leave at their own node again (path_id becomes NULL). */
  remove(actor: Actor, id: string, expectVersion?: number): Path {
    const path = this.require(id);
    return this.service.mutate(
      { actor, action: "path.remove", target: { type: "path", id: path.id }, expectVersion },
      (tx) => {
        tx.remove();
        return current(tx.current, id);
      },
    );
  }
}
