/**
 * Node churn soak (bounded): three real agents, each in its own namespace,
 * and three simulated nodes (real grpc-js servers in processes of their
 * own; one streams events, two keep their stream silent), restarted over
 * and over — gracefully (SIGTERM) and abruptly (kill -9 of
 * every process of the node) — while the fleet driver holds a WatchEvents
 * stream and a session to each and polls them. Deno's HTTP/2 client can
 * abort the process it runs in when a server goes away under a session
 * (denoland/deno#36788); the driver's gRPC clients live in a worker process
 * for that reason. At the end: this (the controller-side) process is up,
 * every node is back to healthy with no open alert, the controller-side
 * RSS is flat within a set margin, and the worker's crash count is
 * reported (it is what STACK.md records).
 */
import assert from "node:assert/strict";
import { Alerts } from "../../controller/fleet/alerts.ts";
import { type FleetDriver, startFleetDriver } from "../../controller/fleet/driver.ts";
import { FleetError } from "../../controller/fleet/errors.ts";
import { Service } from "../../controller/service/service.ts";
import { agentCapability, eventually, labTest } from "../support/agent_harness.ts";
import {
  closeForwarders,
  controllerState,
  type FleetNode,
  SimNode,
  startFleetNode,
  stateFleet,
} from "../support/fleet.ts";
import { within } from "../support/wait.ts";

const cap = agentCapability("integration fleet churn");
const NODES = 3;
/** Simulated nodes (real grpc-js servers, fleet_sim_node.ts) restarted beside them. */
const SIMULATED = 3;
/**
 * Rounds after the warm-up one; each restarts every node once: one gracefully,
 * the others with kill -9 (rotating). FLEET_CHURN_ROUNDS makes a longer soak.
 */
const ROUNDS = Math.min(Math.max(Number(Deno.env.get("FLEET_CHURN_ROUNDS") ?? 1) || 1, 1), 200);
/** The controller-side RSS may end this much above its warmed-up value. */
const RSS_MARGIN_MB = 40;
const WAIT = 60_000;

async function answers(driver: FleetDriver, id: string): Promise<boolean> {
  return await eventually(
    async () => {
      try {
        await driver.call(id, "GetStatus", {}, { timeoutMs: 3000 });
        return true;
      } catch (e) {
        assert.ok(e instanceof FleetError && e.retryable, `a retryable error, got ${e}`);
        return false;
      }
    },
    WAIT,
    100,
  );
}

async function restart(
  node: FleetNode,
  graceful: boolean,
  lab: Parameters<Parameters<typeof labTest>[2]>[0],
) {
  if (graceful) await within(node.agent.stop(), WAIT, "an agent to stop");
  else await lab.killAll(node.ns); // the node's machine "crashes": agent, forwarder, data plane
  await within(node.agent.start(), WAIT * 2, "an agent to start again");
}

labTest(
  `integration fleet: ${NODES} real agents restarted ${ROUNDS} times each (graceful and kill -9) under open streams; controller up, all healthy, flat RSS`,
  cap.ignore,
  async (lab) => {
    const state = await controllerState(lab.tmp);
    let driver: FleetDriver | undefined;
    const sims: SimNode[] = [];
    try {
      const fleet = await stateFleet(state);
      const [nodes, started] = await Promise.all([
        Promise.all(
          Array.from({ length: NODES }, (_, i) => startFleetNode(lab, state, fleet, `c${i}`)),
        ),
        Promise.all(
          Array.from(
            { length: SIMULATED },
            (_, i) =>
              SimNode.start(state, fleet, `sim-${i}-${lab.id}`, { eventEveryMs: i ? 0 : 300 }),
          ),
        ),
      ]);
      sims.push(...started);
      const ids = [...nodes.map((n) => n.id), ...sims.map((s) => s.id)];
      driver = await startFleetDriver(state, {
        pollIntervalMs: 500,
        pollTimeoutMs: 3000,
        backoffMaxMs: 1000,
      });
      const d = driver;
      const watching = new Set<string>();
      d.subscribe((e) => e.kind === "health" && e.health === "healthy" && watching.add(e.nodeId));
      for (const id of ids) assert.ok(await answers(d, id), "every node answers at first");

      const rssMb = () => Deno.memoryUsage().rss / 1024 / 1024;
      let before = 0;
      let restarts = 0;
      let simRestarts = 0;
      for (let round = 0; round <= ROUNDS; round++) {
        await Promise.all([
          ...nodes.map((n, i) => restart(n, (i + round) % NODES === 0, lab)),
          ...sims.map((s, i) => s.restart((i + round) % 2 === 0)),
        ]);
        restarts += NODES;
        simRestarts += SIMULATED;
        for (const id of ids) assert.ok(await answers(d, id), `node ${id} answers again`);
        // Round 0 warms up (JIT, buffers); its end is the baseline.
        if (round === 0) before = rssMb();
      }
      assert.ok(
        await eventually(
          () => ids.every((id) => d.status(id)?.health === "healthy"),
          WAIT,
        ),
        "every node is healthy at the end",
      );
      const alerts = new Alerts(new Service(state.db));
      assert.ok(
        await eventually(() => alerts.list({ openOnly: true }).length === 0, WAIT),
        "no alert left open",
      );
      const statuses = state.db.prepare("SELECT status FROM nodes").all() as { status: string }[];
      assert.deepEqual(statuses.map((r) => r.status), Array(ids.length).fill("active"));

      let after = rssMb();
      const flat = await eventually(() => (after = rssMb()) <= before + RSS_MARGIN_MB, 20_000, 500);
      const stats = d.workerStats;
      console.error(
        `fleet churn: ${restarts} agent and ${simRestarts} simulated node restarts ` +
          `(${ROUNDS + 1} rounds); ` +
          `controller-side RSS ${before.toFixed(1)} MB → ${after.toFixed(1)} MB; ` +
          `gRPC worker: ${stats.starts} starts, ${stats.crashes} crashes` +
          (stats.lastCrash ? ` (last: ${stats.lastCrash})` : ""),
      );
      assert.ok(flat, `RSS grew from ${before.toFixed(1)} MB to ${after.toFixed(1)} MB`);
      // The controller side never stopped: this process is the controller side, still here,
      // and its driver still drives every node.
      assert.deepEqual(d.nodeIds().sort(), ids.sort());
    } finally {
      await driver?.stop();
      await Promise.all(sims.map((s) => s.stop()));
      closeForwarders();
      state.close();
    }
  },
);
