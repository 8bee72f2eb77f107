/**
 * Fleet driver crash-rate soak (for STACK.md), no root needed:
 *
 *   deno run -A tests/support/fleet_soak.ts [NODES=6] [RESTARTS=120]
 *
 * NODES simulated nodes (fleet_sim_node.ts: real grpc-js servers in their
 * own processes; half send WatchEvents events, half keep their stream
 * silent) are restarted one after another, alternately with SIGTERM (the
 * server's GOAWAY) and kill -9, RESTARTS times in all (bounded), while the
 * driver polls every second. After each restart the soak waits (bounded)
 * until the node answers through the driver. Prints one JSON line: the
 * restarts, how many times the driver's gRPC worker died (Deno's HTTP/2
 * client aborting, denoland/deno#36788) and its last words, whether every
 * node ended healthy, and the controller-side RSS.
 */
import { createLogger } from "../../core/log.ts";
import { startFleetDriver } from "../../controller/fleet/driver.ts";
import { controllerState, SimNode, stateFleet } from "./fleet.ts";

const NODES = Number(Deno.args[0] ?? 6);
const RESTARTS = Number(Deno.args[1] ?? 120);

const tmp = await Deno.makeTempDir({ prefix: "pharos-fleet-soak-" });
const state = await controllerState(tmp);
const fleet = await stateFleet(state);
const sims: SimNode[] = [];
for (let i = 0; i < NODES; i++) {
  sims.push(await SimNode.start(state, fleet, `sim-${i}`, { eventEveryMs: i % 2 ? 0 : 300 }));
}

const driver = await startFleetDriver(state, {
  pollIntervalMs: 1000,
  pollTimeoutMs: 3000,
  backoffMaxMs: 2000,
  log: createLogger("fleet", { level: "error" }),
});
const answers = async (id: string): Promise<boolean> => {
  for (let i = 0; i < 600; i++) {
    try {
      await driver.call(id, "GetStatus", {}, { timeoutMs: 3000 });
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
};
for (const s of sims) await answers(s.id);
const rss0 = Deno.memoryUsage().rss;
const began = Date.now();
let failedToReturn = 0;
for (let r = 0; r < RESTARTS; r++) {
  const s = sims[r % NODES];
  await s.restart(r % 2 === 0);
  if (!await answers(s.id)) failedToReturn++;
}
const allHealthy = await (async () => {
  for (let i = 0; i < 300; i++) {
    if (sims.every((s) => driver.status(s.id)?.health === "healthy")) return true;
    await new Promise((res) => setTimeout(res, 100));
  }
  return false;
})();
const stats = driver.workerStats;
console.log(JSON.stringify({
  nodes: NODES,
  restarts: RESTARTS,
  seconds: Math.round((Date.now() - began) / 1000),
  workerStarts: stats.starts,
  workerCrashes: stats.crashes,
  crashesPer100Restarts: Math.round(stats.crashes / RESTARTS * 1000) / 10,
  lastCrash: stats.lastCrash,
  failedToReturn,
  allHealthy,
  rssMbBefore: Math.round(rss0 / 1048576),
  rssMbAfter: Math.round(Deno.memoryUsage().rss / 1048576),
}));
await driver.stop();
await Promise.all(sims.map((s) => s.stop()));
state.close();
await Deno.remove(tmp, { recursive: true });
Deno.exit(allHealthy && failedToReturn === 0 ? 0 : 1);
