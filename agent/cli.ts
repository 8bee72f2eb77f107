/** The node agent's command line. */
import { genCsr } from "../relay/gen_csr.ts";
import {
  type CliIo,
  commandMistake,
  parseCommandLine,
  withCliErrors,
} from "../relay/cli_support.ts";

const USAGE = `usage: agent <command> [flags]

commands:
  gen-csr [--dir DIR]   make the node key (DIR/node.key, 0600, reused if present)
                        and print a CSR (DIR defaults to $PHAROS_NODE_DIR or /etc/pharos-node)
`;

export async function runAgentCli(
  args: string[],
  io: CliIo,
  env: (name: string) => string | undefined,
): Promise<number> {
  const parsed = parseCommandLine(args, { dir: { type: "string" } }, USAGE, io);
  if (!parsed) return 2;
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const command = positionals.join(" ");
  if (command !== "gen-csr") return commandMistake(command, USAGE, io);
  return await withCliErrors(
    io,
    () => genCsr("node", values.dir ?? env("PHAROS_NODE_DIR") ?? "/etc/pharos-node", io),
  );
}
