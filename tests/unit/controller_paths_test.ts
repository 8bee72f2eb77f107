/**
 * Cascade paths: the service (create, exit switch, MTU, remove; nodes by id
 * or name; every bad input a typed error that writes nothing; every write
 * audited; a stale version a ConflictError) and the `cox paths` commands
 * (one closing line, exit 0 / 1 / 2).
 */
import assert from "node:assert/strict";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { runCli } from "../../controller/cli/run.ts";
import { type Db, openDatabase } from "../../controller/db/sqlite.ts";
import { ConflictError, ServiceError } from "../../controller/service/errors.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Paths } from "../../controller/service/paths.ts";
import { Service } from "../../controller/service/service.ts";
import { DATABASE_FILE } from "../../controller/state.ts";

const ACTOR = "cli:tester";

async function withState(
  fn: (state: string, db: Db) => void | Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const state = `${dir}/state`;
  let db: Db | undefined;
  try {
    const init = await cox(state, "init");
    assert.equal(init.code, 0, init.err.join("\n"));
    db = openDatabase(`${state}/${DATABASE_FILE}`);
    await fn(state, db);
  } finally {
    db?.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function cox(state: string, ...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(
    [...args, "--state", state],
    { out: (t: string) => out.push(t), err: (l: string) => err.push(l) },
    () => undefined,
  );
  return { code, out: out.join(""), err };
}

function addNodes(svc: Service, ...names: string[]): string[] {
  const nodes = new Nodes(svc);
  return names.map((name, i) =>
    nodes.create("system:test", { name, host: `203.0.113.${i + 10}` }).id
  );
}

function auditActions(db: Db): string[] {
  return (db.prepare("SELECT action FROM audit_log WHERE action LIKE 'path.%' ORDER BY seq")
    .all() as { action: string }[]).map((r) => r.action);
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ServiceError, String(e));
    return e.code;
  }
  assert.fail("expected a ServiceError");
}

Deno.test("paths service: create by name or id, exit switch, MTU, remove; all audited", async () => {
  await withState((_state, db) => {
    const svc = new Service(db);
    const [fra, ams, waw] = addNodes(svc, "fra-1", "ams-1", "waw-1");
    const paths = new Paths(svc);
    const p = paths.create(ACTOR, { entry: "fra-1", exit: ams });
    assert.deepEqual(
      [p.entryNodeId, p.exitNodeId, p.mtu, p.version],
      [fra, ams, null, 1],
    );
    const switched = paths.setExit(ACTOR, p.id, "waw-1", 1);
    assert.deepEqual([switched.exitNodeId, switched.version], [waw, 2]);
    assert.equal(paths.setExit(ACTOR, p.id, waw, 2).version, 2, "same exit: nothing written");
    const sized = paths.setMtu(ACTOR, p.id, 1400, 2);
    assert.deepEqual([sized.mtu, sized.version], [1400, 3]);
    assert.equal(paths.setMtu(ACTOR, p.id, null).mtu, null);
    assert.deepEqual(paths.list().map((x) => x.id), [p.id]);
    // A node in a cascade is not removed behind it: a clear error, nothing written.
    assert.throws(
      () => new Nodes(svc).remove(ACTOR, "waw-1"),
      (e: ServiceError) => e.code === "exists" && /cascade path/.test(e.message),
    );
    const removed = paths.remove(ACTOR, p.id, 4);
    assert.equal(removed.exitNodeId, waw);
    assert.deepEqual(paths.list(), []);
    assert.deepEqual(auditActions(db), [
      "path.create",
      "path.exit",
      "path.mtu",
      "path.mtu",
      "path.remove",
    ]);
    assert.equal(verifyAudit(db).ok, true);
  });
});

Deno.test("paths service: bad input is a typed error and writes nothing; stale version conflicts", async () => {
  await withState((_state, db) => {
    const svc = new Service(db);
    const [fra, ams] = addNodes(svc, "fra-1", "ams-1", "waw-1");
    const paths = new Paths(svc);
    assert.equal(code(() => paths.create(ACTOR, { entry: fra, exit: "fra-1" })), "invalid");
    assert.equal(code(() => paths.create(ACTOR, { entry: "nope", exit: ams })), "not-found");
    assert.equal(code(() => paths.create(ACTOR, { entry: fra, exit: "nope" })), "not-found");
    for (const mtu of [1279, 9001, 1400.5]) {
      assert.equal(code(() => paths.create(ACTOR, { entry: fra, exit: ams, mtu })), "invalid");
    }
    assert.deepEqual(paths.list(), []);
    assert.deepEqual(auditActions(db), []);

    const p = paths.create(ACTOR, { entry: fra, exit: ams, mtu: 9000 });
    assert.equal(code(() => paths.create(ACTOR, { entry: "fra-1", exit: "ams-1" })), "exists");
    assert.equal(code(() => paths.setExit(ACTOR, p.id, "fra-1")), "invalid", "exit = entry");
    assert.equal(code(() => paths.setExit(ACTOR, p.id, "nope")), "not-found");
    assert.equal(code(() => paths.setExit(ACTOR, "no-such-path", "waw-1")), "not-found");
    assert.equal(code(() => paths.setMtu(ACTOR, p.id, 100)), "invalid");
    const other = paths.create(ACTOR, { entry: fra, exit: "waw-1" });
    assert.equal(code(() => paths.setExit(ACTOR, other.id, ams)), "exists", "duplicate cascade");
    paths.remove(ACTOR, other.id, other.version);

    paths.setExit(ACTOR, p.id, "waw-1", undefined);
    assert.throws(() => paths.setExit(ACTOR, p.id, "ams-1", 1), (e: unknown) => {
      assert.ok(e instanceof ConflictError);
      assert.equal(e.current?.version, 2);
      return true;
    });
    assert.throws(() => paths.remove(ACTOR, p.id, 1), ConflictError);
    assert.equal(paths.require(p.id).version, 2, "nothing changed");
    assert.deepEqual(auditActions(db), [
      "path.create",
      "path.create",
      "path.remove",
      "path.exit",
    ]);
  });
});

Deno.test("cox paths: list, add, exit and remove; one line each; exit codes 0/1/2", async () => {
  await withState(async (state, db) => {
    addNodes(new Service(db), "fra-1", "ams-1", "waw-1");
    assert.deepEqual(await cox(state, "paths", "list"), {
      code: 0,
      out: "no paths yet\n",
      err: [],
    });

    const added = await cox(state, "paths", "add", "fra-1", "ams-1", "--mtu", "1400");
    assert.equal(added.code, 0, added.err.join("\n"));
    assert.match(
      added.out,
      /^added path fra-1 → ams-1, MTU 1400 \(id [0-9a-f-]{36}, version 1\)\n$/,
    );
    const id = /id ([0-9a-f-]{36})/.exec(added.out)![1];

    const list = await cox(state, "paths", "list");
    assert.equal(list.code, 0);
    assert.match(list.out, /^ENTRY +EXIT +MTU +STATUS +VERSION +ID\n/);
    assert.match(list.out, new RegExp(`\\nfra-1 +ams-1 +1400 +- +1 +${id}\\n$`));

    const stale = await cox(state, "paths", "exit", id, "waw-1", "--expect-version", "0");
    assert.equal(stale.code, 1);
    assert.equal(stale.out, "");
    assert.deepEqual(stale.err, [
      `error: path ${id} is at version 1, not 0: someone else changed it; reload it and try again (nothing was changed)`,
    ]);
    const switched = await cox(state, "paths", "exit", id, "waw-1", "--expect-version", "1");
    assert.deepEqual(switched, {
      code: 0,
      out: `path ${id}: fra-1 → waw-1, MTU 1400 (version 2)\n`,
      err: [],
    });

    const same = await cox(state, "paths", "add", "fra-1", "fra-1");
    assert.equal(same.code, 1);
    assert.deepEqual(same.err, [
      "error: a path needs two different nodes; fra-1 is both entry and exit",
    ]);
    const badMtu = await cox(state, "paths", "add", "fra-1", "ams-1", "--mtu", "big");
    assert.equal(badMtu.code, 2);
    assert.deepEqual(badMtu.err, ['error: --mtu takes a whole number ≥ 1, not "big"']);
    const missing = await cox(state, "paths", "add", "fra-1");
    assert.equal(missing.code, 2);
    assert.match(missing.err[0], /"paths add" needs EXIT/);
    const stray = await cox(state, "paths", "remove", id, "--mtu", "1400");
    assert.equal(stray.code, 2);

    const removed = await cox(state, "paths", "remove", id, "--expect-version", "2");
    assert.deepEqual(removed, {
      code: 0,
      out: `removed path ${id} (fra-1 → waw-1, MTU 1400)\n`,
      err: [],
    });
    const gone = await cox(state, "paths", "remove", id);
    assert.equal(gone.code, 1);
    assert.deepEqual(gone.err, [`error: no path "${id}"; "cox paths list" shows them`]);
    const actors = db.prepare(
      "SELECT DISTINCT actor FROM audit_log WHERE action LIKE 'path.%'",
    ).all() as { actor: string }[];
    assert.equal(actors.length, 1);
    assert.match(actors[0].actor, /^cli:/);
  });
});
