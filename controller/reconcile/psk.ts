/**
 * Preshared keys at rest: `node_peers.psk_sealed` and `node_links.psk_sealed`
 * hold the 32-byte key sealed with the state keystore (controller/keystore.ts),
 * its label binding the sealed bytes to their row, so a sealed key copied to
 * another row does not open.
 */
import { fromBase64, toBase64 } from "../../core/encoding.ts";
import { ReconcileError } from "./errors.ts";

/** What sealing needs of the keystore (Keystore implements it). */
export interface Sealer {
  seal(plaintext: Uint8Array, label: string): Promise<Uint8Array>;
  open(sealed: Uint8Array, label: string): Promise<Uint8Array>;
}

/** The label of a node peer's sealed PSK: `node_peer:<row id>`. */
export const peerPskLabel = (peerId: string): string => `node_peer:${peerId}`;
/** The label of an inner link's sealed PSK: `node_link:<row id>`. */
export const linkPskLabel = (linkId: string): string => `node_link:${linkId}`;

/** A fresh 256-bit preshared key (std base64), as every AmneziaWG peer gets one. */
export function newPsk(): string {
  return toBase64(crypto.getRandomValues(new Uint8Array(32)));
}

/** Seals a base64 PSK for the row labelled `label`. */
export async function sealPsk(sealer: Sealer, psk: string, label: string): Promise<Uint8Array> {
  const raw = fromBase64(psk, label);
  if (raw.length !== 32) {
    throw new ReconcileError(
      "bad-psk",
      `${label}: a preshared key is 32 bytes (got ${raw.length})`,
    );
  }
  return await sealer.seal(raw, label);
}

/** Opens a sealed PSK back to base64; NULL (no PSK) stays "". */
export async function openPsk(
  sealer: Sealer,
  sealed: Uint8Array | null,
  label: string,
): Promise<string> {
  if (sealed === null) return "";
  return toBase64(await sealer.open(sealed, label));
}
