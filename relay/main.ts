// `deno task relay …`: the public relay (also the `deno compile` entry point).
import { runRelayCli } from "./cli.ts";

Deno.exit(
  await runRelayCli(Deno.args, {
    out: (t) => Deno.stdout.writeSync(new TextEncoder().encode(t)),
    err: (l) => console.error(l),
  }, (n) => Deno.env.get(n)),
);
