/** `cox relay sign`: certificates for a remote relay set up by hand. */
import { bundlePem, certPem, issueLeaf } from "../../core/pki/mod.ts";
import { listSetting } from "../config.ts";
import type { CliIo } from "../../relay/cli_support.ts";
import { openState } from "../state.ts";
import { RELAY_FILES } from "../../relay/run.ts";

/**
 * Signs the CSR a relay made with `relay gen-csr` (the key never left the
 * relay) for the given public names/IPs. With `outDir`, writes every file
 * the relay's directory needs except its key; otherwise prints relay.crt.
 */
export async function relaySign(
  state: string,
  csrPath: string | undefined,
  hosts: string | undefined,
  outDir: string | undefined,
  io: CliIo,
): Promise<number> {
  if (!csrPath || !hosts || listSetting(hosts).length === 0) {
    io.err(
      "usage: cox relay sign --csr FILE --hosts relay.example.net[,203.0.113.7] [--out-dir DIR]",
    );
    return 2;
  }
  const csr = await Deno.readTextFile(csrPath);
  const st = await openState(state);
  try {
    const { cas } = st.pki;
    const leaf = await issueLeaf(cas, csr, { kind: "relay", hosts: listSetting(hosts) });
    const files: Record<string, string> = {
      [RELAY_FILES.cert]: bundlePem([leaf, cas.fleet.cert]),
      [RELAY_FILES.root]: certPem(cas.root.cert),
      [RELAY_FILES.fleetCa]: certPem(cas.fleet.cert),
      [RELAY_FILES.deviceCa]: certPem(cas.device.cert),
    };
    io.err(
      `issued a relay certificate for ${
        listSetting(hosts).join(", ")
      }, serial ${leaf.serialNumber}`,
    );
    if (!outDir) {
      io.out(files[RELAY_FILES.cert]);
      return 0;
    }
    await Deno.mkdir(outDir, { recursive: true });
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${outDir}/${name}`, text);
      io.err(`wrote ${outDir}/${name}`);
    }
    return 0;
  } finally {
    st.close();
  }
}
