/**
 * Which nodes a database change touches, read from the audit log: every
 * write of every process (the controller's API, the accounts service, a
 * `cox` command run beside the controller) appends an entry naming its
 * target, so following the log sees them all without hooks in the writers.
 *
 * A node, node peer, path or device maps to the nodes that must hear of
 * it; a target whose row is gone (deleted) cannot be mapped and asks for
 * the whole fleet. Reconcile's own writes (its actor) are skipped.
 */
import { type Db, statement } from "../db/sqlite.ts";

/** What a batch of changes asks for: some nodes, or the whole fleet. */
export interface ChangeSet {
  nodes: Set<string>;
  all: boolean;
}

type Statement = ReturnType<Db["prepare"]>;

const WATCHED = new Set(["node", "node_peer", "path", "device"]);
const BATCH = 1000;

export class AuditFollower {
  #last: number;
  readonly #head: Statement;
  readonly #entries: Statement;
  readonly #peerNode: Statement;
  readonly #deviceNodes: Statement;

  constructor(readonly db: Db, readonly ownActor: string) {
    this.#head = statement(db, "SELECT last_seq FROM audit_head WHERE id = 1");
    this.#entries = statement(
      db,
      "SELECT seq, actor, target_type, target_id FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
    );
    this.#peerNode = statement(db, "SELECT node_id FROM node_peers WHERE id = ?");
    this.#deviceNodes = statement(
      db,
      "SELECT DISTINCT node_id FROM node_peers WHERE device_id = ?",
    );
    this.#last = this.headSeq();
  }

  headSeq(): number {
    return Number((this.#head.get() as { last_seq: number } | undefined)?.last_seq ?? 0);
  }

  /** The changes appended since the last call (at most a few batches). */
  poll(): ChangeSet {
    const out: ChangeSet = { nodes: new Set(), all: false };
    for (let round = 0; round < 10 && this.headSeq() > this.#last; round++) {
      const rows = this.#entries.all(this.#last, BATCH) as unknown as {
        seq: number;
        actor: string;
        target_type: string;
        target_id: string;
      }[];
      if (rows.length === 0) {
        // The head moved past entries we cannot read (a damaged log): everything.
        this.#last = this.headSeq();
        out.all = true;
        break;
      }
      for (const r of rows) {
        this.#last = r.seq;
        if (r.actor === this.ownActor || !WATCHED.has(r.target_type)) continue;
        if (!this.#map(r.target_type, r.target_id, out.nodes)) out.all = true;
      }
    }
    if (this.headSeq() > this.#last) out.all = true; // more than we read: a sweep covers it
    return out;
  }

  /** Adds the nodes a target touches; false when its row is gone. */
  #map(type: string, id: string, into: Set<string>): boolean {
    switch (type) {
      case "node":
        into.add(id);
        return true;
      case "node_peer": {
        const r = this.#peerNode.get(id) as { node_id: string } | undefined;
        if (r) into.add(r.node_id);
        return r !== undefined;
      }
      case "path":
        // The row shows where a path goes now, not the exit it just left (which
        // must drop its link): paths change rarely, so the whole fleet is passed.
        return false;
      case "device": {
        const rows = this.#deviceNodes.all(id) as { node_id: string }[];
        for (const r of rows) into.add(r.node_id);
        // A device without peers (new, or deleted with its peers): the fleet decides.
        return rows.length > 0;
      }
    }
    return true;
  }
}
