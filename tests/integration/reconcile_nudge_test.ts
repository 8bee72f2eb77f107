/**
 * Reconcile against simulated nodes (real gRPC NodeControl servers with
 * mTLS, tests/support/sim_nodes.ts; no root needed):
 * - a controller start reconciles the whole fleet (every node gets its
 *   network policy in the first sweep), a second controller run too;
 * - `nudge` pushes a change to the nodes it names at once, without a sweep,
 *   and so does a change only written to the database (the audit log is
 *   followed);
 * - paths: the inner link on the entry, the edge peer on the exit and the
 *   entry's transits; a link removed behind the controller's back is
 *   re-created at the next sweep; a removed path's link is taken down.
 */
import assert from "node:assert/strict";
import { Reconciler } from "../../controller/reconcile/reconciler.ts";
import { agentPki, eventually } from "../support/agent_harness.ts";
import { DirectNodeCaller } from "../support/direct_node_caller.ts";
import {
  ACTOR,
  addNode,
  addPeer,
  type ControllerFixture,
  controllerFixture,
  healAudit,
  healsOf,
} from "../support/reconcile_fixture.ts";
import { type SimFleet, simIp, simKey, startSimFleet } from "../support/sim_nodes.ts";

const WAIT_MS = 60_000;

interface Setup {
  f: ControllerFixture;
  sim: SimFleet;
  caller: DirectNodeCaller;
  ids: string[];
  close(): Promise<void>;
}

/** `count` simulated nodes with 2 peers each, and the same desired state in a new database. */
async function setup(count: number): Promise<Setup> {
  const tmp = await Deno.makeTempDir({ prefix: "pharos-reconcile-test-" });
  const pki = await agentPki();
  const leaf = await pki.fleet.issue({ kind: "node", host: "localhost" });
  const sim = await startSimFleet({
    count,
    peersPerNode: 2,
    chainPem: leaf.chainPem,
    keyPem: leaf.keyPem,
    rootPem: pki.fleet.rootPem,
  });
  const f = await controllerFixture(tmp);
  const caller = new DirectNodeCaller({
    rootPem: pki.fleet.rootPem,
    chainPem: pki.controller.chainPem,
    keyPem: pki.controller.keyPem,
  });
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = addNode(f, `sim-${i}`, `198.51.100.${i + 1}`);
    ids.push(id);
    caller.set(id, { target: `127.0.0.1:${sim.ports[i]}`, serverName: "localhost" });
    for (let j = 0; j < 2; j++) {
      await addPeer(f, id, { publicKey: simKey(i, j), allowedIps: [simIp(i, j)] });
    }
  }
  // The simulated nodes report revision 1: the controller's is 1 too (nothing to push).
  return {
    f,
    sim,
    caller,
    ids,
    async close() {
      caller.close();
      await sim.close();
      f.close();
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    },
  };
}

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });

test("reconcile: a controller start reconciles the whole fleet; nudge pushes at once", async () => {
  const s = await setup(3);
  const make = () =>
    new Reconciler({
      service: s.f.service,
      caller: s.caller,
      sealer: s.f.keystore,
      intervalMs: 3_600_000,
    });
  let rec = make();
  try {
    rec.start();
    await rec.idle();
    assert.equal(rec.stats().sweeps, 1);
    for (const n of s.sim.nodes) {
      assert.deepEqual(n.policy, {
        forwarding: true,
        masquerade: true,
        isolation: true,
        transits: [],
        endpoint_ranges: [],
      });
    }
    assert.equal(rec.stats().lastSweep?.heals, 0, "a fleet in step needs no heal");
    assert.deepEqual(
      s.ids.map((id) => rec.nodeKey(id)),
      [0, 1, 2].map((i) => simKey(i, 65535)),
      "the keys nodes report, for profiles",
    );
    assert.deepEqual(s.ids.map((id) => healsOf(s.f.db, id).length), [0, 0, 0]);

    // A new device peer on node 1 only: nudged, pushed without waiting for a sweep.
    const extra = simKey(1, 9);
    await addPeer(s.f, s.ids[1], {
      publicKey: extra,
      allowedIps: ["10.70.0.9/32"],
      psk: btoa("k".repeat(32)),
    });
    rec.nudge([s.ids[1]]);
    assert.ok(await eventually(() => s.sim.nodes[1].peers.has(extra), WAIT_MS), "pushed");
    await rec.idle();
    assert.equal(rec.stats().sweeps, 1, "no sweep ran: the nudge did it");
    assert.equal(rec.stats().lastPass?.kind, "nudge");
    assert.equal(rec.stats().lastPass?.nodes, 1);
    assert.equal(s.sim.nodes[0].calls.get("AddPeer") ?? 0, 0, "other nodes untouched");
    const heal = healsOf(s.f.db, s.ids[1]).at(-1)!;
    assert.deepEqual(heal.actions.map((a) => [a.kind, a.public_key]), [["add-peer", extra]]);
    assert.ok(healAudit(s.f.db, heal.id));

    // A policy change: the node's revision goes up, so the whole set is pushed, and the policy.
    s.f.nodes.setPolicy(ACTOR, s.ids[2], { isolation: false });
    rec.nudge([s.ids[2]]);
    assert.ok(await eventually(() => s.sim.nodes[2].policy?.isolation === false, WAIT_MS));
    await rec.idle();
    assert.equal(s.sim.nodes[2].revision, 2);

    // No nudge at all: the change is seen in the audit log (any writer, e.g. a cox command).
    const quiet = simKey(0, 8);
    await addPeer(s.f, s.ids[0], { publicKey: quiet, allowedIps: ["10.70.0.8/32"] });
    assert.ok(await eventually(() => s.sim.nodes[0].peers.has(quiet), WAIT_MS), "followed");
    await rec.idle();
    assert.equal(rec.stats().sweeps, 1, "still no sweep");

    // A new controller run: the whole fleet again (no memory of what was sent).
    await rec.stop();
    const before = s.sim.nodes.map((n) => n.calls.get("SetNetworkConfig") ?? 0);
    rec = make();
    rec.start();
    await rec.idle();
    assert.deepEqual(
      s.sim.nodes.map((n, i) => (n.calls.get("SetNetworkConfig") ?? 0) - before[i]),
      [1, 1, 1],
    );
  } finally {
    await rec.stop();
    await s.close();
  }
});

test("reconcile: paths — inner link, edge peer and transits; a removed link is re-created, a removed path taken down", async () => {
  const s = await setup(2);
  const [entry, exit] = s.ids;
  const rec = new Reconciler({
    service: s.f.service,
    caller: s.caller,
    sealer: s.f.keystore,
    intervalMs: 500,
  });
  try {
    s.f.service.mutate(
      { actor: ACTOR, action: "path.create", target: { type: "path", id: "p1" }, expectVersion: 0 },
      (tx) =>
        tx.insert({
          entry_node_id: entry,
          exit_node_id: exit,
          status: "active",
          created_at: tx.now,
        }),
    );
    const device = simKey(0, 40);
    await addPeer(s.f, entry, { publicKey: device, allowedIps: ["10.8.0.2/32"], pathId: "p1" });
    rec.start();
    const [sEntry, sExit] = s.sim.nodes;
    const entryKey = simKey(0, 65535); // what simulated node 0 reports as its WireGuard key
    assert.ok(
      await eventually(
        () =>
          sEntry.links.get("awg1") === 1 && sExit.peers.get(entryKey)?.[0] === "10.8.0.2/32" &&
          sEntry.peers.has(device),
        WAIT_MS,
      ),
      "link on the entry, edge peer on the exit",
    );
    assert.ok(
      await eventually(() => (sEntry.policy?.transits as unknown[])?.length === 1, WAIT_MS),
    );
    assert.deepEqual(sEntry.policy, {
      forwarding: true,
      masquerade: true,
      isolation: true,
      transits: [{ device_cidr: "10.8.0.2/32", inner_interface: "awg1", mark: 7100, table: 7100 }],
      endpoint_ranges: [],
    });
    const link = s.f.db.prepare(
      "SELECT link_index, revision FROM node_links WHERE entry_node_id = ?",
    )
      .get(entry) as { link_index: number; revision: number };
    assert.deepEqual({ ...link }, { link_index: 0, revision: 1 });

    // The link removed on the node behind the controller's back: configured again.
    const p0 = rec.stats().passes;
    sEntry.links.delete("awg1");
    assert.ok(await eventually(() => sEntry.links.get("awg1") === 1, WAIT_MS));
    const heal = healsOf(s.f.db, entry).find((h) =>
      h.sweep > p0 && h.actions.some((a) => a.kind === "configure-link" && a.interface === "awg1")
    );
    assert.ok(heal && heal.sweep <= p0 + 2, "re-created within two sweeps, recorded");

    // The path removed: the link comes down, the edge peer and the transit go.
    s.f.service.mutate(
      { actor: ACTOR, action: "path.remove", target: { type: "path", id: "p1" } },
      (tx) => tx.remove(),
    );
    rec.nudge([entry, exit]);
    assert.ok(
      await eventually(
        () =>
          !sEntry.links.has("awg1") && !sExit.peers.has(entryKey) &&
          (sEntry.policy?.transits as unknown[])?.length === 0,
        WAIT_MS,
      ),
      "link down, edge peer removed, transit gone",
    );
    assert.ok(
      await eventually(
        () => s.f.db.prepare("SELECT 1 FROM node_links").all().length === 0,
        WAIT_MS,
      ),
    );
  } finally {
    await rec.stop();
    await s.close();
  }
});

test("reconcile: a node's endpoints reach it at once as NetworkConfig.endpoint_ranges; unconfirmed ones are named", async () => {
  const s = await setup(2);
  const rec = new Reconciler({
    service: s.f.service,
    caller: s.caller,
    sealer: s.f.keystore,
    intervalMs: 3_600_000,
  });
  try {
    rec.start();
    await rec.idle();
    const [n0, n1] = s.sim.nodes;
    const quietCalls = n1.calls.get("SetNetworkConfig");
    // Written like `cox nodes endpoints` does; no nudge: the audit log is followed.
    s.f.nodes.setEndpoints(ACTOR, s.ids[0], [
      "198.51.100.1:443",
      "198.51.100.1:2000-60000",
      "[2001:DB8::7]:40000-40100",
    ]);
    const want = [
      { ip: "198.51.100.1", port_min: 443, port_max: 443 },
      { ip: "198.51.100.1", port_min: 2000, port_max: 60000 },
      { ip: "2001:db8::7", port_min: 40000, port_max: 40100 },
    ];
    assert.ok(
      await eventually(
        () => JSON.stringify(n0.policy?.endpoint_ranges) === JSON.stringify(want),
        WAIT_MS,
      ),
      `pushed: ${JSON.stringify(n0.policy)}`,
    );
    await rec.idle();
    assert.equal(rec.stats().sweeps, 1, "no sweep: the change was pushed at once");
    assert.equal(n1.calls.get("SetNetworkConfig"), quietCalls, "the other node untouched");
    // The simulated node answers like the original one (no ranges confirmed): the heal says so.
    const heal = healsOf(s.f.db, s.ids[0]).find((h) =>
      h.actions.some((a) => a.kind === "set-network")
    );
    assert.ok(heal, "a heal row for the pushed policy");
    const step = heal.actions.find((a) => a.kind === "set-network")!;
    assert.equal(step.reason, "policy changed");
    assert.equal(step.endpoint_ranges, 3);
    assert.deepEqual(step.unconfirmed_ranges, [
      "198.51.100.1:443",
      "198.51.100.1:2000-60000",
      "[2001:db8::7]:40000-40100",
    ]);
    assert.ok(healAudit(s.f.db, heal.id));

    // Cleared: an empty list is pushed (the agent falls back to its own flags).
    s.f.nodes.setEndpoints(ACTOR, s.ids[0], []);
    assert.ok(
      await eventually(
        () => (n0.policy?.endpoint_ranges as unknown[] | undefined)?.length === 0,
        WAIT_MS,
      ),
    );
  } finally {
    await rec.stop();
    await s.close();
  }
});
