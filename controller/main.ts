// `deno task controller`: runs the controller (see cli/controller.ts).
import { processIo, stopSignal } from "../relay/host/cli_support.ts";

// Listen for SIGINT/SIGTERM before the rest of the program is even loaded
// (a dynamic import), so an early signal still stops cleanly.
const stopped = stopSignal();
const { errorCode, logUnhandledErrors } = await import("../relay/host/process_guard.ts");
const { createLogger } = await import("../core/log.ts");
const { runControllerCli } = await import("./cli/controller.ts");
// An error nothing handled is one JSON line, never a stack trace or the end of the controller.
const unhandled = logUnhandledErrors("controller");
let code: number;
try {
  code = await runControllerCli(Deno.args, { ...processIo, stopped }, (n) => Deno.env.get(n));
} catch (e) {
  createLogger("controller").error("controller failed", {
    code: errorCode(e, "crashed"),
    error: e,
  });
  code = 1;
}
unhandled.close();
Deno.exit(code);
