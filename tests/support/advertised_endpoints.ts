/**
 * What a device's profile advertises of each node's endpoints, read the
 * way a client reads it (opened with the device's key, signature checked):
 * for the endpoint-confirmation tests.
 */
import { type AmneziaWgProtocol, decodeProfileDocument } from "../../core/profile/mod.ts";
import { openProfile } from "../../core/seal/mod.ts";
import {
  type AccountsFixture,
  ADMIN,
  claimOf,
  type ClientKeys,
  clientKeys,
  fingerprintOf,
} from "./accounts_fixture.ts";

export interface EnrolledDevice {
  fp: string;
  keys: ClientKeys;
  signing: Uint8Array;
}

/** A new user `email` with one device enrolled through an unbound ticket. */
export async function enrollDevice(
  f: AccountsFixture,
  email = "ann@example.com",
): Promise<EnrolledDevice> {
  f.accounts.createUser(ADMIN, email);
  const t = f.accounts.createTicket(email, { actor: ADMIN, unbound: true });
  const keys = await clientKeys();
  const r = await f.accounts.claim(claimOf(new URL(t.url).searchParams.get("token")!, keys));
  return { fp: await fingerprintOf(r.deviceCertPem), keys, signing: r.signingPublicKey };
}

/**
 * The device's current profile: its revision and, per node id, the
 * AmneziaWG endpoints it lists as `IP:PORT` or `IP:FIRST-LAST`.
 */
export async function advertisedEndpoints(
  f: AccountsFixture,
  d: EnrolledDevice,
): Promise<{ revision: number; nodes: Map<string, string[]> }> {
  const prof = await f.accounts.getProfile({ fingerprint: d.fp });
  const doc = decodeProfileDocument(
    await openProfile(prof.ciphertext, d.keys.encryption.privateKey, d.signing),
  );
  const nodes = new Map<string, string[]>();
  for (const n of doc.profiles.flatMap((p) => p.nodes)) {
    const awg = n.protocols.find((p) =>
      !("opaque" in p) && p.type === "amneziawg"
    ) as AmneziaWgProtocol;
    nodes.set(
      n.id,
      (awg.params.endpoints ?? []).map((e) => {
        const ip = e.ip.includes(":") ? `[${e.ip}]` : e.ip;
        return e.port_min === e.port_max
          ? `${ip}:${e.port_min}`
          : `${ip}:${e.port_min}-${e.port_max}`;
      }),
    );
  }
  return { revision: prof.revision, nodes };
}
