/**
 * `gen-csr --dir DIR`: makes (or reuses) DIR/relay.key (0600) and writes and
 * prints DIR/relay.csr, for the controller to sign over SSH.
 */
import { ensureKeyAndCsr } from "../core/pki/mod.ts";
import { dirStore } from "./files.ts";

export async function genCsr(
  dir: string,
  out: (text: string) => void,
  err: (line: string) => void,
): Promise<void> {
  const r = await ensureKeyAndCsr(dirStore(dir), "relay", { key: "relay.key", csr: "relay.csr" });
  err(
    r.createdKey
      ? `wrote a new private key to ${dir}/relay.key (mode 0600)`
      : `reusing ${dir}/relay.key`,
  );
  err(`wrote ${dir}/relay.csr`);
  out(r.csrPem);
}
