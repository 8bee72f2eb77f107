/**
 * The controller's profile-signing key (Ed25519). Clients pin its public
 * half at enrollment (CONTRACTS.md §7.3); the seed is stored only sealed
 * under secret.key (keystore.ts), like the CA keys, and made on first use.
 */
import { generateSigningKeyPair, type KeyPair } from "../../core/seal/mod.ts";
import type { Keystore } from "../keystore.ts";
import { type Actor, Service } from "../service/service.ts";
import { statement } from "../db/sqlite.ts";

const LABEL = "profile-signing-key";

interface Row {
  public_key: Uint8Array;
  key_sealed: Uint8Array;
}

/** Loads the signing key, creating and storing it (sealed) the first time. */
export async function profileSigningKey(
  service: Service,
  keystore: Keystore,
  actor: Actor,
): Promise<KeyPair> {
  const read = () =>
    statement(
      service.db,
      "SELECT public_key, key_sealed FROM profile_signing_key WHERE name = 'profile'",
    )
      .get() as Row | undefined;
  let row = read();
  if (!row) {
    const fresh = generateSigningKeyPair();
    const sealed = await keystore.seal(fresh.privateKey, LABEL);
    service.mutate(
      { actor, action: "profile_key.create", target: { type: "profile_key", id: "profile" } },
      (tx) => {
        // Another process may have made it meanwhile: keep the first one.
        if (tx.current === undefined) {
          tx.insert({ public_key: fresh.publicKey, key_sealed: sealed, created_at: tx.now });
        }
      },
    );
    row = read()!;
  }
  return {
    publicKey: new Uint8Array(row.public_key),
    privateKey: await keystore.open(new Uint8Array(row.key_sealed), LABEL),
  };
}
