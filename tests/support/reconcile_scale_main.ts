/**
 * Runs one scale of the reconcile benchmark (reconcile_scale.ts) and prints
 * its result as one JSON line. Usage: reconcile_scale_main.ts NODES grpc|memory;
 * `reconcile_scale_main.ts write DIR NODES` writes the controller state first.
 */
import { scale, writeFleet } from "./reconcile_scale.ts";

if (Deno.args[0] === "write") {
  await writeFleet(Deno.args[1], Number(Deno.args[2]));
  Deno.exit(0);
}

const count = Number(Deno.args[0]);
const mode = Deno.args[1];
if (!Number.isInteger(count) || count < 1 || (mode !== "grpc" && mode !== "memory")) {
  console.error("usage: reconcile_scale_main.ts NODES grpc|memory");
  Deno.exit(2);
}
console.log(JSON.stringify(await scale(count, mode)));
Deno.exit(0);
