/**
 * The service layer: every mutation checks the expected version, writes,
 * and appends an audit entry in one transaction; a stale version or any
 * error writes nothing at all.
 */
import assert from "node:assert/strict";
import { readAuditHead } from "../../controller/audit.ts";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { type Db, openDatabase } from "../../controller/db/sqlite.ts";
import { Devices } from "../../controller/devices.ts";
import { Revocations } from "../../controller/revocation.ts";
import { canonicalJson, rowDigest } from "../../controller/service/canonical.ts";
import { ConflictError, ServiceError } from "../../controller/service/errors.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Relays } from "../../controller/service/relays.ts";
import { Service } from "../../controller/service/service.ts";
import { Settings } from "../../controller/service/settings.ts";
import { Users } from "../../controller/service/users.ts";
import { makeFleet } from "../support/pki_fixture.ts";

async function withDb(fn: (db: Db) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const db = openDatabase(`${dir}/pharos.db`);
  try {
    await fn(db);
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every row of every table, as canonical JSON: "nothing was written" means this is unchanged. */
function snapshot(db: Db): string {
  const tables = db.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
  ).all() as { name: string }[];
  return canonicalJson(
    tables.map(({ name }) => [name, db.prepare(`SELECT * FROM ${name} ORDER BY rowid`).all()]),
  );
}

const auditCount = (db: Db) => readAuditHead(db)!.count;

Deno.test("service: a mutation writes the row with version and updated_at and appends one audit entry with its digests", async () => {
  await withDb((db) => {
    let t = Date.parse("2030-01-02T03:04:05.000Z");
    const svc = new Service(db, { clock: () => new Date(t += 1000) });
    const target = { type: "setting", id: "preset" } as const;
    svc.mutate(
      { actor: "cli:root", action: "setting.set", target, expectVersion: 0 },
      (tx) => tx.insert({ value: '"personal"' }),
    );
    const created = svc.get(target)!;
    assert.deepEqual({ ...created }, {
      key: "preset",
      value: '"personal"',
      version: 1,
      updated_at: "2030-01-02T03:04:06.000Z",
    });
    svc.mutate(
      { actor: "api:token:abc", action: "setting.set", target, expectVersion: 1 },
      (tx) => {
        assert.equal(tx.current?.version, 1);
        tx.update({ value: '"enterprise"' });
        tx.update({ value: '"enterprise"' }); // twice in one mutation: one version step
      },
    );
    const updated = svc.get(target)!;
    assert.equal(updated.version, 2);
    assert.equal(updated.updated_at, "2030-01-02T03:04:07.000Z");

    const log = db.prepare("SELECT * FROM audit_log ORDER BY seq").all() as Record<
      string,
      unknown
    >[];
    assert.equal(log.length, 2);
    assert.deepEqual(
      [log[1].actor, log[1].action, log[1].target_type, log[1].target_id, log[1].time],
      ["api:token:abc", "setting.set", "setting", "preset", "2030-01-02T03:04:07.000Z"],
    );
    assert.equal(log[0].before_digest, null);
    assert.equal(log[0].after_digest, rowDigest(created));
    assert.equal(log[1].before_digest, rowDigest(created));
    assert.equal(log[1].after_digest, rowDigest(updated));

    svc.mutate(
      { actor: "system:reconcile", action: "setting.delete", target },
      (tx) => tx.remove(),
    );
    assert.equal(svc.get(target), undefined);
    const last = db.prepare("SELECT * FROM audit_log WHERE seq = 3").get() as Record<
      string,
      unknown
    >;
    assert.equal(last.after_digest, null);
    // A mutation that writes nothing records nothing.
    svc.mutate({ actor: "cli:root", action: "setting.set", target }, () => {});
    assert.equal(auditCount(db), 3);
    assert.ok(verifyAudit(db).ok);
  });
});

Deno.test("service: a stale version is a ConflictError carrying the current row, and nothing is written", async () => {
  await withDb((db) => {
    const svc = new Service(db);
    const target = { type: "setting", id: "preset" } as const;
    svc.mutate(
      { actor: "cli:root", action: "setting.set", target },
      (tx) => tx.insert({ value: '"personal"' }),
    );
    svc.mutate(
      { actor: "cli:root", action: "setting.set", target },
      (tx) => tx.update({ value: '"enterprise"' }),
    );
    const before = snapshot(db);
    let ran = false;
    for (const stale of [0, 1, 3]) {
      assert.throws(
        () =>
          svc.mutate(
            { actor: "cli:root", action: "setting.set", target, expectVersion: stale },
            (tx) => {
              ran = true;
              tx.update({ value: '"personal"' });
            },
          ),
        (e) => {
          assert.ok(e instanceof ConflictError);
          assert.equal(e.code, "conflict");
          assert.equal(e.expected, stale);
          assert.equal(e.current?.version, 2);
          assert.equal(e.current?.value, '"enterprise"');
          assert.match(e.message, /is at version 2, not \d: someone else changed it; reload it/);
          return true;
        },
      );
    }
    assert.equal(ran, false, "the change never ran");
    // Deleted meanwhile: the conflict says so (current null).
    svc.mutate({ actor: "cli:root", action: "setting.delete", target }, (tx) => tx.remove());
    const gone = snapshot(db);
    assert.throws(
      () =>
        svc.mutate(
          { actor: "cli:root", action: "setting.set", target, expectVersion: 2 },
          (tx) => tx.update({ value: "1" }),
        ),
      (e) => e instanceof ConflictError && e.current === null && /no longer exists/.test(e.message),
    );
    assert.equal(snapshot(db), gone);
    assert.notEqual(before, gone);
  });
});

Deno.test("service: stale versions on every entity mutation are refused with nothing written", async () => {
  const fleet = await makeFleet();
  const phone = await fleet.issue({ kind: "device", name: "phone" });
  await withDb(async (db) => {
    const svc = new Service(db);
    const nodes = new Nodes(svc);
    const settings = new Settings(svc);
    const revocations = new Revocations(db);
    const devices = new Devices(db, revocations);
    const node = nodes.create("cli:root", { name: "fra-1", host: "203.0.113.7" });
    nodes.setPolicy("cli:root", "fra-1", { isolation: false });
    settings.set("cli:root", "audit.retention_days", 40);
    const device = await devices.register(phone.cert);
    devices.setStatus(device.id, "disabled");
    const cases: [string, () => unknown, number][] = [
      ["setting set", () => settings.set("cli:root", "audit.retention_days", 50, 2), 1],
      ["setting create", () => settings.set("cli:root", "audit.retention_days", 50, 0), 1],
      ["node policy", () => nodes.setPolicy("cli:root", node.id, { masquerade: false }, 1), 2],
      ["node remove", () => nodes.remove("cli:root", "fra-1", 3), 2],
      ["device status", () => devices.setStatus(device.id, "active", 1), 2],
      ["device revoke", () => devices.revoke(device.id, { expectedVersion: 1 }), 2],
    ];
    for (const [what, change, current] of cases) {
      const before = snapshot(db);
      const entries = auditCount(db);
      assert.throws(change, (e) => {
        assert.ok(e instanceof ConflictError, `${what}: ${e}`);
        assert.equal(e.current?.version, current, what);
        return true;
      });
      assert.equal(snapshot(db), before, `${what} wrote something`);
      assert.equal(auditCount(db), entries, what);
      assert.equal(revocations.has(device.serial), false);
    }
    // With the right versions the same changes go through, each audited.
    const entries = auditCount(db);
    nodes.setPolicy("cli:root", node.id, { masquerade: false }, 2);
    devices.revoke(device.id, { expectedVersion: 2, actor: "api:token:t9" });
    assert.equal(revocations.has(device.serial), true);
    const actions = (db.prepare("SELECT action, actor FROM audit_log WHERE seq > ? ORDER BY seq")
      .all(entries) as { action: string; actor: string }[]).map((r) => `${r.action} ${r.actor}`);
    assert.deepEqual(actions, [
      "node.policy cli:root",
      "device.revoke api:token:t9",
      "certificate.revoke api:token:t9",
    ]);
    assert.ok(verifyAudit(db).ok);
  });
});

Deno.test("service: an error inside a mutation rolls back the row and the audit entry; nested mutations are savepoints", async () => {
  await withDb((db) => {
    const svc = new Service(db);
    const users = new Users(svc);
    users.add("cli:root", { email: "ann@example.com" });
    const before = snapshot(db);
    const boom = new ServiceError("invalid", "boom");
    assert.throws(
      () =>
        svc.mutate(
          { actor: "cli:root", action: "setting.set", target: { type: "setting", id: "preset" } },
          (tx) => {
            tx.insert({ value: '"personal"' });
            throw boom;
          },
        ),
      (e) => e === boom,
    );
    assert.equal(snapshot(db), before);

    // One transaction, two mutations: the second fails, the first is undone too.
    assert.throws(() =>
      svc.transaction(() => {
        users.add("cli:root", { email: "bob@example.com" });
        users.add("cli:root", { email: "BOB@example.com" });
      }), (e) => e instanceof ServiceError && e.code === "exists");
    assert.equal(snapshot(db), before);

    // A nested failure caught by the caller undoes only itself.
    svc.transaction(() => {
      users.add("cli:root", { email: "cy@example.com" });
      assert.throws(() => users.add("cli:root", { email: "CY@example.com" }), ServiceError);
      users.add("cli:root", { email: "di@example.com" });
    });
    assert.deepEqual(users.list().map((u) => u.email), [
      "ann@example.com",
      "cy@example.com",
      "di@example.com",
    ]);
    assert.equal(auditCount(db), 3);
    assert.ok(verifyAudit(db).ok);
    assert.equal(db.isTransaction, false);
  });
});

Deno.test("service: bad actors, actions, targets, columns and database refusals are typed errors", async () => {
  await withDb((db) => {
    const svc = new Service(db);
    const target = { type: "setting", id: "k" } as const;
    const bad: [Parameters<Service["mutate"]>[0], string][] = [
      [{ actor: "root", action: "setting.set", target }, "invalid"],
      [{ actor: "cli:", action: "setting.set", target }, "invalid"],
      [{ actor: "cli:a b", action: "setting.set", target }, "invalid"],
      [{ actor: "cli:root", action: "set", target }, "invalid"],
      [
        { actor: "cli:root", action: "setting.set", target: { type: "setting", id: "" } },
        "invalid",
      ],
      [
        { actor: "cli:root", action: "setting.set", target: { type: "setting", id: "a\nb" } },
        "invalid",
      ],
      [
        // deno-lint-ignore no-explicit-any
        { actor: "cli:root", action: "setting.set", target: { type: "toString" as any, id: "x" } },
        "invalid",
      ],
      [{ actor: "cli:root", action: "setting.set", target, expectVersion: -1 }, "invalid"],
    ];
    for (const [m, code] of bad) {
      assert.throws(
        () => svc.mutate(m, (tx) => tx.insert({ value: "1" })),
        (e) => e instanceof ServiceError && e.code === code,
        JSON.stringify(m),
      );
    }
    const m = { actor: "cli:root", action: "setting.set", target };
    assert.throws(
      () => svc.mutate(m, (tx) => tx.insert({ "value; DROP TABLE users": "1" })),
      (e) => e instanceof ServiceError && e.code === "invalid",
    );
    assert.throws(
      () => svc.mutate(m, (tx) => tx.update({ value: "1" })),
      (e) => e instanceof ServiceError && e.code === "not-found",
    );
    assert.throws(
      () => svc.mutate(m, (tx) => tx.insert({ value: null })),
      (e) => e instanceof ServiceError && e.code === "invalid" && /NOT NULL/.test(e.message),
    );
    svc.mutate(m, (tx) => tx.insert({ value: "1" }));
    assert.throws(
      () => svc.mutate(m, (tx) => tx.insert({ value: "1" })),
      (e) => e instanceof ServiceError && e.code === "exists",
    );
    assert.throws(
      () => svc.mutate(m, (tx) => tx.update({ version: 9 })),
      (e) => e instanceof ServiceError && /kept by the service layer/.test(e.message),
    );
    assert.equal(auditCount(db), 1);
  });
});

Deno.test("service: a writer that cannot get the lock in time gets a typed busy error", async () => {
  const dir = await Deno.makeTempDir();
  const a = openDatabase(`${dir}/pharos.db`);
  const b = openDatabase(`${dir}/pharos.db`);
  try {
    b.exec("PRAGMA busy_timeout = 0");
    a.exec("BEGIN IMMEDIATE");
    assert.throws(
      () => new Settings(new Service(b)).set("cli:root", "audit.retention_days", 10),
      (e) => e instanceof ServiceError && e.code === "busy" && /try again/.test(e.message),
    );
    a.exec("ROLLBACK");
    assert.equal(b.isTransaction, false);
    assert.equal(new Settings(new Service(b)).set("cli:root", "audit.retention_days", 10), true);
  } finally {
    a.close();
    b.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("relays: a signed certificate records the relay, a new one updates its serial", async () => {
  await withDb((db) => {
    const relays = new Relays(new Service(db));
    const r = relays.certified("cli:root", "Relay.Example.net", "0A1B");
    assert.deepEqual([r.host, r.certSerial, r.kind, r.status, r.version, r.tunnelPort], [
      "relay.example.net",
      "a1b",
      "pharos",
      "pending",
      1,
      8444,
    ]);
    const again = relays.certified("cli:root", "relay.example.net", "ff");
    assert.equal(again.id, r.id);
    assert.deepEqual([again.certSerial, again.version], ["ff", 2]);
    assert.throws(() => relays.certified("cli:root", "bad host", "ff"), /not/);
    assert.throws(
      () => relays.certified("cli:root", "r2.example", "zz"),
      /not a certificate serial/,
    );
    const actions = db.prepare("SELECT action FROM audit_log ORDER BY seq").all() as {
      action: string;
    }[];
    assert.deepEqual(actions.map((a) => a.action), ["relay.create", "relay.certify"]);
  });
});

Deno.test("service: an async change is refused and rolled back (an await would split the transaction)", async () => {
  await withDb((db) => {
    const svc = new Service(db);
    const before = snapshot(db);
    assert.throws(
      () =>
        svc.mutate(
          { actor: "cli:root", action: "setting.set", target: { type: "setting", id: "preset" } },
          // deno-lint-ignore require-await
          async (tx) => tx.insert({ value: '"personal"' }),
        ),
      (e) => e instanceof ServiceError && e.code === "async-mutation",
    );
    assert.equal(snapshot(db), before);
    assert.equal(db.isTransaction, false);
  });
});
