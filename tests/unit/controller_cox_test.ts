/**
 * The `cox` commands over the database: init presets, settings, users,
 * nodes, relays. Every command ends in one line and an exit code; every
 * change is in the audit log under the operator's `cli:` actor; a stale
 * --expect-version changes nothing.
 */
import assert from "node:assert/strict";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { runCli } from "../../controller/cli/run.ts";
import { type Db, openDatabase } from "../../controller/db/sqlite.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { DATABASE_FILE } from "../../controller/state.ts";
import { generateCsr } from "../../core/pki/mod.ts";

const noEnv = () => undefined;

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (t: string) => out.push(t), err: (l: string) => err.push(l) }, out, err };
}

/** Runs cox with --state; returns exit code, stdout text and stderr lines. */
async function cox(state: string, ...args: string[]) {
  const c = capture();
  const code = await runCli([...args, "--state", state], c.io, noEnv);
  return { code, out: c.out.join(""), err: c.err };
}

async function withState(
  flags: string[],
  fn: (state: string, db: () => Db) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const state = `${dir}/state`;
  const opened: Db[] = [];
  try {
    const init = await cox(state, "init", ...flags);
    assert.equal(init.code, 0, init.err.join("\n"));
    await fn(state, () => {
      const db = openDatabase(`${state}/${DATABASE_FILE}`);
      opened.push(db);
      return db;
    });
  } finally {
    for (const db of opened) db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function settingValue(out: string, key: string): string {
  const line = out.split("\n").find((l) => l.startsWith(`${key} `))!;
  return line.split(/ {2,}/)[1];
}

Deno.test("cox init: personal by default, --enterprise on request, not both; settings preset changes an existing state", async () => {
  await withState([], async (state) => {
    const list = await cox(state, "settings", "list");
    assert.equal(list.code, 0);
    assert.match(list.out, /^KEY +VALUE +VERSION +UPDATED\n/);
    assert.equal(settingValue(list.out, "preset"), '"personal"');
    assert.equal(settingValue(list.out, "audit.retention_days"), "30");

    const applied = await cox(state, "settings", "preset", "enterprise");
    assert.equal(applied.code, 0);
    assert.match(applied.out, /^applied the enterprise preset: changed preset, protocols\.xray, /);
    const after = await cox(state, "settings", "list");
    assert.equal(settingValue(after.out, "audit.retention_days"), "365");
    assert.equal(settingValue(after.out, "metrics.retention_days"), "90");
    const again = await cox(state, "settings", "preset", "enterprise");
    assert.equal(again.out, "applied the enterprise preset: nothing to change\n");

    const bad = await cox(state, "settings", "preset", "corporate");
    assert.equal(bad.code, 2);
    assert.deepEqual(bad.err, ['error: unknown preset "corporate"; use personal or enterprise']);
  });
  await withState(["--enterprise"], async (state) => {
    const list = await cox(state, "settings", "list");
    assert.equal(settingValue(list.out, "preset"), '"enterprise"');
    assert.equal(settingValue(list.out, "reality.decoy_rotation"), "true");
  });
  const dir = await Deno.makeTempDir();
  try {
    const both = await cox(`${dir}/s`, "init", "--personal", "--enterprise");
    assert.equal(both.code, 2);
    assert.deepEqual(both.err, ["error: choose one of --personal and --enterprise"]);
    assert.equal((await Array.fromAsync(Deno.readDir(dir))).length, 0, "nothing was created");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cox users: add (case-insensitive e-mail, one admin under personal) and list", async () => {
  await withState([], async (state, open) => {
    const empty = await cox(state, "users", "list");
    assert.equal(empty.out, `no users yet; add one with "cox users add EMAIL"\n`);
    const ann = await cox(state, "users", "add", "Ann@example.com", "--admin");
    assert.equal(ann.code, 0);
    assert.match(ann.out, /^added admin Ann@example\.com: id [0-9a-f-]{36}, version 1\n$/);
    const dup = await cox(state, "users", "add", "ANN@EXAMPLE.COM");
    assert.equal(dup.code, 1);
    assert.deepEqual(dup.err, [
      "error: user Ann@example.com exists already (e-mail addresses ignore case)",
    ]);
    const admin = await cox(state, "users", "add", "bob@example.com", "--admin");
    assert.equal(admin.code, 1);
    assert.match(admin.err[0], /^error: the personal preset allows one admin/);
    assert.equal((await cox(state, "users", "add", "bob@example.com")).code, 0);
    const bad = await cox(state, "users", "add", "not-an-address");
    assert.equal(bad.code, 1);
    assert.match(bad.err[0], /is not an e-mail address/);

    const list = await cox(state, "users", "list");
    const rows = list.out.trimEnd().split("\n");
    assert.match(rows[0], /^EMAIL +ROLE +STATUS +PASSWORD +ID +VERSION +UPDATED$/);
    assert.match(rows[1], /^Ann@example\.com +admin +active +none /);
    assert.match(rows[2], /^bob@example\.com +user +active +none /);
    assert.equal(rows.length, 3);

    const db = open();
    const actors = db.prepare("SELECT DISTINCT actor FROM audit_log").all() as { actor: string }[];
    assert.equal(actors.length, 1);
    assert.match(actors[0].actor, /^cli:[A-Za-z0-9._@+-]+$/);
  });
});

Deno.test("cox nodes: list, show, policy and remove; a stale --expect-version changes nothing", async () => {
  await withState([], async (state, open) => {
    assert.equal((await cox(state, "nodes", "list")).out, "no nodes yet\n");
    const db = open();
    const node = new Nodes(new Service(db)).create("system:onboarding", {
      name: "fra-1",
      host: "203.0.113.7",
      region: "fra1",
    });
    const list = await cox(state, "nodes", "list");
    assert.match(
      list.out.split("\n")[1],
      /^fra-1 +203\.0\.113\.7 +fra1 +pending +on +on +on +0\/1 +1 /,
    );

    const show = await cox(state, "nodes", "show", node.id);
    assert.equal(show.code, 0);
    assert.match(show.out, /^id: +[0-9a-f-]{36}\nname: +fra-1\n/);
    assert.match(show.out, /\npolicy: +forwarding on, masquerade on, isolation on\n/);
    assert.match(show.out, /\nobfuscation: +jc \d+ jmin \d+ jmax \d+ s1 \d+ /);
    assert.match(show.out, /\nversion: +1\n/);

    const snapshot = () =>
      JSON.stringify([
        db.prepare("SELECT * FROM nodes").all(),
        db.prepare("SELECT COUNT(*) FROM audit_log").get(),
      ]);
    const before = snapshot();
    const stale = await cox(
      state,
      "nodes",
      "policy",
      "fra-1",
      "--isolation",
      "off",
      "--expect-version",
      "0",
    );
    assert.equal(stale.code, 1);
    assert.deepEqual(stale.err, [
      `error: node ${node.id} is at version 1, not 0: someone else changed it; reload it and try again (nothing was changed)`,
    ]);
    assert.equal(stale.out, "");
    const invalid = await cox(state, "nodes", "policy", "fra-1", "--forwarding", "off");
    assert.equal(invalid.code, 1);
    assert.match(invalid.err[0], /masquerade requires forwarding; add --forwarding on/);
    assert.equal(snapshot(), before);

    const ok = await cox(
      state,
      "nodes",
      "policy",
      "fra-1",
      "--isolation",
      "off",
      "--expect-version",
      "1",
    );
    assert.equal(ok.code, 0);
    assert.equal(
      ok.out,
      "node fra-1: forwarding on, masquerade on, isolation off (version 2, desired revision 2)\n",
    );
    for (
      const [args, message] of [
        [
          ["nodes", "policy", "fra-1"],
          "error: give at least one of --forwarding, --masquerade, --isolation (on|off)",
        ],
        [
          ["nodes", "policy", "fra-1", "--isolation", "yes"],
          'error: --isolation takes on or off, not "yes"',
        ],
        [
          ["nodes", "policy", "fra-1", "--isolation", "on", "--expect-version", "v2"],
          'error: --expect-version takes a whole number ≥ 0, not "v2"',
        ],
        [
          ["nodes", "policy"],
          `error: "nodes policy" needs NODE: cox nodes policy NODE; "cox --help" lists the commands`,
        ],
        [
          ["nodes", "show", "a", "b"],
          `error: unexpected argument "b": cox nodes show NODE; "cox --help" lists the commands`,
        ],
        [
          ["nodes", "list", "--admin"],
          `error: --admin does not apply to "nodes list"; "cox --help" lists the commands`,
        ],
      ] as const
    ) {
      const r = await cox(state, ...args);
      assert.equal(r.code, 2, args.join(" "));
      assert.deepEqual(r.err, [message]);
    }

    const gone = await cox(state, "nodes", "remove", "fra-1", "--expect-version", "1");
    assert.equal(gone.code, 1);
    assert.equal(
      (await cox(state, "nodes", "remove", "fra-1", "--expect-version", "2")).out,
      "removed node fra-1 (203.0.113.7)\n",
    );
    const missing = await cox(state, "nodes", "show", "fra-1");
    assert.equal(missing.code, 1);
    assert.deepEqual(missing.err, [`error: no node "fra-1"; "cox nodes list" shows them`]);

    const actions = db.prepare(
      "SELECT action FROM audit_log WHERE target_type = 'node' ORDER BY seq",
    ).all() as { action: string }[];
    assert.deepEqual(actions.map((a) => a.action), ["node.create", "node.policy", "node.remove"]);
    assert.ok(verifyAudit(db).ok);
  });
});

Deno.test("cox relay sign records the relay; relays list shows it", async () => {
  await withState([], async (state) => {
    assert.equal(
      (await cox(state, "relays", "list")).out,
      `no relays yet; "cox relay sign" records one\n`,
    );
    const dir = `${state}/../csr`;
    await Deno.mkdir(dir);
    await Deno.writeTextFile(`${dir}/relay.csr`, (await generateCsr("relay")).csrPem);
    const signed = await cox(
      state,
      "relay",
      "sign",
      "--csr",
      `${dir}/relay.csr`,
      "--hosts",
      "Relay.Example.net,203.0.113.9",
    );
    assert.equal(signed.code, 0, signed.err.join("\n"));
    assert.match(signed.err[0], /recorded as relay [0-9a-f-]{36} \(version 1\)$/);
    const list = await cox(state, "relays", "list");
    const rows = list.out.trimEnd().split("\n");
    assert.match(rows[0], /^HOST +TUNNEL PORT +KIND +STATUS +CERT SERIAL +VERSION +ID$/);
    assert.match(
      rows[1],
      /^relay\.example\.net +8444 +pharos +pending +[0-9a-f]+ +1 +[0-9a-f-]{36}$/,
    );
    const serial = rows[1].split(/ +/)[4];
    // Signed again: the same relay, a new serial, version 2.
    await cox(state, "relay", "sign", "--csr", `${dir}/relay.csr`, "--hosts", "relay.example.net");
    const again = (await cox(state, "relays", "list")).out.trimEnd().split("\n");
    assert.equal(again.length, 2);
    assert.notEqual(again[1].split(/ +/)[4], serial);
    assert.equal(again[1].split(/ +/)[5], "2");
    const verify = await cox(state, "audit", "verify");
    assert.match(verify.out, /^audit log OK: 12 entries/);
  });
});
