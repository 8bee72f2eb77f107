/**
 * The pieces behind the node page's live state: peer counters read from
 * ListPeers (Timestamp objects or RFC 3339, counters as strings, garbage
 * read as 0 without failing the observation), the per-node sample ring and
 * the node bound of ControllerFleetView (a real Reconciler over in-memory
 * simulated nodes), and the page's traffic steps and handshake ages.
 */
import assert from "node:assert/strict";
import { ControllerFleetView } from "../../controller/fleet_view.ts";
import { parseAwgPeers } from "../../controller/reconcile/observed.ts";
import { Reconciler } from "../../controller/reconcile/reconciler.ts";
import { ago, trafficSteps } from "../../ui/lib/traffic.ts";
import { addNode, addPeer, controllerFixture } from "../support/reconcile_fixture.ts";
import { InMemorySimCaller, simIp, simKey } from "../support/sim_nodes.ts";

Deno.test("observed peers: counters and handshake read tolerantly; absent stays absent", () => {
  const peers = parseAwgPeers({
    peers: [
      {
        peer: { public_key: "A", allowed_ips: [] },
        last_handshake: { seconds: "1800000000", nanos: 500_000_000 },
        rx_bytes: "12345678901",
        tx_bytes: 7,
      },
      { peer: { public_key: "B" }, last_handshake: "2027-01-01T00:00:00Z", rx_bytes: "x" },
      { peer: { public_key: "C" }, last_handshake: null, rx_bytes: "99999999999999999999" },
      { peer: { public_key: "D" } },
    ],
  });
  assert.deepEqual(peers.get("A")?.traffic, {
    lastHandshake: 1800000000_500,
    rxBytes: 12345678901,
    txBytes: 7,
  });
  assert.deepEqual(peers.get("B")?.traffic, {
    lastHandshake: Date.parse("2027-01-01T00:00:00Z"),
    rxBytes: 0,
    txBytes: 0,
  });
  assert.deepEqual(peers.get("C")?.traffic, { lastHandshake: null, rxBytes: 0, txBytes: 0 });
  assert.equal(peers.get("D")?.traffic, undefined, "no counters on the wire: none invented");
});

Deno.test("fleet view: one sample per observation, bounded per node and in nodes", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "pharos-fleet-view-unit-" });
  const f = await controllerFixture(tmp);
  try {
    const ids = ["n-0", "n-1", "n-2"].map((name) => addNode(f, name));
    for (const [i, id] of ids.entries()) {
      await addPeer(f, id, { publicKey: simKey(i, 0), allowedIps: [simIp(i, 0)] });
    }
    const caller = new InMemorySimCaller(ids, 1);
    const rec = new Reconciler({
      service: f.service,
      caller,
      sealer: f.keystore,
      intervalMs: 3_600_000,
      followAuditMs: 0,
    });
    // No fleet driver here: health is "unknown", the rest comes from reconcile.
    const view = new ControllerFleetView(f.db, { status: () => undefined }, rec, {
      samplesPerNode: 2,
      maxNodes: 2,
    });
    try {
      assert.equal(view.observed(ids[0]), null);
      rec.start();
      await rec.idle();
      for (let k = 1; k <= 3; k++) {
        caller.nodes[0].traffic.set(simKey(0, 0), { rx: k, tx: 10 * k, handshake: 0 });
        rec.nudge([ids[0]]);
        await rec.idle();
      }
      const o = view.observed(ids[0])!;
      assert.equal(o.health, "unknown");
      assert.equal(o.agent_version, "sim");
      assert.deepEqual(o.samples.map((s) => [s.rx, s.tx]), [[2, 20], [3, 30]]);
      assert.deepEqual(o.peers, [{
        public_key: simKey(0, 0),
        last_handshake: null,
        rx_bytes: 3,
        tx_bytes: 30,
      }]);
      // Three nodes observed, two rings kept: the longest unobserved went.
      const kept = ids.filter((id) => view.observed(id)!.samples.length > 0);
      assert.equal(kept.length, 2);
      assert.ok(kept.includes(ids[0]), "the node observed last is kept");
      view.close();
      rec.nudge([ids[0]]);
      await rec.idle();
      assert.equal(view.observed(ids[0])!.samples.at(-1)!.rx, 3, "closed: no more samples");
      assert.equal(view.observed(ids[0])!.samples.length, 2);
    } finally {
      view.close();
      await rec.stop();
    }
  } finally {
    f.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("node page traffic: steps between samples (a counter reset counts from zero), ages", () => {
  const t = (s: number) => new Date(Date.UTC(2030, 0, 1, 0, 0, s)).toISOString();
  assert.deepEqual(
    trafficSteps([{ t: t(0), rx: 100, tx: 10 }, { t: t(30), rx: 400, tx: 70 }, {
      t: t(60),
      rx: 50,
      tx: "90",
    }]),
    [{ seconds: 30, rx: 300, tx: 60 }, { seconds: 30, rx: 50, tx: 20 }],
  );
  assert.deepEqual(trafficSteps([{ t: t(0), rx: 1, tx: 1 }]), []);
  const now = Date.UTC(2030, 0, 1, 12);
  assert.equal(ago(new Date(now - 42_000).toISOString(), now), "42 s ago");
  assert.equal(ago(new Date(now - 5 * 60_000).toISOString(), now), "5 min ago");
  assert.equal(ago(new Date(now - 3 * 3600_000).toISOString(), now), "3 h ago");
  assert.equal(ago(null, now), "never");
  assert.equal(ago("not a time", now), "never");
});
