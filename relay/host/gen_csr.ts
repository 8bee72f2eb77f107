/**
 * `gen-csr --dir DIR` for a relay or a node agent: makes (or reuses)
 * DIR/<name>.key (0600) and writes and prints DIR/<name>.csr, for the
 * controller to sign over SSH. The key never leaves the machine.
 */
import { ensureKeyAndCsr } from "../../core/pki/mod.ts";
import type { CliIo } from "./cli_support.ts";
import { dirStore } from "./files.ts";

export async function genCsr(kind: "relay" | "node", dir: string, io: CliIo): Promise<number> {
  const r = await ensureKeyAndCsr(dirStore(dir), kind, { key: `${kind}.key`, csr: `${kind}.csr` });
  io.err(
    r.createdKey
      ? `wrote a new private key to ${dir}/${kind}.key (mode 0600)`
      : `reusing ${dir}/${kind}.key`,
  );
  io.err(`wrote ${dir}/${kind}.csr`);
  io.out(r.csrPem);
  return 0;
}
