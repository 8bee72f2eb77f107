// `deno task agent …`: the node agent.
import { processIo, stopSignal } from "../relay/host/cli_support.ts";
import { runAgentCli } from "./cli.ts";

Deno.exit(
  await runAgentCli(Deno.args, { ...processIo, stopped: stopSignal() }, (n) => Deno.env.get(n)),
);
