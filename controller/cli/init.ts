/**
 * `cox init [--personal|--enterprise]`: makes a new controller state
 * (directory, secret.key, database, CA) and applies a preset (personal by
 * default) through the service layer.
 */
import type { CliIo } from "../../relay/host/cli_support.ts";
import { Service } from "../service/service.ts";
import { type PresetName, Settings } from "../service/settings.ts";
import { openState, StateError } from "../state.ts";

/**
 * Creates the state and its certificate authority, as the controller's
 * first start would. A state that already holds a CA is left untouched and
 * the command fails, so a repeated or mistyped `init` never changes one
 * (`cox settings preset NAME` changes the preset of an existing state).
 */
export async function initState(
  state: string,
  preset: PresetName,
  actor: string,
  io: CliIo,
): Promise<number> {
  const st = await openState(state, { create: true });
  try {
    if (!st.created) {
      throw new StateError(
        "state-exists",
        `${state} already holds a certificate authority (root CA fingerprint ${st.pki.rootFingerprint}); nothing was changed`,
      );
    }
    new Settings(new Service(st.db)).applyPreset(actor, preset);
    io.err(`created a new certificate authority in ${state}`);
    io.err(`root CA fingerprint (sha256, DER): ${st.pki.rootFingerprint}`);
    io.err(`preset: ${preset} ("cox settings list" shows the settings)`);
    io.err(`back up ${state} as a whole: the database is useless without its secret.key`);
    return 0;
  } finally {
    st.close();
  }
}
