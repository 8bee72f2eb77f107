// `deno task agent …`: the node agent.
import { runAgentCli } from "./cli.ts";

Deno.exit(
  await runAgentCli(Deno.args, {
    out: (t) => Deno.stdout.writeSync(new TextEncoder().encode(t)),
    err: (l) => console.error(l),
  }, (n) => Deno.env.get(n)),
);
