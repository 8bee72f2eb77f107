/** The `cox` command line: parses arguments and dispatches to commands. */
import { readJsonConfig } from "../../relay/files.ts";
import { resolveConfig } from "../config.ts";
import { caExport } from "./ca.ts";
import { relaySign } from "./relay.ts";
import { type CliIo, parseCommandLine, withCliErrors } from "../../relay/cli_support.ts";

const USAGE = `usage: cox <command> [flags]

commands:
  ca export [--which root|fleet|device]   print the CA certificates (PEM)
  relay sign --csr FILE --hosts H[,H...] [--out-dir DIR]
                                          sign a relay's CSR; with --out-dir, write
                                          relay.crt, ca.crt, fleet-ca.crt, device-ca.crt

global flags:
  --state DIR     state directory (env PHAROS_STATE, default ./state)
  --config FILE   JSON config file (env PHAROS_CONFIG)
`;

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
  if (values.help || positionals.length === 0) {
    io.err(USAGE);
    return values.help ? 0 : 2;
  }
  return await withCliErrors(io, async () => {
    const file = await readJsonConfig(values.config ?? env("PHAROS_CONFIG"));
    const cfg = resolveConfig({ state: values.state }, env, file);
    const cmd = positionals.join(" ");
    switch (cmd) {
      case "ca export":
        return await caExport(cfg.state, values.which, io);
      case "relay sign":
        return await relaySign(cfg.state, values.csr, values.hosts, values["out-dir"], io);
      default:
        io.err(`unknown command "${cmd}"\n${USAGE}`);
        return 2;
    }
  });
}
