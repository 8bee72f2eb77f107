/**
 * `cox relay sign`: certificates for a remote relay set up by hand, recorded
 * in the relays table; `cox relays list`.
 */
import { bundlePem, certPem, issueLeaf, serialOf } from "../../core/pki/mod.ts";
import { listSetting } from "../config.ts";
import type { CliIo } from "../../relay/host/cli_support.ts";
import { RELAY_FILES } from "../../relay/run.ts";
import { Relays } from "../service/relays.ts";
import { formatTable } from "./format.ts";
import { withService } from "./with_state.ts";

/**
 * Signs the CSR a relay made with `relay gen-csr` (the key never left the
 * relay) for the given public names/IPs and records the relay under its
 * first name. With `outDir`, writes every file the relay's directory needs
 * except its key; otherwise prints relay.crt.
 */
export async function relaySign(
  state: string,
  csrPath: string | undefined,
  hosts: string | undefined,
  outDir: string | undefined,
  actor: string,
  io: CliIo,
): Promise<number> {
  if (!csrPath || !hosts || listSetting(hosts).length === 0) {
    io.err(
      "usage: cox relay sign --csr FILE --hosts relay.example.net[,203.0.113.7] [--out-dir DIR]",
    );
    return 2;
  }
  const csr = await Deno.readTextFile(csrPath);
  return await withService(state, async (svc, st) => {
    const { cas } = st.pki;
    const leaf = await issueLeaf(cas, csr, { kind: "relay", hosts: listSetting(hosts) });
    const relay = new Relays(svc).certified(actor, listSetting(hosts)[0], serialOf(leaf));
    const files: Record<string, string> = {
      [RELAY_FILES.cert]: bundlePem([leaf, cas.fleet.cert]),
      [RELAY_FILES.root]: certPem(cas.root.cert),
      [RELAY_FILES.fleetCa]: certPem(cas.fleet.cert),
      [RELAY_FILES.deviceCa]: certPem(cas.device.cert),
    };
    io.err(
      `issued a relay certificate for ${
        listSetting(hosts).join(", ")
      }, serial ${leaf.serialNumber}; recorded as relay ${relay.id} (version ${relay.version})`,
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
  });
}

export async function relaysList(state: string, io: CliIo): Promise<number> {
  const relays = await withService(state, (svc) => new Relays(svc).list());
  if (relays.length === 0) {
    io.out(`no relays yet; "cox relay sign" records one\n`);
    return 0;
  }
  io.out(formatTable(
    ["HOST", "TUNNEL PORT", "KIND", "STATUS", "CERT SERIAL", "VERSION", "ID"],
    relays.map((r) => [
      r.host,
      String(r.tunnelPort),
      r.kind,
      r.status,
      r.certSerial ?? "-",
      String(r.version),
      r.id,
    ]),
  ));
  return 0;
}
