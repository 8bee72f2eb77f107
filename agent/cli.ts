/** The node agent's command line. */
import { parseArgs } from "node:util";
import { ensureKeyAndCsr, PkiError } from "../core/pki/mod.ts";
import { dirStore } from "../relay/files.ts";

const USAGE = `usage: agent <command> [flags]

commands:
  gen-csr [--dir DIR]   make the node key (DIR/node.key, 0600, reused if present)
                        and print a CSR (DIR defaults to $PHAROS_NODE_DIR or /etc/pharos-node)
`;

export async function runAgentCli(
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
  const dir = values.dir ?? env("PHAROS_NODE_DIR") ?? "/etc/pharos-node";
  if (positionals[0] !== "gen-csr") {
    io.err(USAGE);
    return values.help ? 0 : 2;
  }
  try {
    const r = await ensureKeyAndCsr(dirStore(dir), "node", { key: "node.key", csr: "node.csr" });
    io.err(
      r.createdKey
        ? `wrote a new private key to ${dir}/node.key (mode 0600)`
        : `reusing ${dir}/node.key`,
    );
    io.out(r.csrPem);
    return 0;
  } catch (e) {
    if (
      e instanceof PkiError || e instanceof Deno.errors.PermissionDenied ||
      e instanceof Deno.errors.NotADirectory
    ) {
      io.err(`error: ${(e as Error).message}`);
      return 1;
    }
    throw e;
  }
}
