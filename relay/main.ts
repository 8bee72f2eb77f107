// `deno task relay …`: the public relay (also the `deno compile` entry point).
import { runRelayCli } from "./cli.ts";

const stopped = new Promise<void>((resolve) => {
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => resolve());
});
Deno.exit(
  await runRelayCli(Deno.args, {
    out: (t) => Deno.stdout.writeSync(new TextEncoder().encode(t)),
    err: (l) => console.error(l),
    stopped,
  }, (n) => Deno.env.get(n)),
);
