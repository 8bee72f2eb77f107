/**
 * The node's own data-plane identity, made on its first start and kept in
 * the state directory (CONTRACTS.md §1.6): the AmneziaWG private key and
 * obfuscation set (`awg-node.json`) and the REALITY private key
 * (`xray-node.json`). The controller never chooses them; it reads them from
 * GetStatus.
 */
import { x25519 } from "@noble/curves/ed25519.js";
import {
  type AwgObfuscation,
  checkWgKey,
  generateObfuscation,
  generateRealityKeyPair,
  realityPublicKey,
  validateObfuscation,
} from "../core/dataplane/mod.ts";
import { fromBase64 } from "../core/encoding.ts";
import { AgentError } from "./errors.ts";
import type { StateStore } from "./store.ts";

export interface NodeIdentity {
  awgPrivateKey: string;
  awgPublicKey: string;
  obfuscation: AwgObfuscation;
  realityPrivateKey: string;
  realityPublicKey: string;
}

interface AwgNodeFile {
  private_key: string;
  obfuscation: AwgObfuscation;
}
interface XrayNodeFile {
  private_key: string;
}

/** A fresh WireGuard private key: 32 random bytes, clamped as `wg genkey` does. */
export function generateWgPrivateKey(): string {
  const k = crypto.getRandomValues(new Uint8Array(32));
  k[0] &= 248;
  k[31] = (k[31] & 127) | 64;
  return k.toBase64();
}

/** The public key of a (checked) WireGuard private key. */
export function wgPublicKey(privateKey: string): string {
  return x25519.getPublicKey(fromBase64(checkWgKey(privateKey, "private_key"), "key", 32))
    .toBase64();
}

/** Loads the identity, creating whatever part is missing. */
export async function loadIdentity(store: StateStore): Promise<NodeIdentity> {
  let awg = await store.read<AwgNodeFile>("awg-node.json");
  if (awg === null) {
    awg = { private_key: generateWgPrivateKey(), obfuscation: generateObfuscation() };
    await store.write("awg-node.json", awg);
  }
  let xray = await store.read<XrayNodeFile>("xray-node.json");
  if (xray === null) {
    xray = { private_key: generateRealityKeyPair().privateKey };
    await store.write("xray-node.json", xray);
  }
  try {
    const awgPrivateKey = checkWgKey(awg.private_key, "awg-node.json private_key");
    return {
      awgPrivateKey,
      awgPublicKey: wgPublicKey(awgPrivateKey),
      obfuscation: validateObfuscation(awg.obfuscation, { field: "awg-node.json obfuscation" }),
      realityPrivateKey: xray.private_key,
      realityPublicKey: realityPublicKey(xray.private_key),
    };
  } catch (e) {
    throw new AgentError(
      "corrupt-identity",
      `${store.dir}: the node identity is unusable (${(e as Error).message}); ` +
        "restore awg-node.json / xray-node.json from a backup (deleting them makes a new " +
        "identity, and every client profile for this node must then be re-issued)",
    );
  }
}
