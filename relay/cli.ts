/** The relay's command line. */
import { parseArgs } from "node:util";
import { PharosError } from "../core/errors.ts";
import { genCsr } from "./gen_csr.ts";

const USAGE = `usage: relay <command> [flags]

commands:
  gen-csr [--dir DIR]   make the relay key (DIR/relay.key, 0600) and print a CSR
                        (DIR defaults to $PHAROS_RELAY_DIR or /etc/pharos-relay)
`;

export async function runRelayCli(
  args: string[],
  io: { out(text: string): void; err(line: string): void },
  env: (name: string) => string | undefined,
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { dir: { type: "string" }, help: { type: "boolean", short: "h" } },
    });
  } catch (e) {
    io.err(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const dir = values.dir ?? env("PHAROS_RELAY_DIR") ?? "/etc/pharos-relay";
  try {
    switch (positionals[0]) {
      case "gen-csr":
        await genCsr(dir, io.out, io.err);
        return 0;
      default:
        io.err(USAGE);
        return values.help ? 0 : 2;
    }
  } catch (e) {
    if (
      e instanceof PharosError || e instanceof Deno.errors.PermissionDenied ||
      e instanceof Deno.errors.NotADirectory
    ) {
      io.err(`error: ${(e as Error).message}`);
      return 1;
    }
    throw e;
  }
}
