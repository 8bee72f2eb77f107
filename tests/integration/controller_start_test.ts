/**
 * What `deno task controller` sets up on its own: the controller's SSH key
 * on first start (kept across restarts), and tunnels to relays that appear
 * in the relays table while it runs (`cox relays add` from another
 * process) — dialled without a restart, closed when the row goes.
 */
import assert from "node:assert/strict";
import { resolveConfig } from "../../controller/config.ts";
import client from "prom-client";
import { registerFleetMetrics } from "../../controller/monitoring.ts";
import { startController } from "../../controller/serve.ts";
import { Relays } from "../../controller/service/relays.ts";
import { Service } from "../../controller/service/service.ts";
import { openState } from "../../controller/state.ts";
import { runTestRelay, writeRelayMaterial } from "../support/remote_relay.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const ACTOR = "cli:test";

function sshKeys(db: { prepare(sql: string): { all(): unknown[] } }) {
  return db.prepare("SELECT fingerprint FROM ssh_keys").all() as { fingerprint: string }[];
}

Deno.test({
  name: "controller start: the SSH key is made on first start and kept on the next",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const cfg = resolveConfig(
      { state: dir, "ui-listen": "127.0.0.1:0", "relay-listen": "off" },
      () => undefined,
    );
    const logs: string[] = [];
    const first = await within(
      startController(cfg, { logSink: (l) => logs.push(l) }),
      WAIT_MS,
      "the controller to start",
    );
    const made = sshKeys(first.state.db);
    // The fleet's figures are on /metrics beside the API's (names do not clash).
    const registry = new client.Registry();
    registerFleetMetrics(registry, first);
    const text = await registry.metrics();
    assert.match(text, /^pharos_fleet_nodes\{health="healthy"\} 0$/m);
    assert.match(text, /^pharos_reconcile_sweeps \d+$/m);
    await within(first.shutdown(), WAIT_MS, "the controller to stop");
    assert.equal(made.length, 1);
    assert.match(made[0].fingerprint, /^SHA256:/);
    assert.ok(logs.some((l) => l.includes("created the controller's SSH key")));
    const audit = await openState(dir);
    try {
      const entry = audit.db.prepare(
        "SELECT actor FROM audit_log WHERE action = 'ssh_key.create'",
      ).all() as { actor: string }[];
      assert.equal(entry.length, 1, "the key's creation is audited once");
    } finally {
      audit.close();
    }
    const again = await within(
      startController(cfg, { logSink: () => {} }),
      WAIT_MS,
      "the controller to start again",
    );
    try {
      assert.deepEqual(sshKeys(again.state.db), made, "a restart keeps the same key");
    } finally {
      await within(again.shutdown(), WAIT_MS, "the controller to stop");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "controller start: a relay added to the table is dialled without a restart, and dropped",
  ...opts,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const relayDir = `${dir}/relay`;
    const st = await openState(`${dir}/state`, { create: true });
    const serial = await writeRelayMaterial(st.pki.cas, relayDir);
    st.close();
    const relayLogs: string[] = [];
    const relay = await runTestRelay(relayDir, relayLogs);
    const cfg = resolveConfig(
      { state: `${dir}/state`, "ui-listen": "127.0.0.1:0", "relay-listen": "off" },
      () => undefined,
    );
    const ctl = await within(
      startController(cfg, { logSink: () => {}, relayPollMs: 50 }),
      WAIT_MS,
      "the controller to start",
    );
    try {
      assert.equal(ctl.relays.tunnels.length, 0, "no relay configured or onboarded yet");
      // What `cox relays add` records, written by another handle on the database.
      const other = await openState(`${dir}/state`);
      const relays = new Relays(new Service(other.db));
      const row = relays.certified(ACTOR, "127.0.0.1", serial);
      new Service(other.db).mutate(
        { actor: ACTOR, action: "relay.update", target: { type: "relay", id: row.id } },
        (tx) => tx.update({ tunnel_port: relay.ports.tunnel }),
      );
      await until(
        () => relayLogs.some((l) => l.includes("controller tunnel up")),
        WAIT_MS,
        "the controller to dial the new relay",
      );
      assert.equal(ctl.relays.tunnels.length, 1);

      new Service(other.db).mutate(
        { actor: ACTOR, action: "relay.remove", target: { type: "relay", id: row.id } },
        (tx) => tx.remove(),
      );
      other.close();
      await until(
        () => ctl.relays.tunnels.length === 0,
        WAIT_MS,
        "the controller to drop the removed relay's tunnel",
      );
      await until(
        () => relayLogs.some((l) => l.includes("controller tunnel down")),
        WAIT_MS,
        "the relay to see the tunnel closed",
      );
    } finally {
      await within(ctl.shutdown(), WAIT_MS, "the controller to stop");
      await within(relay.close(), WAIT_MS, "the relay to close");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
