// `deno task relay …`: the public relay (also the `deno compile` entry point).
import { runRelayCli } from "./cli.ts";
import { processIo } from "./cli_support.ts";

const stopped = new Promise<void>((resolve) => {
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => resolve());
});
Deno.exit(
  await runRelayCli(Deno.args, { ...processIo, stopped }, (n) => Deno.env.get(n)),
);
