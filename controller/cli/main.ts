// `deno task cox …`: the controller's command line.
import { processIo } from "../../relay/host/cli_support.ts";
import { runCli } from "./run.ts";

Deno.exit(await runCli(Deno.args, processIo, (n) => Deno.env.get(n)));
