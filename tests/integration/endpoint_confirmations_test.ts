// deno-lint-ignore-file no-explicit-any
/**
 * Profiles advertise only the endpoint ranges nodes confirmed (CONTRACTS.md
 * §5.7), with the real reconcile loop and accounts service against
 * simulated nodes (real gRPC NodeControl servers with mTLS,
 * tests/support/sim_nodes.ts): each SetNetworkConfig answer is recorded as
 * the node's confirmation and every profile is resealed in the background,
 * once for all the nodes that confirmed in one sweep. A node that confirms
 * part of its pool advertises that part; an original node (no ranges in
 * its answer) and a node not reached yet advertise none, and clients dial
 * the host at 443. A start after a reseal cut short reseals again.
 */
import assert from "node:assert/strict";
import { Reconciler } from "../../controller/reconcile/reconciler.ts";
import { recordConfirmedRanges } from "../../controller/reconcile/writes.ts";
import { RESEALED_THROUGH_KEY } from "../../controller/reconcile/endpoint_confirmations.ts";
import { Settings } from "../../controller/service/settings.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { type AccountsFixture, accountsFixture } from "../support/accounts_fixture.ts";
import {
  advertisedEndpoints,
  enrollDevice,
  type EnrolledDevice,
} from "../support/advertised_endpoints.ts";
import { agentPki, eventually } from "../support/agent_harness.ts";
import { DirectNodeCaller } from "../support/direct_node_caller.ts";
import { type SimFleet, startSimFleet } from "../support/sim_nodes.ts";
import { until, WAIT_MS, within } from "../support/wait.ts";

const ACTOR = "cli:test";

interface Setup {
  f: AccountsFixture;
  sim: SimFleet;
  caller: DirectNodeCaller;
  ids: string[];
  device: EnrolledDevice;
  close(): Promise<void>;
}

/**
 * `count` simulated nodes and one enrolled device; the first `onboarded`
 * nodes are onboarded (reconcile drives them), the others not yet.
 */
async function setup(count: number, onboarded = count): Promise<Setup> {
  const pki = await agentPki();
  const leaf = await pki.fleet.issue({ kind: "node", host: "localhost" });
  const sim = await startSimFleet({
    count,
    peersPerNode: 0,
    chainPem: leaf.chainPem,
    keyPem: leaf.keyPem,
    rootPem: pki.fleet.rootPem,
  });
  const f = await accountsFixture();
  const caller = new DirectNodeCaller({
    rootPem: pki.fleet.rootPem,
    chainPem: pki.controller.chainPem,
    keyPem: pki.controller.keyPem,
  });
  const service = new Service(f.state.db);
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = f.addNode(`sim-${i}`);
    ids.push(id);
    if (i >= onboarded) continue;
    service.mutate(
      { actor: ACTOR, action: "node.onboard", target: { type: "node", id } },
      (tx) => tx.update({ status: "active", onboarding: "done", cert_pem: "(test)" }),
    );
    caller.set(id, { target: `127.0.0.1:${sim.ports[i]}`, serverName: "localhost" });
  }
  const device = await enrollDevice(f);
  return {
    f,
    sim,
    caller,
    ids,
    device,
    async close() {
      caller.close();
      await sim.close();
      await f.close();
    },
  };
}

/** A reconciler resealing through the accounts service, counting its reseals. */
function reconciler(s: Setup, counts: { reseals: number }): Reconciler {
  return new Reconciler({
    service: new Service(s.f.state.db),
    caller: s.caller,
    sealer: s.f.state.keystore,
    intervalMs: 3_600_000,
    followAuditMs: 100,
    resealProfiles: async (signal) => {
      counts.reseals++;
      await s.f.accounts.reprovisionAll(signal);
    },
  });
}

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });

test("endpoint confirmations: profiles advertise only confirmed ranges; one reseal per sweep; original nodes none", async () => {
  const s = await setup(3);
  const counts = { reseals: 0 };
  let rec: Reconciler | null = null;
  try {
    const nodes = new Nodes(new Service(s.f.state.db));
    const [full, part, orig] = s.sim.nodes;
    assert.equal(orig.confirms, undefined, "answers as the original Go node: no ranges");
    full.confirms = (pushed) => pushed; // our agent: everything pushed
    part.confirms = (pushed) => // serves a part of its range, and one range of its own
    [{ ...pushed[0], port_min: 50000 }, { ip: "192.0.2.99", port_min: 3000, port_max: 3010 }];
    nodes.setEndpoints(ACTOR, s.ids[0], ["198.51.100.1:443", "[2001:DB8::1]:40000-40100"]);
    nodes.setEndpoints(ACTOR, s.ids[1], ["198.51.100.2:2000-60000", "198.51.100.22:443"]);
    nodes.setEndpoints(ACTOR, s.ids[2], ["198.51.100.3:2000-3000"]);
    // Resealed as `cox nodes endpoints` does: nothing confirmed yet, so each node's host at 443.
    await s.f.accounts.reprovisionAll();
    const before = await advertisedEndpoints(s.f, s.device);
    for (const id of s.ids) {
      assert.deepEqual(before.nodes.get(id), [`${nodes.require(id).host}:443`], "not confirmed");
    }

    rec = reconciler(s, counts);
    rec.start();
    await within(rec.idle(), WAIT_MS, "the first sweep");
    await within(rec.resealIdle(), WAIT_MS, "the reseal");
    assert.equal(counts.reseals, 1, "three nodes confirmed in one sweep: one reseal");
    const after = await advertisedEndpoints(s.f, s.device);
    assert.ok(after.revision > before.revision);
    assert.deepEqual(after.nodes.get(s.ids[0]), ["198.51.100.1:443", "[2001:db8::1]:40000-40100"]);
    assert.deepEqual(
      after.nodes.get(s.ids[1]),
      ["198.51.100.2:50000-60000"],
      "the confirmed part only; 198.51.100.22 unconfirmed, 192.0.2.99 not in the pool",
    );
    assert.deepEqual(
      after.nodes.get(s.ids[2]),
      [`${nodes.require(s.ids[2]).host}:443`],
      "an original node confirms nothing: its host at 443",
    );
    const versions = s.ids.map((id) => nodes.require(id).version);

    // Nothing new confirmed: a sweep reseals nothing.
    await rec.sweep();
    await within(rec.resealIdle(), WAIT_MS, "no reseal");
    assert.equal(counts.reseals, 1);

    // A pool changed behind the API (as `cox nodes endpoints` without a reseal): reconcile
    // follows the audit log, pushes, the node confirms and the profiles follow.
    nodes.setEndpoints(ACTOR, s.ids[0], ["198.51.100.1:5000-5100"]);
    let seen: string[] | undefined;
    assert.ok(
      await eventually(async () => {
        seen = (await advertisedEndpoints(s.f, s.device)).nodes.get(s.ids[0]);
        return JSON.stringify(seen) === JSON.stringify(["198.51.100.1:5000-5100"]);
      }, WAIT_MS),
      `profile: ${JSON.stringify(seen)}`,
    );
    await within(rec.resealIdle(), WAIT_MS, "the reseal");
    assert.equal(counts.reseals, 2);
    // Confirmations never move a node's version (an admin's edit would 409).
    assert.equal(nodes.require(s.ids[1]).version, versions[1]);
    assert.equal(nodes.require(s.ids[2]).version, versions[2]);
    const recorded = s.f.state.db.prepare(
      "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'node_endpoint_confirmation.record'",
    ).get() as { n: number };
    assert.equal(recorded.n, 4, "three first answers and one change, each audited");
  } finally {
    await rec?.stop();
    await s.close();
  }
});

test("endpoint confirmations: a start after a reseal cut short reseals; a node not reached advertises none", async () => {
  const s = await setup(2, 1);
  const counts = { reseals: 0 };
  let rec: Reconciler | null = null;
  try {
    const nodes = new Nodes(new Service(s.f.state.db));
    const [a] = s.sim.nodes;
    a.confirms = (pushed) => pushed;
    nodes.setEndpoints(ACTOR, s.ids[0], ["198.51.100.1:2000-3000"]);
    nodes.setEndpoints(ACTOR, s.ids[1], ["198.51.100.2:2000-3000"]);
    // Node 1 is not onboarded yet: never reached, it confirms nothing.
    rec = reconciler(s, counts);
    rec.start();
    await within(rec.idle(), WAIT_MS, "the first sweep");
    await within(rec.resealIdle(), WAIT_MS, "the reseal");
    assert.equal(counts.reseals, 1);
    let prof = await advertisedEndpoints(s.f, s.device);
    assert.deepEqual(prof.nodes.get(s.ids[0]), ["198.51.100.1:2000-3000"]);
    assert.deepEqual(prof.nodes.get(s.ids[1]), [`${nodes.require(s.ids[1]).host}:443`]);
    await rec.stop();
    rec = null;

    // The controller stopped after recording a narrower confirmation, before resealing.
    a.confirms = () => [{ ip: "198.51.100.1", port_min: 2500, port_max: 3000 }];
    const sealed = (s.f.state.db.prepare("SELECT MAX(updated_at) AS t FROM sealed_profiles")
      .get() as { t: string }).t;
    await until(() => new Date().toISOString() > sealed, WAIT_MS, "the clock to move on");
    recordConfirmedRanges(new Service(s.f.state.db), "system:reconcile", s.ids[0], [
      { ip: "198.51.100.1", portMin: 2500, portMax: 3000 },
    ]);
    const next = { reseals: 0 };
    rec = reconciler(s, next);
    rec.start();
    await within(rec.idle(), WAIT_MS, "the first sweep");
    await within(rec.resealIdle(), WAIT_MS, "the reseal");
    assert.equal(next.reseals, 1, "profiles older than a confirmation: resealed at start");
    prof = await advertisedEndpoints(s.f, s.device);
    assert.deepEqual(prof.nodes.get(s.ids[0]), ["198.51.100.1:2500-3000"]);
    // Up to date now: the next start reseals nothing.
    await rec.stop();
    const third = { reseals: 0 };
    rec = reconciler(s, third);
    rec.start();
    await within(rec.idle(), WAIT_MS, "the first sweep");
    await within(rec.resealIdle(), WAIT_MS, "no reseal");
    assert.equal(third.reseals, 0);
  } finally {
    await rec?.stop();
    await s.close();
  }
});

test("endpoint confirmations: stopping the reconciler aborts a running reseal", async () => {
  const s = await setup(1);
  let aborted = false;
  let began = false;
  const rec = new Reconciler({
    service: new Service(s.f.state.db),
    caller: s.caller,
    sealer: s.f.state.keystore,
    intervalMs: 3_600_000,
    followAuditMs: 0,
    resealProfiles: (signal) =>
      new Promise<void>((_, reject) => {
        began = true;
        signal.addEventListener("abort", () => {
          aborted = true;
          reject(signal.reason);
        }, { once: true });
      }),
  });
  try {
    s.sim.nodes[0].confirms = (pushed: any[]) => pushed;
    new Nodes(new Service(s.f.state.db)).setEndpoints(ACTOR, s.ids[0], ["198.51.100.1:443"]);
    rec.start();
    await within(rec.idle(), WAIT_MS, "the first sweep");
    await until(() => began, WAIT_MS, "the reseal to begin");
    await within(rec.stop(), WAIT_MS, "the stop");
    assert.equal(aborted, true, "the reseal was aborted, and stop() waited for it");
  } finally {
    await rec.stop();
    await s.close();
  }
});

test("endpoint confirmations: a failed reseal is retried while the controller runs, until it succeeds", async () => {
  const s = await setup(1);
  let calls = 0;
  let rec: Reconciler | null = null;
  try {
    s.sim.nodes[0].confirms = (pushed) => pushed;
    new Nodes(new Service(s.f.state.db)).setEndpoints(ACTOR, s.ids[0], ["198.51.100.1:2000-3000"]);
    rec = new Reconciler({
      service: new Service(s.f.state.db),
      caller: s.caller,
      sealer: s.f.state.keystore,
      intervalMs: 3_600_000,
      followAuditMs: 0,
      resealRetryMs: [20, 20],
      resealProfiles: async (signal) => {
        calls++;
        // The first reseal fails as a busy database would; the retry is the real one.
        if (calls === 1) throw new Error("database is locked");
        await s.f.accounts.reprovisionAll(signal);
      },
    });
    rec.start();
    await within(rec.idle(), WAIT_MS, "the first sweep");
    await until(() => calls === 2, WAIT_MS, "the retry");
    await within(rec.resealIdle(), WAIT_MS, "the retried reseal");
    assert.equal(rec.resealRetrying, false, "succeeded: no retry waits");
    const prof = await advertisedEndpoints(s.f, s.device);
    assert.deepEqual(prof.nodes.get(s.ids[0]), ["198.51.100.1:2000-3000"], "resealed by the retry");
    // A sweep with nothing new confirmed does not reseal again.
    await rec.sweep();
    await within(rec.resealIdle(), WAIT_MS, "no reseal");
    assert.equal(calls, 2);
  } finally {
    await rec?.stop();
    await s.close();
  }
});

test("endpoint confirmations: a device no reseal can fix is retried a bounded number of times and does not reseal the fleet at each start", async () => {
  const s = await setup(1);
  let rec: Reconciler | null = null;
  const make = (counts: { reseals: number }) =>
    new Reconciler({
      service: new Service(s.f.state.db),
      caller: s.caller,
      sealer: s.f.state.keystore,
      intervalMs: 3_600_000,
      followAuditMs: 0,
      resealRetryMs: [10, 10],
      resealProfiles: async (signal) => {
        counts.reseals++;
        await s.f.accounts.reprovisionAll(signal);
      },
    });
  try {
    // A second device whose sealing key is a low-order X25519 point: every reseal of it fails.
    await enrollDevice(s.f, "bob@example.com");
    const bob = s.f.state.db.prepare(
      "SELECT d.id FROM devices d JOIN users u ON u.id = d.user_id WHERE u.email = ?",
    ).get("bob@example.com") as { id: string };
    s.f.state.db.prepare("UPDATE devices SET encryption_public_key = ? WHERE id = ?")
      .run(new Uint8Array(32), bob.id);
    s.sim.nodes[0].confirms = (pushed) => pushed;
    new Nodes(new Service(s.f.state.db)).setEndpoints(ACTOR, s.ids[0], ["198.51.100.1:2000-3000"]);

    const first = { reseals: 0 };
    rec = make(first);
    rec.start();
    await within(rec.idle(), WAIT_MS, "the first sweep");
    await until(
      () => first.reseals === 3 && !rec!.resealRetrying,
      WAIT_MS,
      "the reseal and its two retries",
    );
    await within(rec.resealIdle(), WAIT_MS, "the last retry");
    assert.equal(first.reseals, 3, "one reseal and two retries, no more");
    const prof = await advertisedEndpoints(s.f, s.device);
    assert.deepEqual(prof.nodes.get(s.ids[0]), ["198.51.100.1:2000-3000"], "the others resealed");
    await rec.stop();

    // The broken device's profile stays older than the confirmation, yet a start reseals nothing.
    const second = { reseals: 0 };
    rec = make(second);
    rec.start();
    await within(rec.idle(), WAIT_MS, "the first sweep");
    await within(rec.resealIdle(), WAIT_MS, "no reseal");
    assert.equal(second.reseals, 0, "a finished reseal covered the confirmation");
    const older = s.f.state.db.prepare(
      `SELECT COUNT(*) AS n FROM sealed_profiles
         WHERE device_id = ? AND updated_at < (SELECT MAX(updated_at) FROM node_endpoint_confirmations)`,
    ).get(bob.id) as { n: number };
    assert.equal(older.n, 1, "the broken device's profile is older than the confirmation");
    // The record is not a setting an operator sees or edits.
    assert.ok(
      !new Settings(new Service(s.f.state.db)).list().some((x) =>
        String(x.key) === RESEALED_THROUGH_KEY
      ),
    );
  } finally {
    await rec?.stop();
    await s.close();
  }
});
