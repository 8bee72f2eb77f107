// `deno task client …`: the reference client (enroll, login, sync, up).
import { processIo, stopSignal } from "../../relay/host/cli_support.ts";
import { runClientCli } from "./cli.ts";

Deno.exit(
  await runClientCli(Deno.args, { ...processIo, stopped: stopSignal() }, (n) => Deno.env.get(n)),
);
