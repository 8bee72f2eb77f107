// `deno task relay …`: the public relay (also the `deno compile` entry point).
//
// SIGINT/SIGTERM listeners come first, before the rest of the program is
// even loaded (a dynamic import), so a signal during start-up still ends in
// a clean stop instead of the default action killing the process.
import { processIo, stopSignal } from "./host/cli_support.ts";

const stopped = stopSignal();
const { relayMain } = await import("./cli.ts");
Deno.exit(await relayMain(Deno.args, { ...processIo, stopped }, (n) => Deno.env.get(n)));
