/**
 * Observed node state on the change feed: simulated nodes (real gRPC
 * NodeControl over mTLS) observed by the real fleet driver and reconcile
 * loop, the ControllerFleetView over them and the admin API's feed. A
 * change in a node's handshakes or rx/tx yields an `observed` event naming
 * that node (and not an unchanged one); an observation that changes
 * nothing yields none; a burst of changes is coalesced — one call per
 * interval whatever the number of changes.
 */
import assert from "node:assert/strict";
import { createApp } from "../../controller/api/app.ts";
import type { FeedEvent } from "../../controller/api/feed.ts";
import { ControllerFleetView } from "../../controller/fleet_view.ts";
import { createLogger } from "../../core/log.ts";
import { fleetViewFixture } from "../support/fleet_view_fixture.ts";
import { simKey } from "../support/sim_nodes.ts";
import { until } from "../support/wait.ts";

const WAIT_MS = 30_000;

type Observed = { node_ids: string[]; count: number };

Deno.test({
  name: "feed observations: a changed observation publishes one coalesced `observed` event",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const fx = await fleetViewFixture(2);
    const app = createApp({
      state: fx.state,
      fleetView: fx.view,
      log: createLogger("feed-observations-test", { level: "error" }),
    });
    // The same observations through a view whose interval outlasts the test: bursts collapse.
    const slow = new ControllerFleetView(fx.state.db, fx.driver, fx.reconciler, {
      changeIntervalMs: 3_600_000,
    });
    const slowCalls: string[][] = [];
    slow.onChange((ids) => slowCalls.push(ids));
    const events: FeedEvent[] = [];
    const sub = app.feed.subscribe((e) => events.push(e));
    const observed = () => events.filter((e) => e.type === "observed");
    try {
      const [a, b] = fx.nodes;
      const handshake = Math.floor(Date.now() / 1000) - 30;
      a.sim.nodes[0].traffic.set(simKey(0, 0), { rx: 1000, tx: 500, handshake });
      await fx.observe();
      // First observation of both nodes: both change from "not observed" (in one batch, or
      // in two when the second came after the first batch went out).
      const named = (id: string) =>
        observed().some((e) => (e.data as Observed).node_ids.includes(id));
      await until(() => named(a.id) && named(b.id), WAIT_MS, "observed events naming both nodes");
      // The slow view told its first change at once; whatever came after waits its interval.
      assert.equal(slowCalls.length, 1);
      assert.ok(slowCalls[0].every((id) => id === a.id || id === b.id));

      // Only node a's traffic changes: the next event names a, not b.
      const seen = observed().length;
      a.sim.nodes[0].traffic.set(simKey(0, 0), { rx: 9000, tx: 4000, handshake: handshake + 20 });
      await fx.observe();
      await until(() => observed().length > seen, WAIT_MS, "an event for node a's new traffic");
      const next = observed()[seen].data as Observed;
      assert.deepEqual(next, { node_ids: [a.id], count: 1 });
      // The API shows what the event announced.
      const view = fx.view.observed(a.id)!;
      assert.equal(view.peers.find((p) => p.public_key === simKey(0, 0))?.rx_bytes, 9000);

      // A burst of 20 changes of node a: the slow view (interval not yet over) tells none
      // of them, the 1 s view at most one per second it took (plus the one pending).
      const before = observed().length;
      const started = performance.now();
      for (let i = 1; i <= 20; i++) {
        a.sim.nodes[0].traffic.set(simKey(0, 0), { rx: 9000 + i, tx: 4000 + i, handshake });
        await fx.observe([a.id]);
      }
      const seconds = (performance.now() - started) / 1000;
      await until(
        () => fx.view.observed(a.id)?.peers.some((p) => p.rx_bytes === 9020) === true,
        WAIT_MS,
        "the last change observed",
      );
      await until(
        () => observed().length > before,
        WAIT_MS,
        "the burst's event",
      );
      const burst = observed().length - before;
      assert.ok(burst <= Math.ceil(seconds) + 2, `${burst} events for 20 changes in ${seconds} s`);
      assert.ok(observed().slice(before).every((e) => (e.data as Observed).count === 1));
      assert.equal(slowCalls.length, 1, "nothing more within the slow view's interval");

      // Observations that change nothing add nothing: b observed again (unchanged), then a
      // changed — the next event names a alone (b would be pending in the same batch).
      const settled = observed().length;
      await fx.observe([b.id]);
      a.sim.nodes[0].traffic.set(simKey(0, 0), { rx: 20_000, tx: 8000, handshake });
      await fx.observe([a.id]);
      await until(() => observed().length > settled, WAIT_MS, "the event after the quiet pass");
      assert.deepEqual(observed()[settled].data, { node_ids: [a.id], count: 1 });
    } finally {
      sub.close();
      slow.close();
      app.close();
      await fx.close();
    }
  },
});
