/**
 * `cox ssh-key`: prints the controller's SSH public key (OpenSSH format),
 * creating it on first use (Ed25519, sealed under secret.key). The operator
 * puts the line into the authorized_keys of the user `nodes add` logs in as.
 */
import type { CliIo } from "../../relay/host/cli_support.ts";
import { controllerSshKey } from "../ssh/controller_key.ts";
import { withService } from "./with_state.ts";

export async function sshKey(state: string, actor: string, io: CliIo): Promise<number> {
  const key = await withService(state, (svc, st) => controllerSshKey(svc, st.keystore, actor));
  io.err(
    `${
      key.created ? "created the controller's SSH key" : "the controller's SSH key"
    }: ${key.fingerprint}; ` +
      "add the line below to ~/.ssh/authorized_keys of the user that nodes add / relays add log in as",
  );
  io.out(key.publicLine + "\n");
  return 0;
}
