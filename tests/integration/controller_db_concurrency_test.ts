/**
 * The database under several writers and under a crash: `cox` processes
 * write while the controller's process does (WAL, busy timeout, BEGIN
 * IMMEDIATE), and a writer killed with SIGKILL mid-burst loses nothing it
 * acknowledged and leaves an intact audit chain.
 */
import assert from "node:assert/strict";
import { runCli } from "../../controller/cli/run.ts";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { openDatabase } from "../../controller/db/sqlite.ts";
import { Service } from "../../controller/service/service.ts";
import { Users } from "../../controller/service/users.ts";
import { DATABASE_FILE } from "../../controller/state.ts";
import { run } from "../support/run.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const WRITER = new URL("./controller_db_writer.ts", import.meta.url).pathname;
const noEnv = () => undefined;

function quiet() {
  const err: string[] = [];
  return { io: { out: () => {}, err: (l: string) => err.push(l) }, err };
}

async function newState(): Promise<{ dir: string; state: string; db: string }> {
  const dir = await Deno.makeTempDir();
  const state = `${dir}/state`;
  const c = quiet();
  assert.equal(await runCli(["init", "--state", state], c.io, noEnv), 0, c.err.join("\n"));
  return { dir, state, db: `${state}/${DATABASE_FILE}` };
}

/** Small deterministic PRNG (mulberry32) for the kill points. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("db: cox processes and the controller's process write at once; no write is lost, the chain holds", async () => {
  const { dir, state, db: path } = await newState();
  const db = openDatabase(path);
  try {
    const users = new Users(new Service(db));
    const CLI_WRITERS = 4;
    const children = Array.from({ length: CLI_WRITERS }, (_, i) =>
      run(Deno.execPath(), [
        "run",
        "-A",
        "controller/cli/main.ts",
        "users",
        "add",
        `cli-${i}@example.com`,
        "--state",
        state,
      ], { cwd: ROOT }));
    let done = false;
    const all = Promise.all(children).finally(() => done = true);
    // Write until every cox process has finished (bounded), yielding between writes.
    const mine: string[] = [];
    for (let i = 0; i < 50_000 && !done; i++) {
      mine.push(users.add("system:test", { email: `inproc-${i}@example.com` }).id);
      await new Promise((r) => setTimeout(r, 1));
    }
    for (const r of await all) assert.equal(r.code, 0, r.stderr);

    const byEmail = new Map(users.list().map((u) => [u.email, u]));
    assert.equal(byEmail.size, mine.length + CLI_WRITERS);
    for (let i = 0; i < CLI_WRITERS; i++) assert.ok(byEmail.has(`cli-${i}@example.com`));
    for (const id of mine) assert.ok(users.find(id), id);

    const v = verifyAudit(db);
    assert.ok(v.ok, JSON.stringify(v));
    const seqs = (actorLike: string) =>
      (db.prepare("SELECT seq FROM audit_log WHERE actor LIKE ? AND action = 'user.create'")
        .all(actorLike) as { seq: number }[]).map((r) => r.seq);
    const cli = seqs("cli:%");
    const inproc = seqs("system:test");
    assert.equal(cli.length, CLI_WRITERS);
    assert.equal(inproc.length, mine.length);
    // The cox writes landed between the in-process ones: the writers really overlapped.
    for (const s of cli) assert.ok(Math.min(...inproc) < s && s < Math.max(...inproc), `seq ${s}`);
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("db: a writer killed with SIGKILL mid-burst, five times: the database opens, audit verify passes, every acknowledged write is there", async () => {
  const { dir, state, db: path } = await newState();
  const random = prng(0x5eed);
  const acknowledged: string[] = [];
  try {
    for (let round = 0; round < 5; round++) {
      const killAfter = 1 + Math.floor(random() * 40);
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", WRITER, path, `round${round}`, "1000000"],
        cwd: ROOT,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const stderr = new Response(child.stderr).text();
      let seen = 0;
      let killed = false;
      let pending = "";
      const decoder = new TextDecoder();
      // Every complete line is an id whose transaction committed.
      for await (const chunk of child.stdout) {
        pending += decoder.decode(chunk, { stream: true });
        const lines = pending.split("\n");
        pending = lines.pop()!;
        acknowledged.push(...lines);
        seen += lines.length;
        if (seen >= killAfter && !killed) {
          child.kill("SIGKILL");
          killed = true;
        }
      }
      const status = await child.status;
      assert.equal(status.signal, "SIGKILL", `round ${round}: ${await stderr}`);
      assert.ok(seen >= killAfter, `round ${round}: only ${seen} writes`);

      const db = openDatabase(path);
      try {
        assert.equal(
          (db.prepare("PRAGMA integrity_check").get() as { integrity_check: string })
            .integrity_check,
          "ok",
        );
        const v = verifyAudit(db);
        assert.ok(v.ok, `round ${round}: ${JSON.stringify(v)}`);
        const users = new Users(new Service(db));
        for (const id of acknowledged) assert.ok(users.find(id), `round ${round}: lost ${id}`);
      } finally {
        db.close();
      }
    }
    const verify = await run(Deno.execPath(), [
      "run",
      "-A",
      "controller/cli/main.ts",
      "audit",
      "verify",
      "--state",
      state,
    ], { cwd: ROOT });
    assert.equal(verify.code, 0, verify.stderr);
    assert.match(
      verify.stdout,
      /^audit log OK: \d+ entries, last seq \d+, last hash [0-9a-f]{64}\n$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
