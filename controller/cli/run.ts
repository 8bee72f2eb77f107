/** The `cox` command line: parses arguments and dispatches to commands. */
import { readJsonConfig } from "../../relay/files.ts";
import { CONTROLLER_SETTINGS, resolveConfig } from "../config.ts";
import { caExport } from "./ca.ts";
import { initState } from "./init.ts";
import { relaySign } from "./relay.ts";
import {
  type CliIo,
  commandMistake,
  parseCommandLine,
  withCliErrors,
} from "../../relay/cli_support.ts";

const USAGE = `usage: cox <command> [flags]

commands:
  init                                    create the state directory and its certificate
                                          authority (refused if it already holds one)
  ca export [--which root|fleet|device]   print the CA certificates (PEM)
  relay sign --csr FILE --hosts H[,H...] [--out-dir DIR]
                                          sign a relay's CSR; with --out-dir, write
                                          relay.crt, ca.crt, fleet-ca.crt, device-ca.crt

global flags:
  --state DIR     state directory (env PHAROS_STATE, default ./state); every command but
                  init needs one the controller or "cox init" made
  --config FILE   the controller's JSON config file (env PHAROS_CONFIG)
`;

const COMMANDS = ["init", "ca export", "relay sign"];

export async function runCli(
  args: string[],
  io: CliIo,
  env: (n: string) => string | undefined,
): Promise<number> {
  const parsed = parseCommandLine(
    args,
    {
      state: { type: "string" },
      config: { type: "string" },
      which: { type: "string" },
      csr: { type: "string" },
      hosts: { type: "string" },
      "out-dir": { type: "string" },
    },
    USAGE,
    io,
  );
  if (!parsed) return 2;
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const cmd = positionals.join(" ");
  if (!COMMANDS.includes(cmd)) return commandMistake(cmd, USAGE, io);
  return await withCliErrors(io, async () => {
    const file = await readJsonConfig(values.config ?? env("PHAROS_CONFIG"), CONTROLLER_SETTINGS);
    const cfg = resolveConfig({ state: values.state }, env, file);
    switch (cmd) {
      case "init":
        return await initState(cfg.state, io);
      case "ca export":
        return await caExport(cfg.state, values.which, io);
      default:
        return await relaySign(cfg.state, values.csr, values.hosts, values["out-dir"], io);
    }
  });
}
