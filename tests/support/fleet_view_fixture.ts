/**
 * A controller's live view of its nodes without root: a real controller
 * state (database, CA), simulated nodes (real gRPC NodeControl servers over
 * mTLS, sim_nodes.ts) with certificates from that state's Fleet CA and rows
 * onboarded in its node table, the real fleet driver and reconcile loop over
 * them, and the FleetView built on both — as controller/serve.ts wires it.
 */
import { startFleetDriver } from "../../controller/fleet/driver.ts";
import type { FleetDriver } from "../../controller/fleet/driver.ts";
import { ControllerFleetView, type FleetViewOptions } from "../../controller/fleet_view.ts";
import { Reconciler } from "../../controller/reconcile/reconciler.ts";
import { Service } from "../../controller/service/service.ts";
import type { ControllerState } from "../../controller/state.ts";
import { createLogger } from "../../core/log.ts";
import { controllerState, registerNode, stateFleet } from "./fleet.ts";
import { addPeer, type ControllerFixture } from "./reconcile_fixture.ts";
import { type SimFleet, simIp, simKey, startSimFleet } from "./sim_nodes.ts";

export interface ViewedNode {
  id: string;
  name: string;
  sim: SimFleet;
}

export interface FleetViewFixture {
  state: ControllerState;
  driver: FleetDriver;
  reconciler: Reconciler;
  view: ControllerFleetView;
  nodes: ViewedNode[];
  /** Runs a reconcile pass on these nodes now (one observation each) and waits for it. */
  observe(ids?: string[]): Promise<void>;
  close(): Promise<void>;
}

/** `count` simulated nodes with two desired (and present) peers each. */
export async function fleetViewFixture(
  count: number,
  opts: FleetViewOptions = {},
): Promise<FleetViewFixture> {
  const tmp = await Deno.makeTempDir({ prefix: "pharos-fleet-view-" });
  const state = await controllerState(tmp);
  const pki = await stateFleet(state);
  const service = new Service(state.db);
  const f = { service, keystore: state.keystore } as unknown as ControllerFixture;
  const nodes: ViewedNode[] = [];
  const cleanup: (() => Promise<void>)[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const leaf = await pki.fleet.issue({ kind: "node", host: "localhost" });
      // Each simulated node is node 0 of its own fleet: peers simKey(0, 0..1).
      const sim = await startSimFleet({
        count: 1,
        peersPerNode: 2,
        chainPem: leaf.chainPem,
        keyPem: leaf.keyPem,
        rootPem: pki.fleet.rootPem,
      });
      cleanup.push(() => sim.close());
      const name = `view-${i}`;
      const id = registerNode(state, {
        name,
        host: "127.0.0.1",
        port: sim.ports[0],
        cert: leaf.cert,
      });
      for (let j = 0; j < 2; j++) {
        await addPeer(f, id, { publicKey: simKey(0, j), allowedIps: [simIp(0, j)] });
      }
      nodes.push({ id, name, sim });
    }
    const log = createLogger("fleet-view-test", { level: "error" });
    const driver = await startFleetDriver(state, {
      log,
      pollIntervalMs: 500,
      pollTimeoutMs: 5_000,
    });
    cleanup.push(() => driver.stop());
    const reconciler = new Reconciler({
      service,
      caller: driver,
      sealer: state.keystore,
      log,
      intervalMs: 3_600_000,
      followAuditMs: 0,
    });
    const view = new ControllerFleetView(state.db, driver, reconciler, opts);
    return {
      state,
      driver,
      reconciler,
      view,
      nodes,
      async observe(ids = nodes.map((n) => n.id)) {
        if (!reconciler.stats().running) reconciler.start();
        else reconciler.nudge(ids);
        await reconciler.idle();
      },
      async close() {
        view.close();
        await reconciler.stop();
        for (const c of cleanup.reverse()) await c().catch(() => {});
        state.close();
        await Deno.remove(tmp, { recursive: true }).catch(() => {});
      },
    };
  } catch (e) {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    state.close();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}
