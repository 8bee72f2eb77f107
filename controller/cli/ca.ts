/** `cox ca …`: the certificate authority. */
import { certPem } from "../../core/pki/mod.ts";
import { openState } from "../state.ts";
import type { CliIo } from "../../relay/host/cli_support.ts";

const WHICH = ["root", "fleet", "device"] as const;

/**
 * `cox ca export [--which root|fleet|device]`: prints the CA certificates as
 * PEM (root, Fleet CA, Device CA). The state must already hold a CA.
 */
export async function caExport(
  state: string,
  which: string | undefined,
  io: CliIo,
): Promise<number> {
  const selected = which === undefined ? [...WHICH] : WHICH.filter((w) => w === which);
  if (selected.length === 0) {
    io.err(`unknown --which "${which}"; use root, fleet or device`);
    return 2;
  }
  const st = await openState(state);
  try {
    io.err(`root CA fingerprint (sha256, DER): ${st.pki.rootFingerprint}`);
    for (const w of selected) io.out(certPem(st.pki.cas[w].cert));
    return 0;
  } finally {
    st.close();
  }
}
