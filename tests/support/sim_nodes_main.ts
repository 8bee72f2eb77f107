/**
 * A process of simulated nodes (sim_nodes.ts) for the reconcile benchmark.
 * stdin: one JSON line of SimOptions (without callbacks), then commands
 * `{"op":"remove-peer","node":i,"peer":j}` and `{"op":"stop"}`.
 * stdout: `{"ready":true,"ports":[...],"rssKb":N}`, then
 * `{"addPeer":i,"key":"..."}` for every AddPeer.
 */
import { startSimFleet } from "./sim_nodes.ts";
import { decodeText } from "../../core/encoding.ts";

async function* readLines(): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of decodeText(Deno.stdin.readable)) {
    buf += chunk;
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      yield buf.slice(0, nl);
      buf = buf.slice(nl + 1);
    }
  }
}

const lines = readLines();
const first = await lines.next();
const opts = JSON.parse(first.value!);
const out = (o: unknown) => console.log(JSON.stringify(o));
const fleet = await startSimFleet({
  ...opts,
  onAddPeer: (node: number, key: string) => out({ addPeer: node, key }),
});
const rssKb = Math.round(Deno.memoryUsage().rss / 1024);
out({ ready: true, ports: fleet.ports, rssKb });
for (let r = await lines.next(); !r.done; r = await lines.next()) {
  const cmd = JSON.parse(r.value);
  if (cmd.op === "remove-peer") fleet.removePeer(cmd.node, cmd.peer);
  if (cmd.op === "stop") break;
}
await fleet.close();
Deno.exit(0);
