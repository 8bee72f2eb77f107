/**
 * One write-cost measurement in a process of its own (so its memory is its
 * own): `deno run -A --v8-flags=--expose-gc controller_writes_worker.ts
 * <mode> <writes> [dir]`. A fresh database in a temp directory (under `dir`
 * when given, e.g. a tmpfs) with NODES nodes,
 * then node updates spread over them, one transaction each:
 *
 * - `raw`: the UPDATE the service layer generates, prepared once, run
 *   directly on node:sqlite (autocommit) — the baseline;
 * - `raw-prepare`: the same, prepared anew for every write (what the hot
 *   paths did before the statement cache);
 * - `service`: `Service.mutate` with `tx.update`, as the fleet driver
 *   records a poll (read, version check, update, audit entry);
 * - `nodes`: `Nodes.setPolicy` toggling isolation (the CLI/API path: looks
 *   the node up, then one audited mutation).
 *
 * Prints one JSON line: writes per second, and the RSS before (after a
 * GC), after the writes as the OS sees it (no forced GC: V8 does not see
 * native memory, so garbage statements wait for a GC it schedules by heap
 * size alone) and after a GC.
 */
import { openDatabase } from "../../controller/db/sqlite.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";

export type WriteMode = "raw" | "raw-prepare" | "service" | "nodes";
export interface WriteResult {
  mode: WriteMode;
  dir: string;
  writes: number;
  perSecond: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  rssAfterGcMb: number;
  /** V8 heap in use after a GC, before and after the writes. */
  heapBeforeMb: number;
  heapAfterMb: number;
}

const NODES = 100;
const WARMUP = 200;
const ACTOR = "system:bench";
const UPDATE = "UPDATE nodes SET last_seen_at = ?, observed_revision = ?, updated_at = ?, " +
  "version = version + 1 WHERE id = ?";

function heapMb(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return Deno.memoryUsage().heapUsed / 2 ** 20;
}

function rssMb(gc: boolean): number {
  if (gc) (globalThis as { gc?: () => void }).gc?.();
  return Deno.memoryUsage().rss / 2 ** 20;
}

async function main(): Promise<void> {
  const mode = Deno.args[0] as WriteMode;
  const writes = Number(Deno.args[1]);
  if (!["raw", "raw-prepare", "service", "nodes"].includes(mode) || !(writes > 0)) {
    throw new Error(
      "usage: controller_writes_worker.ts raw|raw-prepare|service|nodes <writes> [dir]",
    );
  }
  const dir = await Deno.makeTempDir({ dir: Deno.args[2], prefix: "pharos-bench-writes-" });
  try {
    const db = openDatabase(`${dir}/pharos.db`);
    const service = new Service(db);
    const nodes = new Nodes(service);
    const ids: string[] = [];
    for (let i = 0; i < NODES; i++) {
      ids.push(nodes.create(ACTOR, { name: `n${i}`, host: `10.9.${i >> 8}.${i & 255}` }).id);
    }
    const once = db.prepare(UPDATE);
    let n = 0;
    const write = (): void => {
      const id = ids[n % NODES];
      const now = new Date().toISOString();
      n++;
      switch (mode) {
        case "raw":
          once.run(now, n, now, id);
          break;
        case "raw-prepare":
          db.prepare(UPDATE).run(now, n, now, id);
          break;
        case "service":
          service.mutate({ actor: ACTOR, action: "node.observe", target: { type: "node", id } }, (
            tx,
          ) => tx.update({ last_seen_at: tx.now, observed_revision: n }));
          break;
        case "nodes":
          nodes.setPolicy(ACTOR, id, { isolation: n % (2 * NODES) < NODES });
          break;
      }
    };
    for (let i = 0; i < WARMUP; i++) write();
    const heapBeforeMb = heapMb();
    const rssBeforeMb = rssMb(true);
    const start = performance.now();
    for (let i = 0; i < writes; i++) write();
    const perSecond = writes / ((performance.now() - start) / 1000);
    const rssAfterMb = rssMb(false);
    const rssAfterGcMb = rssMb(true);
    const heapAfterMb = heapMb();
    db.close();
    const result: WriteResult = {
      mode,
      dir: Deno.args[2] ?? "default temp dir",
      writes,
      perSecond,
      rssBeforeMb,
      rssAfterMb,
      rssAfterGcMb,
      heapBeforeMb,
      heapAfterMb,
    };
    console.log(JSON.stringify(result));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
