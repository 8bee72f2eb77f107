/**
 * The controller's SSH key (DESIGN §3: self-made, long-lived, used only to
 * install agents and relays): Ed25519, created on first use (the
 * controller's first start, `cox ssh-key`, or the first `nodes add`), kept
 * in the `ssh_keys` table with its seed sealed under `secret.key` (label
 * `ssh:controller`, as the CA keys are sealed under `ca:<name>`), written
 * through the service layer (audited as `ssh_key.create`). The private key
 * exists in clear only in memory, while a connection needs it.
 */
import type { Keystore } from "../keystore.ts";
import { ConflictError } from "../service/errors.ts";
import type { Actor, Service } from "../service/service.ts";
import { SshError } from "./errors.ts";
import { type SshKeyPair, sshKeyPair } from "./keypair.ts";

const NAME = "controller";
const LABEL = "ssh:controller";
export const CONTROLLER_KEY_COMMENT = "pharos-controller";

interface Row {
  public_key: string;
  fingerprint: string;
  key_sealed: Uint8Array;
}

export interface ControllerSshKey extends SshKeyPair {
  /** True when this call made the key. */
  created: boolean;
}

function read(service: Service): Row | undefined {
  return service.get({ type: "ssh_key", id: NAME }) as Row | undefined;
}

async function unseal(row: Row, keystore: Keystore): Promise<ControllerSshKey> {
  const seed = await keystore.open(row.key_sealed, LABEL);
  const pair = sshKeyPair(seed, CONTROLLER_KEY_COMMENT);
  if (pair.publicLine !== row.public_key) {
    throw new SshError(
      "bad-key",
      "the stored SSH public key does not belong to its sealed private key: the ssh_keys row was altered; restore the database from backup",
    );
  }
  return { ...pair, created: false };
}

/** The controller's SSH key, created (and stored sealed) if there is none yet. */
export async function controllerSshKey(
  service: Service,
  keystore: Keystore,
  actor: Actor,
): Promise<ControllerSshKey> {
  const row = read(service);
  if (row) return await unseal(row, keystore);
  const pair = sshKeyPair(undefined, CONTROLLER_KEY_COMMENT);
  const sealed = await keystore.seal(pair.seed, LABEL);
  try {
    service.mutate(
      { actor, action: "ssh_key.create", target: { type: "ssh_key", id: NAME }, expectVersion: 0 },
      (tx) =>
        tx.insert({
          algorithm: "ssh-ed25519",
          public_key: pair.publicLine,
          fingerprint: pair.fingerprint,
          key_sealed: sealed,
          created_at: tx.now,
        }),
    );
  } catch (e) {
    // Another process made it meanwhile: use that one.
    if (!(e instanceof ConflictError)) throw e;
    return await unseal(read(service)!, keystore);
  }
  return { ...pair, created: true };
}
