/**
 * The cross-platform WireGuard configuration protocol ("UAPI") `set`
 * request, with the AmneziaWG keys of CONTRACTS.md §5.3: what an agent or
 * client writes to `/var/run/amneziawg/<if>.sock` (or wireguard-go's
 * `/var/run/wireguard/<if>.sock`). Keys are lowercase hex here, base64
 * everywhere else.
 */
import { DataplaneError } from "./errors.ts";
import { canonicalCidr, canonicalEndpoint } from "./ip.ts";
import {
  type AwgObfuscation,
  OBFUSCATION_NUMBER_KEYS,
  OBFUSCATION_TEMPLATE_KEYS,
  validateObfuscation,
} from "./obfuscation.ts";
import type { RenderOptions } from "./awg_config.ts";
import { checkArray, checkInt, checkKeepalive, checkPort, wgKeyToHex } from "./validate.ts";

/** A peer in a UAPI `set` request. */
export interface UapiPeer {
  publicKey: string;
  presharedKey?: string;
  /** `ip:port` only: UAPI does not resolve names. */
  endpoint?: string;
  persistentKeepalive?: number;
  /** Emit `replace_allowed_ips=true` before the allowed_ip lines. */
  replaceAllowedIps?: boolean;
  allowedIps: readonly string[];
}

/** A UAPI `set` request for one device. */
export interface UapiSet {
  privateKey: string;
  listenPort?: number;
  fwmark?: number;
  /** Emit `replace_peers=true`: the peers below become the whole peer set. */
  replacePeers?: boolean;
  obfuscation: AwgObfuscation;
  peers: readonly UapiPeer[];
}

/**
 * Renders `set=1`, the device lines (private_key, listen_port, fwmark,
 * replace_peers, jc…h4 in decimal, i1–i5 when set), then per peer
 * public_key, preshared_key, endpoint, persistent_keepalive_interval,
 * replace_allowed_ips and one allowed_ip per CIDR, and the terminating
 * blank line.
 */
export function renderUapiSet(request: UapiSet, options: RenderOptions = {}): string {
  const o = validateObfuscation(request.obfuscation, { allowNeutral: options.allowNeutral });
  const lines = ["set=1", `private_key=${wgKeyToHex(request.privateKey, "privateKey")}`];
  if (request.listenPort !== undefined) {
    lines.push(`listen_port=${checkPort(request.listenPort, "listenPort")}`);
  }
  if (request.fwmark !== undefined) {
    lines.push(`fwmark=${checkInt(request.fwmark, "fwmark", 0, 0xffffffff)}`);
  }
  if (request.replacePeers) lines.push("replace_peers=true");
  for (const k of OBFUSCATION_NUMBER_KEYS) lines.push(`${k}=${o[k]}`);
  for (const k of OBFUSCATION_TEMPLATE_KEYS) if (o[k]) lines.push(`${k}=${o[k]}`);
  const peers = checkArray(request.peers, "peers", 65536) as UapiPeer[];
  const seen = new Set<string>();
  peers.forEach((peer, i) => {
    const f = `peers[${i}]`;
    if (typeof peer !== "object" || peer === null) {
      throw new DataplaneError("bad-peer", f, "expected an object");
    }
    const pub = wgKeyToHex(peer.publicKey, `${f}.publicKey`);
    if (seen.has(pub)) throw new DataplaneError("duplicate", `${f}.publicKey`, "peer listed twice");
    seen.add(pub);
    lines.push(`public_key=${pub}`);
    if (peer.presharedKey !== undefined && peer.presharedKey !== "") {
      lines.push(`preshared_key=${wgKeyToHex(peer.presharedKey, `${f}.presharedKey`)}`);
    }
    if (peer.endpoint !== undefined && peer.endpoint !== "") {
      lines.push(`endpoint=${canonicalEndpoint(peer.endpoint, `${f}.endpoint`)}`);
    }
    if (peer.persistentKeepalive !== undefined) {
      const k = checkKeepalive(peer.persistentKeepalive, `${f}.persistentKeepalive`);
      lines.push(`persistent_keepalive_interval=${k}`);
    }
    if (peer.replaceAllowedIps) lines.push("replace_allowed_ips=true");
    checkArray(peer.allowedIps, `${f}.allowedIps`).forEach((c, j) =>
      lines.push(`allowed_ip=${canonicalCidr(c, `${f}.allowedIps[${j}]`)}`)
    );
  });
  return lines.join("\n") + "\n\n";
}

const AWG_UAPI_KEYS = new Set<string>([...OBFUSCATION_NUMBER_KEYS, ...OBFUSCATION_TEMPLATE_KEYS]);

/** Removes the AmneziaWG-only lines (jc…h4, i1–i5) so plain wireguard-go accepts the request. */
export function stripAwgUapiKeys(text: string): string {
  if (typeof text !== "string") {
    throw new DataplaneError("not-a-string", "uapi", "expected UAPI text");
  }
  return text.split("\n").filter((line) => {
    const eq = line.indexOf("=");
    return eq < 0 || !AWG_UAPI_KEYS.has(line.slice(0, eq));
  }).join("\n");
}
