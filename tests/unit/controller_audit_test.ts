/**
 * The audit chain: the documented hash, and every kind of tampering with
 * the database file (edit, delete, insert, reorder, truncate, append)
 * detected and located by `verifyAudit` and `cox audit verify`.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type AuditEntry, auditHash, GENESIS_HASH } from "../../controller/audit.ts";
import { type AuditBreak, verifyAudit } from "../../controller/audit_verify.ts";
import { runCli } from "../../controller/cli/run.ts";
import { type Db, openDatabase } from "../../controller/db/sqlite.ts";
import { Service } from "../../controller/service/service.ts";
import { Settings } from "../../controller/service/settings.ts";
import { Users } from "../../controller/service/users.ts";
import { DATABASE_FILE } from "../../controller/state.ts";

const noEnv = () => undefined;

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (l: string) => err.push(l) }, out, err };
}

/** A log of 10 preset entries + 4 users = 14 entries. */
function fill(db: Db): void {
  const svc = new Service(db);
  new Settings(svc).applyPreset("cli:root", "enterprise");
  const users = new Users(svc);
  for (const name of ["ann", "bob", "cy", "di"]) {
    users.add("api:token:t1", { email: `${name}@example.com` });
  }
}

const LAST = 14;

async function withLog(fn: (db: Db) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const db = openDatabase(`${dir}/pharos.db`);
  try {
    fill(db);
    await fn(db);
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function entry(db: Db, seq: number): AuditEntry {
  return {
    ...(db.prepare("SELECT * FROM audit_log WHERE seq = ?").get(seq) as unknown as AuditEntry),
  };
}

/** What an attacker with the sqlite3 shell does first. */
function dropGuards(db: Db): void {
  db.exec("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;");
}

function insert(db: Db, e: AuditEntry): void {
  db.prepare(
    `INSERT INTO audit_log (seq, time, actor, action, target_type, target_id, before_digest,
       after_digest, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(
    e.seq,
    e.time,
    e.actor,
    e.action,
    e.target_type,
    e.target_id,
    e.before_digest,
    e.after_digest,
    e.prev_hash,
    e.hash,
  );
}

/** A forged entry that hashes correctly after `prev`. */
function forge(prev: AuditEntry, seq: number): AuditEntry {
  const e = {
    seq,
    time: prev.time,
    actor: "cli:mallory",
    action: "user.create",
    target_type: "user",
    target_id: "forged",
    before_digest: null,
    after_digest: "ab".repeat(32),
    prev_hash: prev.hash,
  };
  return { ...e, hash: auditHash(e) };
}

Deno.test("audit: the entry hash is SHA-256 over the documented JSON array, chained from 64 zeros", async () => {
  await withLog((db) => {
    const first = entry(db, 1);
    assert.equal(first.prev_hash, GENESIS_HASH);
    for (const seq of [1, 2, LAST]) {
      const e = entry(db, seq);
      const encoding = JSON.stringify([
        "pharos-audit/1",
        e.seq,
        e.time,
        e.actor,
        e.action,
        e.target_type,
        e.target_id,
        e.before_digest,
        e.after_digest,
        e.prev_hash,
      ]);
      assert.equal(e.hash, createHash("sha256").update(encoding, "utf8").digest("hex"));
      if (seq > 1) assert.equal(e.prev_hash, entry(db, seq - 1).hash);
    }
    assert.deepEqual(verifyAudit(db), {
      ok: true,
      count: LAST,
      lastSeq: LAST,
      lastHash: entry(db, LAST).hash,
    });
    // The log holds digests, never the values: no e-mail address appears in it.
    const dump = JSON.stringify(db.prepare("SELECT * FROM audit_log").all());
    assert.ok(!dump.includes("example.com"));
    assert.equal(entry(db, 11).actor, "api:token:t1");
    assert.equal(entry(db, 11).before_digest, null);
    assert.match(entry(db, 11).after_digest!, /^[0-9a-f]{64}$/);
  });
});

Deno.test("audit: a stray UPDATE or DELETE on the log is refused by the database", async () => {
  await withLog((db) => {
    assert.throws(() => db.exec("UPDATE audit_log SET actor = 'x' WHERE seq = 1"), /append-only/);
    assert.throws(() => db.exec("DELETE FROM audit_log WHERE seq = 14"), /append-only/);
    assert.ok(verifyAudit(db).ok);
  });
});

const TAMPERING: [string, (db: Db) => void, number, AuditBreak, RegExp][] = [
  [
    "an edited entry",
    (db) => db.exec("UPDATE audit_log SET actor = 'cli:mallory' WHERE seq = 4"),
    4,
    "edited",
    /^seq 4 does not match its hash/,
  ],
  [
    "an edited entry whose hash was recomputed",
    (db) => {
      const e = { ...entry(db, 4), action: "setting.delete" };
      db.prepare("UPDATE audit_log SET action = ?, hash = ? WHERE seq = 4").run(
        e.action,
        auditHash(e),
      );
    },
    5,
    "rewritten",
    /^seq 5 follows an entry that is no longer in the log: seq 4 was edited/,
  ],
  [
    "a deleted entry",
    (db) => db.exec("DELETE FROM audit_log WHERE seq = 4"),
    4,
    "deleted",
    /^seq 4 is missing/,
  ],
  [
    "a deleted entry, the later ones renumbered and the head adjusted",
    (db) => {
      db.exec("DELETE FROM audit_log WHERE seq = 4");
      db.exec("UPDATE audit_log SET seq = seq - 1 WHERE seq > 4");
      db.exec("UPDATE audit_head SET count = count - 1, last_seq = last_seq - 1");
    },
    4,
    "rewritten",
    /^seq 4 follows an entry that is no longer in the log/,
  ],
  [
    "an inserted entry (correctly hashed, later ones renumbered, head adjusted)",
    (db) => {
      const forged = forge(entry(db, 3), 4);
      db.exec("UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 4");
      db.exec("UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000");
      insert(db, forged);
      db.exec("UPDATE audit_head SET count = count + 1, last_seq = last_seq + 1");
    },
    4,
    "inserted",
    /^seq 5 follows seq 3: seq 4 was inserted/,
  ],
  [
    "two entries swapped",
    (db) => {
      const [a, b] = [entry(db, 4), entry(db, 5)];
      db.exec("DELETE FROM audit_log WHERE seq IN (4, 5)");
      insert(db, { ...b, seq: 4 });
      insert(db, { ...a, seq: 5 });
    },
    4,
    "reordered",
    /^seq 4 follows seq 5, which comes after it: reordered/,
  ],
  [
    "the last two entries deleted (truncated tail)",
    (db) => db.exec(`DELETE FROM audit_log WHERE seq > ${LAST - 2}`),
    LAST - 1,
    "truncated",
    /^the log ends at seq 12 but the head records 14: the last 2 entries were deleted/,
  ],
  [
    "an entry appended outside the service layer",
    (db) => insert(db, forge(entry(db, LAST), LAST + 1)),
    LAST + 1,
    "appended",
    /^the head ends at seq 14, but the log goes on to seq 15/,
  ],
  [
    "the last entry and the head rewritten apart",
    (db) => db.exec(`UPDATE audit_head SET last_hash = '${"cd".repeat(32)}'`),
    LAST,
    "head",
    /^seq 14 and the head disagree/,
  ],
];

for (const [what, tamper, seq, kind, detail] of TAMPERING) {
  Deno.test(`audit: ${what} is detected and located`, async () => {
    await withLog((db) => {
      dropGuards(db);
      tamper(db);
      const v = verifyAudit(db);
      assert.equal(v.ok, false);
      if (v.ok) return;
      assert.equal(v.kind, kind);
      assert.equal(v.seq, seq);
      assert.match(v.detail, detail);
    });
  });
}

Deno.test("cli: cox audit verify says OK with the count, or names the first broken entry and exits 1; audit tail prints the last entries", async () => {
  const dir = await Deno.makeTempDir();
  const state = `${dir}/state`;
  try {
    const init = capture();
    assert.equal(await runCli(["init", "--state", state], init.io, noEnv), 0);
    const add = capture();
    assert.equal(
      await runCli(["users", "add", "ann@example.com", "--state", state], add.io, noEnv),
      0,
    );
    const ok = capture();
    assert.equal(await runCli(["audit", "verify", "--state", state], ok.io, noEnv), 0);
    assert.match(
      ok.out.join(""),
      /^audit log OK: 11 entries, last seq 11, last hash [0-9a-f]{64}\n$/,
    );

    const tail = capture();
    assert.equal(await runCli(["audit", "tail", "-n", "3", "--state", state], tail.io, noEnv), 0);
    const lines = tail.out.join("").trimEnd().split("\n");
    assert.equal(lines.length, 4);
    assert.match(lines[0], /^SEQ +TIME +ACTOR +ACTION +TARGET +BEFORE +AFTER +HASH$/);
    assert.match(
      lines[3],
      /^11 +\S+ +cli:\S+ +user\.create +user:[0-9a-f-]{36} +- +[0-9a-f]{12} +[0-9a-f]{12}$/,
    );
    assert.match(lines[1], /^9 .* setting\.set +setting:reality\.decoy_rotation /);
    for (const bad of [["-n", "0"], ["-n", "x"], ["-n", "10001"]]) {
      const c = capture();
      assert.equal(await runCli(["audit", "tail", ...bad, "--state", state], c.io, noEnv), 2);
      assert.equal(c.err.length, 1);
    }

    const db = openDatabase(`${state}/${DATABASE_FILE}`);
    dropGuards(db);
    db.exec("UPDATE audit_log SET target_id = 'relay.mode' WHERE seq = 2");
    db.close();
    const broken = capture();
    assert.equal(await runCli(["audit", "verify", "--state", state], broken.io, noEnv), 1);
    assert.deepEqual(broken.err, [
      "error: audit log broken at seq 2 (edited): seq 2 does not match its hash: edited",
    ]);
    assert.equal(broken.out.length, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
