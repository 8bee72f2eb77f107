/**
 * The cross-platform WireGuard configuration protocol ("UAPI") `set`
 * request, with the AmneziaWG keys of CONTRACTS.md §5.3: what an agent or
 * client writes to `/var/run/amneziawg/<if>.sock` (or wireguard-go's
 * `/var/run/wireguard/<if>.sock`). Keys are lowercase hex here, base64
 * everywhere else.
 */
import { x25519 } from "@noble/curves/ed25519.js";
import { fromHex, toBase64 } from "../encoding.ts";
import type { DumpInterface, DumpPeer, WgDump } from "./dump.ts";
import { DataplaneError } from "./errors.ts";
import { canonicalCidr, canonicalEndpoint } from "./ip.ts";
import {
  type AwgObfuscation,
  OBFUSCATION_NUMBER_KEYS,
  OBFUSCATION_TEMPLATE_KEYS,
  validateObfuscation,
} from "./obfuscation.ts";
import type { RenderOptions } from "./awg_config.ts";
import {
  checkArray,
  checkInt,
  checkKeepalive,
  checkPort,
  wgKeyFromHex,
  wgKeyToHex,
} from "./validate.ts";

/** A peer in a UAPI `set` request. */
export interface UapiPeer {
  publicKey: string;
  /** Emit `remove=true`: the peer is deleted; no other key may be given. */
  remove?: boolean;
  presharedKey?: string;
  /** `ip:port` only: UAPI does not resolve names. */
  endpoint?: string;
  persistentKeepalive?: number;
  /** Emit `replace_allowed_ips=true` before the allowed_ip lines. */
  replaceAllowedIps?: boolean;
  /** Required unless `remove`. */
  allowedIps?: readonly string[];
}

/**
 * A UAPI `set` request for one device. Without `privateKey` the request
 * changes peers only (no device line is sent); without `obfuscation` no
 * AmneziaWG key is sent, which is what plain wireguard-go accepts.
 */
export interface UapiSet {
  privateKey?: string;
  listenPort?: number;
  fwmark?: number;
  /** Emit `replace_peers=true`: the peers below become the whole peer set. */
  replacePeers?: boolean;
  obfuscation?: AwgObfuscation;
  peers: readonly UapiPeer[];
}

/**
 * Renders `set=1`, the device lines (private_key, listen_port, fwmark,
 * replace_peers, jc…h4 in decimal, i1–i5 when set), then per peer
 * public_key, preshared_key, endpoint, persistent_keepalive_interval,
 * replace_allowed_ips and one allowed_ip per CIDR (or only `remove=true`
 * for a removed peer), and the terminating blank line.
 */
export function renderUapiSet(request: UapiSet, options: RenderOptions = {}): string {
  if (typeof request !== "object" || request === null) {
    throw new DataplaneError("bad-request", "request", "expected an object");
  }
  const o = request.obfuscation === undefined
    ? undefined
    : validateObfuscation(request.obfuscation, { allowNeutral: options.allowNeutral });
  const lines = ["set=1"];
  if (request.privateKey !== undefined) {
    lines.push(`private_key=${wgKeyToHex(request.privateKey, "privateKey")}`);
  }
  if (request.listenPort !== undefined) {
    lines.push(`listen_port=${checkPort(request.listenPort, "listenPort")}`);
  }
  if (request.fwmark !== undefined) {
    lines.push(`fwmark=${checkInt(request.fwmark, "fwmark", 0, 0xffffffff)}`);
  }
  if (request.replacePeers) lines.push("replace_peers=true");
  if (o) {
    for (const k of OBFUSCATION_NUMBER_KEYS) lines.push(`${k}=${o[k]}`);
    for (const k of OBFUSCATION_TEMPLATE_KEYS) if (o[k]) lines.push(`${k}=${o[k]}`);
  }
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
    if (peer.remove) {
      const extra = (["presharedKey", "endpoint", "persistentKeepalive", "allowedIps"] as const)
        .find((k) => peer[k] !== undefined);
      if (extra) {
        throw new DataplaneError("bad-peer", `${f}.${extra}`, "a removed peer takes no other key");
      }
      lines.push("remove=true");
      return;
    }
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

/**
 * Parses the reply to a UAPI `get=1` request (everything up to the blank
 * line) into the same shape as `wg show <if> dump`. The public key, which
 * UAPI does not send, is derived from the private key; an all-zero
 * preshared key means none; AmneziaWG device keys (jc … i5 and newer ones)
 * are kept verbatim as `key=value` in `awgFields`. A non-zero `errno`
 * throws a DataplaneError with code `uapi-errno`.
 */
export function parseUapiGet(text: string): WgDump {
  if (typeof text !== "string") {
    throw new DataplaneError("bad-uapi", "uapi", "expected the text of a UAPI get reply");
  }
  const lines = text.split("\n");
  const iface: DumpInterface = {
    privateKey: null,
    publicKey: null,
    listenPort: 0,
    awgFields: [],
    fwmark: null,
  };
  const peers: DumpPeer[] = [];
  let peer: DumpPeer | null = null;
  let errno: number | null = null;
  for (const [i, line] of lines.entries()) {
    if (line === "") break;
    const f = `uapi line ${i + 1}`;
    const eq = line.indexOf("=");
    if (eq <= 0) {
      throw new DataplaneError("bad-uapi", f, `${JSON.stringify(line)} is not key=value`);
    }
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === "errno") {
      errno = uapiNumber(value, f, 0x7fffffff, true);
      continue;
    }
    if (key === "public_key") {
      peer = {
        publicKey: wgKeyFromHex(value, f),
        presharedKey: null,
        endpoint: null,
        allowedIps: [],
        latestHandshake: 0,
        rxBytes: 0n,
        txBytes: 0n,
        persistentKeepalive: null,
      };
      peers.push(peer);
      continue;
    }
    if (peer === null) {
      switch (key) {
        case "private_key":
          iface.privateKey = wgKeyFromHex(value, f);
          iface.publicKey = toBase64(x25519.getPublicKey(fromHex(value, f, 32)));
          break;
        case "listen_port":
          iface.listenPort = uapiNumber(value, f, 65535);
          break;
        case "fwmark":
          iface.fwmark = uapiNumber(value, f, 0xffffffff) || null;
          break;
        default:
          if (!/^[a-z0-9_]{1,64}$/.test(key) || !/^[ -~]*$/.test(value)) {
            throw new DataplaneError("bad-uapi", f, `unexpected device key ${JSON.stringify(key)}`);
          }
          iface.awgFields.push(`${key}=${value}`);
      }
      continue;
    }
    switch (key) {
      case "preshared_key":
        peer.presharedKey = /^0{64}$/.test(value) ? null : wgKeyFromHex(value, f);
        break;
      case "endpoint":
        peer.endpoint = canonicalEndpoint(value, f);
        break;
      case "allowed_ip":
        peer.allowedIps.push(canonicalCidr(value, f));
        break;
      case "last_handshake_time_sec":
        peer.latestHandshake = uapiNumber(value, f, Number.MAX_SAFE_INTEGER);
        break;
      case "rx_bytes":
        peer.rxBytes = uapiCounter(value, f);
        break;
      case "tx_bytes":
        peer.txBytes = uapiCounter(value, f);
        break;
      case "persistent_keepalive_interval": {
        const k = uapiNumber(value, f, 65535);
        peer.persistentKeepalive = k === 0 ? null : k;
        break;
      }
      default:
        // last_handshake_time_nsec, protocol_version and keys newer than this parser.
        if (!/^[a-z0-9_]{1,64}$/.test(key)) {
          throw new DataplaneError("bad-uapi", f, `unexpected peer key ${JSON.stringify(key)}`);
        }
    }
  }
  if (errno === null) throw new DataplaneError("bad-uapi", "uapi", "reply lacks errno");
  if (errno !== 0) throw new DataplaneError("uapi-errno", "uapi", `device answered errno=${errno}`);
  return { interface: iface, peers };
}

/** The `errno` of a UAPI `set` reply; throws on a malformed reply. */
export function parseUapiErrno(text: string): number {
  const m = /^errno=(-?[0-9]{1,10})\n\n$/.exec(text);
  if (!m) throw new DataplaneError("bad-uapi", "uapi", `unexpected reply ${JSON.stringify(text)}`);
  return Number(m[1]);
}

function uapiNumber(text: string, field: string, max: number, signed = false): number {
  const re = signed ? /^-?(?:0|[1-9][0-9]{0,15})$/ : /^(?:0|[1-9][0-9]{0,15})$/;
  if (!re.test(text) || Math.abs(Number(text)) > max) {
    throw new DataplaneError("bad-uapi", field, `${JSON.stringify(text)} is not a number ≤ ${max}`);
  }
  return Number(text);
}

function uapiCounter(text: string, field: string): bigint {
  if (!/^(?:0|[1-9][0-9]{0,19})$/.test(text) || BigInt(text) >= 1n << 64n) {
    throw new DataplaneError("bad-uapi", field, `${JSON.stringify(text)} is not a 64-bit counter`);
  }
  return BigInt(text);
}
