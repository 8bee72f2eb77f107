/**
 * Runs one scale of the reconcile benchmark (reconcile_scale.ts) and prints
 * its result as one JSON line. Usage: reconcile_scale_main.ts NODES MODE
 * (fleet, direct or memory). The writer steps run in processes of their
 * own: `write-state DIR` (a new controller state and the simulated nodes'
 * certificate) and `write DIR NODES fleet|bare` (the node table).
 */
import { scale, SCALE_MODES, type ScaleMode, writeFleet, writeState } from "./reconcile_scale.ts";

if (Deno.args[0] === "write-state") {
  await writeState(Deno.args[1]);
  Deno.exit(0);
}
if (Deno.args[0] === "write") {
  await writeFleet(Deno.args[1], Number(Deno.args[2]), Deno.args[3] === "fleet");
  Deno.exit(0);
}

const count = Number(Deno.args[0]);
const mode = Deno.args[1] as ScaleMode;
if (!Number.isInteger(count) || count < 0 || !SCALE_MODES.includes(mode)) {
  console.error(`usage: reconcile_scale_main.ts NODES ${SCALE_MODES.join("|")}`);
  Deno.exit(2);
}
console.log(JSON.stringify(await scale(count, mode)));
Deno.exit(0);
