/**
 * Forward-only migrations: a database is brought to the latest schema from
 * empty and from every earlier version, with the rows written at that
 * version intact. A new migration must add its entry to SEEDS (a test
 * checks), so the next upgrade path is tested the same way.
 */
import assert from "node:assert/strict";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { MIGRATIONS } from "../../controller/db/migrations.ts";
import { type Db, migrate, MigrationError } from "../../controller/db/sqlite.ts";
import { DatabaseSync } from "node:sqlite";
import { Nodes } from "../../controller/service/nodes.ts";
import { Relays } from "../../controller/service/relays.ts";
import { Service } from "../../controller/service/service.ts";
import { Settings } from "../../controller/service/settings.ts";
import { Users } from "../../controller/service/users.ts";
import { Alerts } from "../../controller/fleet/alerts.ts";

const T = "2030-01-01T00:00:00.000Z";

/** Rows written by a controller at each schema version (into the tables it created). */
const SEEDS: Record<number, (db: Db) => void> = {
  1: (db) => {
    const ins = db.prepare(
      "INSERT INTO ca (name, cert_pem, key_sealed, fingerprint, not_after, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
    );
    for (const n of ["root", "fleet", "device"]) {
      ins.run(n, `PEM ${n}`, new Uint8Array([1, 2, 3, n.length]), "ab".repeat(32), T, T);
    }
  },
  2: (db) => {
    db.prepare(
      "INSERT INTO service_certs (name, cert_pem, key_sealed, serial, not_after, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
    ).run("controller-client", "PEM", new Uint8Array([9]), "1f", T, T);
  },
  3: (db) => {
    db.prepare(
      `INSERT INTO devices (id, user_id, fingerprint, serial, status, not_after, created_at, updated_at)
       VALUES (?, NULL, ?, ?, 'disabled', ?, ?, ?)`,
    ).run("dev-1", `sha256:${"c".repeat(64)}`, "2a", T, T, T);
    db.prepare(
      `INSERT INTO revoked_certificates (serial, kind, subject, revoked_at, updated_at)
       VALUES ('3b', 'relay', 'relay r1', ?, ?)`,
    ).run(T, T);
    db.exec("UPDATE relay_policy_revision SET revision = 77, version = 5");
  },
  4: (db) => {
    const svc = new Service(db);
    new Settings(svc).applyPreset("cli:root", "enterprise");
    new Users(svc).add("cli:root", { email: "Ann@example.com", role: "admin" });
    new Relays(svc).certified("cli:root", "relay.example.net", "4c");
    const nodes = new Nodes(svc);
    nodes.create("cli:root", { name: "fra-1", host: "203.0.113.7", region: "fra1" });
    nodes.setPolicy("cli:root", "fra-1", { isolation: false });
  },
  5: (db) => {
    db.prepare(
      `INSERT INTO ssh_keys (name, algorithm, public_key, fingerprint, key_sealed, created_at, updated_at)
       VALUES ('controller', 'ssh-ed25519', 'ssh-ed25519 AAAA pharos-controller', 'SHA256:x', ?, ?, ?)`,
    ).run(new Uint8Array([5, 5]), T, T);
    const svc = new Service(db);
    const nodes = new Nodes(svc);
    const n = nodes.beginOnboarding("cli:root", {
      name: "ams-1",
      host: "198.51.100.9",
      sshPort: 2222,
      sshUser: "deploy",
    });
    nodes.pinHostKey("cli:root", n.id, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP8=");
    nodes.onboardingFailed("cli:root", n.id, "install", "command-failed: exit 1");
    const relays = new Relays(svc);
    const r = relays.beginOnboarding("cli:root", {
      host: "relay2.example.net",
      sshPort: 22,
      sshUser: "root",
    });
    relays.certifiedOnboarding("cli:root", r.id, {
      serial: "5d",
      pem: "PEM",
      hosts: ["relay2.example.net"],
    });
    relays.onboarded("cli:root", r.id, "ready");
  },
  6: (db) => {
    const svc = new Service(db);
    const node = new Nodes(svc).require("fra-1");
    const alerts = new Alerts(svc);
    const subject = { kind: "node-unreachable", targetType: "node", targetId: node.id } as const;
    alerts.raise("system:fleet", subject, "critical", "no answer to 3 polls");
    alerts.resolve("system:fleet", subject);
    alerts.raise("system:fleet", subject, "critical", "no answer to 3 polls");
    svc.mutate(
      { actor: "system:fleet", action: "node.observe", target: { type: "node", id: node.id } },
      (tx) => tx.update({ last_seen_at: T, agent_version: "0.1.0", observed_revision: 2 }),
    );
  },
  7: (db) => {
    const svc = new Service(db);
    const nodes = new Nodes(svc);
    const [entry, exit] = [nodes.require("fra-1").id, nodes.require("ams-1").id];
    const row = (
      type: "path" | "node_peer" | "node_link" | "reconcile_heal",
      id: string,
      values: Record<string, string | number | Uint8Array>,
    ) =>
      svc.mutate(
        {
          actor: "system:reconcile",
          action: `${type}.create`,
          target: { type, id },
          expectVersion: 0,
        },
        (tx) => tx.insert({ ...values, created_at: T }),
      );
    row("path", "p1", { entry_node_id: entry, exit_node_id: exit, status: "active" });
    row("node_peer", "np1", {
      node_id: entry,
      public_key: "x".repeat(43) + "=",
      psk_sealed: new Uint8Array([7, 7]),
      allowed_ips: '["10.8.0.2/32"]',
      path_id: "p1",
    });
    row("node_link", "l1", {
      entry_node_id: entry,
      exit_node_id: exit,
      link_index: 0,
      psk_sealed: new Uint8Array([8]),
    });
    row("reconcile_heal", "h1", { node_id: entry, sweep: 1, actions: '[{"kind":"add-peer"}]' });
  },
  8: (db) => {
    const svc = new Service(db);
    const user = new Users(svc).find("ann@example.com")!.id;
    const mk = (
      type: "ticket" | "session" | "login_attempt" | "sealed_profile",
      id: string,
      values: Record<string, string | number | Uint8Array>,
    ) =>
      svc.mutate(
        {
          actor: "system:accounts",
          action: `${type}.create`,
          target: { type, id },
          expectVersion: 0,
        },
        (tx) => tx.insert(values),
      );
    svc.mutate(
      {
        actor: "system:accounts",
        action: "device.enroll",
        target: { type: "device", id: "dev-8" },
      },
      (tx) =>
        tx.insert({
          user_id: user,
          fingerprint: `sha256:${"8".repeat(64)}`,
          serial: "8a",
          not_after: T,
          created_at: T,
          name: "phone",
          platform: "ios",
          encryption_public_key: new Uint8Array(32).fill(8),
          wg_public_key: "x".repeat(43) + "=",
          tunnel_ip: "10.66.0.2",
        }),
    );
    mk("ticket", "t8", {
      user_id: user,
      token_hash: "a".repeat(64),
      created_by: "cli:root",
      created_at: T,
      expires_at: T,
      used_at: T,
      device_id: "dev-8",
    });
    mk("session", "s8", {
      token_hash: "b".repeat(64),
      user_id: user,
      device_id: "dev-8",
      method: "password",
      created_at: T,
      expires_at: T,
    });
    mk("login_attempt", "account:ann@example.com", { failures: 6, locked_until: T });
    mk("sealed_profile", "dev-8", {
      user_id: user,
      revision: 3,
      ciphertext: new Uint8Array([1, 2]),
      expires_at: T,
    });
  },
  9: (db) => {
    const svc = new Service(db);
    const admin = new Users(svc).find("ann@example.com")!.id;
    const mk = (
      type:
        | "admin_session"
        | "api_token"
        | "admin_totp"
        | "recovery_code"
        | "login_throttle"
        | "setup_token",
      id: string,
      values: Record<string, string | number | Uint8Array | null>,
    ) =>
      svc.mutate(
        { actor: "system:api", action: `${type}.create`, target: { type, id }, expectVersion: 0 },
        (tx) => tx.insert(values),
      );
    mk("admin_session", "as9", {
      user_id: admin,
      secret_hash: "c".repeat(64),
      stage: "full",
      created_at: T,
      last_seen_at: T,
      expires_at: T,
    });
    mk("api_token", "0".repeat(32), {
      name: "prom",
      scope: "monitor",
      secret_hash: "d".repeat(64),
      created_by: "cli:root",
      created_at: T,
      last_used_at: T,
      last_used_from: "127.0.0.1",
      last_used_route: "GET /metrics",
    });
    mk("admin_totp", admin, {
      secret_sealed: new Uint8Array([9, 9]),
      confirmed_at: T,
      last_step: 7,
      created_at: T,
    });
    mk("recovery_code", "rc9", { user_id: admin, code_hash: "e".repeat(64), created_at: T });
    mk("login_throttle", "source:192.0.2.9", {
      failures: 3,
      last_failure_at: T,
      blocked_until: null,
    });
    mk("setup_token", "st9", { token_hash: "f".repeat(64), expires_at: T, created_at: T });
  },
  10: (db) => {
    const svc = new Service(db);
    const user = new Users(svc).find("ann@example.com")!.id;
    svc.mutate(
      {
        actor: "system:accounts",
        action: "ticket.create",
        target: { type: "ticket", id: "t10" },
        expectVersion: 0,
      },
      (tx) =>
        tx.insert({
          user_id: user,
          token_hash: "9".repeat(64),
          created_by: "cli:root",
          created_at: T,
          expires_at: T,
          claim_mac_key: new Uint8Array(32).fill(7),
        }),
    );
  },
  11: (db) => {
    const svc = new Service(db);
    const node = new Nodes(svc).require("fra-1");
    svc.mutate(
      {
        actor: "system:reconcile",
        action: "node_endpoint_confirmation.record",
        target: { type: "node_endpoint_confirmation", id: node.id },
        expectVersion: 0,
      },
      (tx) =>
        tx.insert({
          ranges: JSON.stringify([{ ip: "203.0.113.7", portMin: 2000, portMax: 2100 }]),
          confirmed_at: T,
        }),
    );
  },
};

const LATEST = MIGRATIONS.at(-1)!.version;

function tables(db: Db): string[] {
  return (db.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
  ).all() as { name: string }[]).map((r) => r.name);
}

function columns(db: Db, table: string): string[] {
  return (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name);
}

/** Every row of every table, restricted to the given columns per table. */
function rows(db: Db, shape: Map<string, string[]>): Record<string, unknown[]> {
  return Object.fromEntries(
    [...shape].map((
      [t, cols],
    ) => [t, db.prepare(`SELECT ${cols.join(", ")} FROM ${t} ORDER BY rowid`).all()]),
  );
}

Deno.test("migrations: versions are 1..N in order and each has a seed for the upgrade test", () => {
  assert.deepEqual(MIGRATIONS.map((m) => m.version), MIGRATIONS.map((_, i) => i + 1));
  assert.deepEqual(Object.keys(SEEDS).map(Number), MIGRATIONS.map((m) => m.version));
});

Deno.test("migrations: from empty to the latest; every mutable table has version and updated_at", () => {
  const db = new DatabaseSync(":memory:");
  try {
    assert.equal(migrate(db, MIGRATIONS), MIGRATIONS.length);
    assert.equal(migrate(db, MIGRATIONS), 0, "a second run applies nothing");
    const applied = db.prepare("SELECT version FROM schema_migrations ORDER BY version").all() as {
      version: number;
    }[];
    assert.deepEqual(applied.map((r) => r.version), MIGRATIONS.map((m) => m.version));
    // audit_log rows are never changed (append-only); schema_migrations is bookkeeping.
    const immutable = ["audit_log", "schema_migrations"];
    for (const t of tables(db).filter((t) => !immutable.includes(t))) {
      const cols = columns(db, t);
      assert.ok(cols.includes("version") && cols.includes("updated_at"), t);
    }
    for (
      const t of [
        "ca",
        "nodes",
        "relays",
        "users",
        "devices",
        "settings",
        "audit_log",
        "audit_head",
      ]
    ) {
      assert.ok(tables(db).includes(t), t);
    }
    assert.deepEqual(verifyAudit(db), {
      ok: true,
      count: 0,
      lastSeq: 0,
      lastHash: "0".repeat(64),
    });
  } finally {
    db.close();
  }
});

for (let k = 0; k <= LATEST; k++) {
  Deno.test(`migrations: a database at version ${k} with rows in it upgrades to ${LATEST}, rows intact`, () => {
    const db = new DatabaseSync(":memory:");
    try {
      migrate(db, MIGRATIONS.slice(0, k));
      for (let v = 1; v <= k; v++) SEEDS[v](db);
      const shape = new Map(
        tables(db).filter((t) => t !== "schema_migrations").map((t) => [t, columns(db, t)]),
      );
      const before = rows(db, shape);
      assert.equal(migrate(db, MIGRATIONS), LATEST - k);
      assert.deepEqual(rows(db, shape), before);
      const applied = db.prepare("SELECT version FROM schema_migrations ORDER BY version")
        .all() as { version: number }[];
      assert.deepEqual(applied.map((r) => r.version), MIGRATIONS.map((m) => m.version));
      // The upgraded database takes audited changes.
      new Users(new Service(db)).add("cli:root", { email: `after-${k}@example.com` });
      const v = verifyAudit(db);
      assert.ok(v.ok, JSON.stringify(v));
    } finally {
      db.close();
    }
  });
}

Deno.test("migrations: a database newer than the program is refused, untouched", () => {
  const db = new DatabaseSync(":memory:");
  try {
    migrate(db, MIGRATIONS);
    assert.throws(
      () => migrate(db, MIGRATIONS.slice(0, 2)),
      (e) => e instanceof MigrationError && /newer than this program knows/.test(e.message),
    );
  } finally {
    db.close();
  }
});

Deno.test("migrations: a migration another process applied after this one looked is not applied twice", async () => {
  const dir = await Deno.makeTempDir();
  const a = new DatabaseSync(`${dir}/pharos.db`);
  const b = new DatabaseSync(`${dir}/pharos.db`);
  try {
    migrate(a, MIGRATIONS.slice(0, LATEST - 1));
    // b reads the schema version, then (at the first look at the list's last
    // version) process a upgrades the database: b's plan is now stale.
    const last = MIGRATIONS[LATEST - 1];
    let raced = false;
    const racing = {
      name: last.name,
      sql: last.sql,
      get version() {
        if (!raced) {
          raced = true;
          assert.equal(migrate(a, MIGRATIONS), 1);
        }
        return last.version;
      },
    };
    assert.equal(migrate(b, [...MIGRATIONS.slice(0, LATEST - 1), racing]), 0);
    assert.equal(raced, true);
    const applied = b.prepare("SELECT version FROM schema_migrations ORDER BY version").all() as {
      version: number;
    }[];
    assert.deepEqual(applied.map((r) => r.version), MIGRATIONS.map((m) => m.version));
  } finally {
    a.close();
    b.close();
    await Deno.remove(dir, { recursive: true });
  }
});
