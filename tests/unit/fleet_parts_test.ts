/**
 * The fleet driver's small parts, without agents: alerts (one open per
 * kind and target, audited, idempotent), the worker protocol's byte
 * encoding, the egress allow-list taken from the node table, and which
 * FleetErrors are retryable.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { verifyAudit } from "../../controller/audit_verify.ts";
import { MIGRATIONS } from "../../controller/db/migrations.ts";
import { type Db, migrate } from "../../controller/db/sqlite.ts";
import { Alerts } from "../../controller/fleet/alerts.ts";
import { FleetError } from "../../controller/fleet/errors.ts";
import { decodeBytes, encodeBytes, readLines } from "../../controller/fleet/wire.ts";
import { egressAllowFromNodes, relayIdByHost } from "../../controller/relay/policy_source.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Relays } from "../../controller/service/relays.ts";
import { Service } from "../../controller/service/service.ts";

function db(): Db {
  const d = new DatabaseSync(":memory:") as unknown as Db;
  migrate(d, MIGRATIONS);
  return d;
}

Deno.test("fleet alerts: one open alert per kind and target; resolve is idempotent; all audited", () => {
  const d = db();
  const svc = new Service(d);
  const node = new Nodes(svc).create("cli:root", { name: "fra-1", host: "203.0.113.7" });
  const alerts = new Alerts(svc);
  const s = { kind: "node-unreachable", targetType: "node", targetId: node.id } as const;
  const a = alerts.raise("system:fleet", s, "critical", "no answer");
  assert.equal(alerts.raise("system:fleet", s, "critical", "again").id, a.id, "not doubled");
  assert.equal(alerts.list().length, 1);
  assert.equal(alerts.resolve("system:fleet", s), true);
  assert.equal(alerts.resolve("system:fleet", s), false, "nothing left to resolve");
  const b = alerts.raise("system:fleet", s, "critical", "down again");
  assert.notEqual(b.id, a.id, "a new episode is a new alert");
  assert.equal(alerts.list({ openOnly: false, targetId: node.id }).length, 2);
  const actions = (d.prepare(
    "SELECT action FROM audit_log WHERE target_type = 'alert' ORDER BY seq",
  ).all() as { action: string }[]).map((r) => r.action);
  assert.deepEqual(actions, ["alert.open", "alert.resolve", "alert.open"]);
  assert.equal(verifyAudit(d).ok, true);
  // A stray second open alert is refused by the database itself.
  assert.throws(() =>
    d.prepare(
      `INSERT INTO alerts (id, kind, target_type, target_id, severity, message, opened_at, updated_at)
       VALUES ('x', 'node-unreachable', 'node', ?, 'critical', 'dup', 'now', 'now')`,
    ).run(node.id)
  );
});

Deno.test("fleet wire: byte fields survive the JSON lines both ways; lines split across chunks", async () => {
  const msg = {
    a: new Uint8Array([0, 1, 255]),
    list: [{ b: new Uint8Array(0) }],
    n: "42",
    t: true,
  };
  const line = JSON.stringify(encodeBytes(msg));
  assert.ok(!line.includes("\\u0000"));
  assert.deepEqual(decodeBytes(JSON.parse(line)), msg);
  const chunks = ['{"x":1}\n{"y"', ':2}\n\n{"z":3}'];
  const stream = ReadableStream.from(chunks.map((c) => new TextEncoder().encode(c)));
  const lines: string[] = [];
  for await (const l of readLines(stream)) lines.push(l);
  assert.deepEqual(lines, ['{"x":1}', '{"y":2}', '{"z":3}']);
});

Deno.test("fleet egress allow-list: per relay, from the node table, disabled nodes left out", () => {
  const d = db();
  const svc = new Service(d);
  const relays = new Relays(svc);
  const r1 = relays.certified("cli:root", "relay1.example.net", "1a");
  const r2 = relays.certified("cli:root", "relay2.example.net", "2b");
  const nodes = new Nodes(svc);
  nodes.create("cli:root", { name: "a", host: "10.0.0.1", viaRelay: r1.id });
  const b = nodes.create("cli:root", { name: "b", host: "2001:db8::1", viaRelay: r1.id });
  nodes.create("cli:root", { name: "c", host: "10.0.0.3", viaRelay: r2.id });
  nodes.create("cli:root", { name: "d", host: "10.0.0.4" }); // dialled directly
  assert.deepEqual(egressAllowFromNodes(d, r1.id), ["10.0.0.1:8444", "[2001:db8::1]:8444"]);
  assert.deepEqual(egressAllowFromNodes(d, r2.id), ["10.0.0.3:8444"]);
  assert.equal(egressAllowFromNodes(d).length, 3, "no relay named: every relayed node");
  svc.mutate(
    { actor: "cli:root", action: "node.disable", target: { type: "node", id: b.id } },
    (tx) => tx.update({ status: "disabled" }),
  );
  assert.deepEqual(egressAllowFromNodes(d, r1.id), ["10.0.0.1:8444"]);
  assert.equal(relayIdByHost(d, "relay2.example.net"), r2.id);
  assert.equal(relayIdByHost(d, "nowhere.example.net"), undefined);
});

Deno.test("fleet errors: what a caller may simply retry", () => {
  for (const code of ["unreachable", "timeout", "worker-restarted"] as const) {
    assert.equal(new FleetError(code, "x").retryable, true, code);
  }
  for (
    const code of ["unknown-node", "bad-certificate", "identity-mismatch", "node-error"] as const
  ) {
    assert.equal(new FleetError(code, "x").retryable, false, code);
  }
});
