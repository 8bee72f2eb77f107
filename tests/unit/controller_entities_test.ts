/** Users, nodes and settings through the service layer: their rules and their audit entries. */
import assert from "node:assert/strict";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { type Db, openDatabase } from "../../controller/db/sqlite.ts";
import { Revocations } from "../../controller/revocation.ts";
import { ServiceError } from "../../controller/service/errors.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { OWN_DEFAULTS, PRESET_KEYS, PRESETS, Settings } from "../../controller/service/settings.ts";
import { Users } from "../../controller/service/users.ts";
import { obfuscationsAlike } from "../../core/dataplane/obfuscation.ts";

async function withDb(fn: (db: Db, svc: Service) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const db = openDatabase(`${dir}/pharos.db`);
  try {
    await fn(db, new Service(db));
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const entries = (db: Db) =>
  (db.prepare("SELECT action FROM audit_log ORDER BY seq").all() as { action: string }[])
    .map((r) => r.action);

const code = (c: string) => (e: unknown) => e instanceof ServiceError && e.code === c;

Deno.test("users: e-mail addresses are unique whatever their case; bad ones are refused", async () => {
  await withDb((db, svc) => {
    const users = new Users(svc);
    const ann = users.add("cli:root", { email: "  Ann@Example.COM " });
    assert.deepEqual([ann.email, ann.role, ann.status, ann.version, ann.hasPassword], [
      "Ann@Example.COM",
      "user",
      "active",
      1,
      false,
    ]);
    assert.throws(() => users.add("cli:root", { email: "ann@example.com" }), (e) => {
      assert.ok(code("exists")(e));
      assert.match((e as Error).message, /^user Ann@Example\.COM exists already/);
      return true;
    });
    // Unicode case folding too (NFC first): "É" and "é" are one address.
    users.add("cli:root", { email: "\u00c9lodie@example.fr" });
    assert.throws(
      () => users.add("cli:root", { email: "e\u0301lodie@example.fr" }),
      code("exists"),
    );
    assert.equal(users.find("ANN@example.com")?.id, ann.id);
    for (
      const bad of [
        "",
        "ann",
        "ann@",
        "@example.com",
        "a b@example.com",
        "ann@localhost",
        "a@b.",
        `${"x".repeat(65)}@example.com`,
        "a@b@example.com",
        "a\n@example.com",
      ]
    ) {
      assert.throws(() => users.add("cli:root", { email: bad }), code("invalid"), bad);
    }
    assert.deepEqual(entries(db), ["user.create", "user.create"]);
  });
});

Deno.test("users: the personal preset allows one admin, the enterprise preset many", async () => {
  await withDb((db, svc) => {
    const users = new Users(svc);
    users.add("cli:root", { email: "root@example.com", role: "admin" });
    assert.throws(
      () => users.add("cli:root", { email: "second@example.com", role: "admin" }),
      (e) => {
        assert.ok(code("one-admin")(e));
        assert.match((e as Error).message, /root@example\.com is it; apply the enterprise preset/);
        return true;
      },
    );
    users.add("cli:root", { email: "plain@example.com" });
    new Settings(svc).applyPreset("cli:root", "enterprise");
    users.add("cli:root", { email: "second@example.com", role: "admin" });
    assert.deepEqual(users.list().map((u) => `${u.email}:${u.role}`), [
      "plain@example.com:user",
      "root@example.com:admin",
      "second@example.com:admin",
    ]);
    assert.ok(verifyAudit(db).ok);
  });
});

Deno.test("settings: unset keys read as the personal preset; presets apply in one go, idempotently", async () => {
  await withDb((db, svc) => {
    const settings = new Settings(svc);
    assert.deepEqual(
      Object.fromEntries(settings.list().map((s) => [s.key, s.value])),
      { ...PRESETS.personal, ...OWN_DEFAULTS },
    );
    assert.ok(settings.list().every((s) => s.version === 0 && s.updatedAt === null));
    // Only the values that differ from what is stored are written.
    assert.deepEqual(settings.applyPreset("cli:root", "personal"), PRESET_KEYS);
    assert.deepEqual(settings.applyPreset("cli:root", "personal"), []);
    const changed = settings.applyPreset("cli:root", "enterprise");
    assert.deepEqual(changed, PRESET_KEYS.filter((k) => k !== "reality.decoy"));
    assert.equal(settings.get("audit.retention_days"), 365);
    assert.equal(settings.list().find((s) => s.key === "preset")?.version, 2);
    assert.equal(entries(db).length, PRESET_KEYS.length + changed.length);

    // deno-lint-ignore no-explicit-any
    const set = (k: any, v: any) => () => settings.set("cli:root", k, v);
    for (
      const bad of [
        set("audit.retention_days", -1),
        set("audit.retention_days", 1.5),
        set("audit.retention_days", "30"),
        set("relay.mode", "remote"),
        set("preset", "corporate"),
        set("reality.decoy", "not a host"),
        set("endpoints.rotation", 1),
      ]
    ) assert.throws(bad, code("invalid"));

    // A value damaged in the file is reported, not used.
    db.exec(`UPDATE settings SET value = '"forever"' WHERE key = 'audit.retention_days'`);
    assert.throws(() => settings.get("audit.retention_days"), (e) => {
      assert.ok(code("damaged")(e));
      assert.match((e as Error).message, /cox settings preset NAME/);
      return true;
    });
  });
});

Deno.test("nodes: created pending with distinct obfuscation; policy toggles need forwarding and raise the desired revision", async () => {
  await withDb((db, svc) => {
    const nodes = new Nodes(svc);
    const made = ["a", "b", "c", "d", "e"].map((n, i) =>
      nodes.create("cli:root", { name: `node-${n}`, host: `203.0.113.${i + 1}` })
    );
    for (const x of made) {
      for (const y of made) {
        if (x !== y) assert.ok(!obfuscationsAlike(x.obfuscation, y.obfuscation));
      }
    }
    const a = made[0];
    assert.deepEqual(
      [a.status, a.forwarding, a.masquerade, a.isolation, a.desiredRevision, a.appliedRevision],
      ["pending", true, true, true, 1, 0],
    );
    assert.deepEqual([a.sshUser, a.sshPort, a.controlPort, a.endpoints], ["root", 22, 8444, []]);

    for (
      const bad of [
        { name: "Node A", host: "203.0.113.9" },
        { name: crypto.randomUUID(), host: "203.0.113.9" },
        { name: "node-x", host: "not a host" },
        { name: "node-x", host: "203.0.113.9", sshPort: 0 },
        { name: "node-x", host: "203.0.113.9", sshUser: "root; rm -rf /" },
        { name: "node-x", host: "203.0.113.9", region: "Frankfurt am Main" },
      ]
    ) assert.throws(() => nodes.create("cli:root", bad), ServiceError, JSON.stringify(bad));
    assert.throws(
      () => nodes.create("cli:root", { name: "node-a", host: "192.0.2.1" }),
      code("exists"),
    );
    assert.throws(
      () => nodes.create("cli:root", { name: "node-x", host: "192.0.2.1", viaRelay: "nope" }),
      code("not-found"),
    );

    const count = entries(db).length;
    assert.throws(() => nodes.setPolicy("cli:root", "node-a", { forwarding: false }), (e) => {
      assert.ok(code("invalid")(e));
      assert.match((e as Error).message, /masquerade requires forwarding/);
      return true;
    });
    assert.equal(entries(db).length, count);
    const off = nodes.setPolicy("cli:root", "node-a", {
      forwarding: false,
      masquerade: false,
      isolation: false,
    });
    assert.deepEqual([off.forwarding, off.masquerade, off.isolation], [false, false, false]);
    assert.deepEqual([off.version, off.desiredRevision], [2, 2]);
    // The database refuses the combination too, whoever writes.
    assert.throws(() => db.exec(`UPDATE nodes SET masquerade = 1 WHERE id = '${a.id}'`), /CHECK/);
    // Nothing to change: no version step, no entry.
    nodes.setPolicy("cli:root", a.id, { forwarding: false });
    assert.equal(nodes.require(a.id).version, 2);
    assert.equal(entries(db).length, count + 1);
    assert.throws(() => nodes.require("node-z"), code("not-found"));
  });
});

Deno.test("nodes: removing a node revokes its certificate in the same transaction", async () => {
  await withDb((db, svc) => {
    const nodes = new Nodes(svc);
    const revocations = new Revocations(db);
    const n = nodes.create("cli:root", { name: "fra-1", host: "203.0.113.7" });
    // What SSH onboarding will record once the node's certificate is signed.
    svc.mutate(
      { actor: "system:onboarding", action: "node.certify", target: { type: "node", id: n.id } },
      (tx) => tx.update({ cert_serial: "5eed", status: "active" }),
    );
    const removed = nodes.remove("cli:root", "fra-1", 2);
    assert.equal(removed.certSerial, "5eed");
    assert.equal(nodes.find("fra-1"), undefined);
    revocations.sync();
    assert.equal(revocations.kindOf("5eed"), "node");
    assert.deepEqual(entries(db), [
      "node.create",
      "node.certify",
      "node.remove",
      "certificate.revoke",
    ]);
    assert.ok(verifyAudit(db).ok);
  });
});
