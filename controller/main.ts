// `deno task controller`: runs the controller on its embedded defaults.
import { parseArgs } from "node:util";
import { readJsonConfig } from "../relay/files.ts";
import { CONTROLLER_SETTINGS, resolveConfig } from "./config.ts";
import { startController } from "./serve.ts";

const options = Object.fromEntries(
  [...CONTROLLER_SETTINGS.map((s) => s.flag), "config"].map((
    f,
  ) => [f, { type: "string" as const }]),
);
const { values } = parseArgs({ args: Deno.args, options });
const env = (n: string) => Deno.env.get(n);
const cfg = resolveConfig(values, env, await readJsonConfig(values.config ?? env("PHAROS_CONFIG")));
const controller = await startController(cfg);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(sig, () => controller.shutdown().then(() => Deno.exit(0)));
}
