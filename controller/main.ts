// `deno task controller`: runs the controller (see cli/controller.ts).
import { processIo, stopSignal } from "../relay/cli_support.ts";
import { runControllerCli } from "./cli/controller.ts";

// Listen for SIGINT/SIGTERM before the slow start, so an early signal still stops cleanly.
const stopped = stopSignal();
Deno.exit(await runControllerCli(Deno.args, { ...processIo, stopped }, (n) => Deno.env.get(n)));
