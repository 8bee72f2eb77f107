// `deno task agent …`: the node agent.
import { processIo } from "../relay/cli_support.ts";
import { runAgentCli } from "./cli.ts";

Deno.exit(await runAgentCli(Deno.args, processIo, (n) => Deno.env.get(n)));
