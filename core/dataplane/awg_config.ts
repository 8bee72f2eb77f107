/**
 * AmneziaWG config text: the server interface file a node writes
 * (CONTRACTS.md §5.2), the client-side wg-quick style file used in the
 * Amnezia export (§6) and a stripper that leaves only what plain WireGuard
 * tooling accepts. Every value is validated and re-serialised first
 * (§7.6), so no input can add a line, a section or a PostUp hook.
 *
 * The only characters outside [A-Za-z0-9+/=.:,[\] -] a rendered file can
 * hold are the `<`, `>` and spaces of i1–i5 templates, which the AmneziaWG
 * grammar needs; awg-quick passes interface values to `awg setconf` without
 * a shell (only Pre/PostUp/Down are evaluated, and these are never rendered).
 */
import { DataplaneError } from "./errors.ts";
import { canonicalCidr, canonicalEndpoint, formatIp, parseIp } from "./ip.ts";
import {
  type AwgObfuscation,
  OBFUSCATION_NUMBER_KEYS,
  OBFUSCATION_TEMPLATE_KEYS,
  validateObfuscation,
} from "./obfuscation.ts";
import {
  checkArray,
  checkClientInterface,
  checkInnerInterface,
  checkInt,
  checkKeepalive,
  checkMtu,
  checkPort,
  checkWgKey,
  CLIENT_MTU_MIN,
  MTU_MAX,
  MTU_MIN,
} from "./validate.ts";

/** First line of every node-rendered interface file (U+2014 em dash). */
export const MANAGED_HEADER = "# Managed by node \u2014 edits will be overwritten.";
/** MTU when none is given (also the meaning of 0 in InnerLinkConfig.mtu). */
export const DEFAULT_MTU = 1420;
/** Client defaults of the original client (CONTRACTS.md §4.6). */
export const CLIENT_DEFAULTS = {
  dns: ["1.1.1.1"],
  allowedIps: ["0.0.0.0/0", "::/0"],
  persistentKeepalive: 25,
} as const;

/** A peer of a server interface. */
export interface AwgPeerConfig {
  publicKey: string;
  /** Omitted from the file when absent or empty. */
  presharedKey?: string;
  allowedIps?: readonly string[];
  /** `host:port`; only the inner-link exit peer has one. */
  endpoint?: string;
}

/** A node's interface file: awg0 (clients) or an inner cascade link. */
export interface AwgServerConfig {
  /** awg0-style name for the client interface, awg1 … awg999 for inner links. */
  interfaceName: string;
  /** Inner links get `Table = off` and must not be named like the client interface. */
  innerLink: boolean;
  privateKey: string;
  listenPort: number;
  /** 0 or absent = {@link DEFAULT_MTU}. */
  mtu?: number;
  obfuscation: AwgObfuscation;
  peers: readonly AwgPeerConfig[];
}

/** Options shared by the renderers. */
export interface RenderOptions {
  /** Admit {@link NEUTRAL_OBFUSCATION} (plain-WireGuard behaviour), e.g. for tests. */
  allowNeutral?: boolean;
  /** Receives what renders but will not work fully (e.g. IPv6 in a tunnel below MTU 1280). */
  onWarning?: (warning: RenderWarning) => void;
}

/** Something a rendered config allows but that will not work fully. */
export interface RenderWarning {
  code: "ipv6-mtu";
  field: string;
  message: string;
}

function keyLine(name: string, value: string | number): string {
  return `${name} = ${value}`;
}

function obfuscationLines(o: AwgObfuscation): string[] {
  const lines = OBFUSCATION_NUMBER_KEYS.map((k) => keyLine(k[0].toUpperCase() + k.slice(1), o[k]));
  for (const k of OBFUSCATION_TEMPLATE_KEYS) {
    const t = o[k];
    if (t) lines.push(keyLine(k.toUpperCase(), t));
  }
  return lines;
}

function mtuOf(value: unknown, field: string): number {
  return value === undefined || value === 0 ? DEFAULT_MTU : checkMtu(value, field);
}

function cidrList(value: unknown, field: string): string[] {
  const list = checkArray(value, field).map((c, i) => canonicalCidr(c, `${field}[${i}]`));
  const seen = new Set<string>();
  for (const [i, c] of list.entries()) {
    if (seen.has(c)) {
      throw new DataplaneError("duplicate", `${field}[${i}]`, `${c} is listed twice`);
    }
    seen.add(c);
  }
  return list;
}

function peerLines(peer: AwgPeerConfig, field: string): string[] {
  if (typeof peer !== "object" || peer === null) {
    throw new DataplaneError("bad-peer", field, "expected an object");
  }
  const lines = ["[Peer]", keyLine("PublicKey", checkWgKey(peer.publicKey, `${field}.publicKey`))];
  if (peer.presharedKey !== undefined && peer.presharedKey !== "") {
    lines.push(keyLine("PresharedKey", checkWgKey(peer.presharedKey, `${field}.presharedKey`)));
  }
  const ips = cidrList(peer.allowedIps ?? [], `${field}.allowedIps`);
  if (ips.length > 0) lines.push(keyLine("AllowedIPs", ips.join(", ")));
  if (peer.endpoint !== undefined && peer.endpoint !== "") {
    const ep = canonicalEndpoint(peer.endpoint, `${field}.endpoint`, { allowHostname: true });
    lines.push(keyLine("Endpoint", ep));
  }
  return lines;
}

function checkDistinctKeys(keys: string[], field: string): void {
  const seen = new Set<string>();
  keys.forEach((k, i) => {
    if (seen.has(k)) {
      throw new DataplaneError("duplicate", `${field}[${i}].publicKey`, "peer listed twice");
    }
    seen.add(k);
  });
}

/**
 * Renders a node's interface file exactly as CONTRACTS.md §5.2 lays it out:
 * header comment, `[Interface]` (PrivateKey, ListenPort, MTU, `Table = off`
 * for inner links only, Jc…H4, I1–I5 when set), then a blank line and a
 * `[Peer]` block per peer (PublicKey, PresharedKey if set, AllowedIPs
 * joined with ", " if any, Endpoint if set). Ends with a newline.
 */
export function renderServerConfig(config: AwgServerConfig, options: RenderOptions = {}): string {
  if (config.innerLink) checkInnerInterface(config.interfaceName, "interfaceName");
  else checkClientInterface(config.interfaceName, "interfaceName");
  const obfuscation = validateObfuscation(config.obfuscation, {
    allowNeutral: options.allowNeutral,
  });
  const lines = [
    MANAGED_HEADER,
    "[Interface]",
    keyLine("PrivateKey", checkWgKey(config.privateKey, "privateKey")),
    keyLine("ListenPort", checkPort(config.listenPort, "listenPort")),
    keyLine("MTU", mtuOf(config.mtu, "mtu")),
  ];
  if (config.innerLink) lines.push("Table = off");
  lines.push(...obfuscationLines(obfuscation));
  const peers = checkArray(config.peers, "peers", 65536) as AwgPeerConfig[];
  checkDistinctKeys(
    peers.map((p, i) => checkWgKey(p?.publicKey, `peers[${i}].publicKey`)),
    "peers",
  );
  peers.forEach((peer, i) => lines.push("", ...peerLines(peer, `peers[${i}]`)));
  return lines.join("\n") + "\n";
}

/** A device's own wg-quick style config (Amnezia `last_config`, CONTRACTS.md §6). */
export interface AwgClientConfig {
  /** Tunnel addresses with prefix, e.g. `10.8.0.2/32` (host bits allowed). */
  addresses: readonly string[];
  /** DNS server IPs; default 1.1.1.1. */
  dns?: readonly string[];
  privateKey: string;
  /** Default {@link DEFAULT_MTU}; a cascade profile passes its path MTU. */
  mtu?: number;
  obfuscation: AwgObfuscation;
  peer: {
    publicKey: string;
    presharedKey?: string;
    /** Default `0.0.0.0/0, ::/0`. */
    allowedIps?: readonly string[];
    /** `host:port` of the node. */
    endpoint: string;
    /** Seconds; default 25. */
    persistentKeepalive?: number;
  };
}

/**
 * Renders the client-side file: `[Interface]` Address, DNS, PrivateKey,
 * MTU, Jc…H4, I1–I5 if set; `[Peer]` PublicKey, PresharedKey (if set),
 * AllowedIPs, Endpoint, PersistentKeepalive.
 */
export function renderClientConfig(config: AwgClientConfig, options: RenderOptions = {}): string {
  const addresses = checkArray(config.addresses, "addresses", 16).map((a, i) =>
    canonicalCidr(a, `addresses[${i}]`, { allowHostBits: true })
  );
  if (addresses.length === 0) {
    throw new DataplaneError("missing", "addresses", "at least one tunnel address is needed");
  }
  const dns = checkArray(config.dns ?? CLIENT_DEFAULTS.dns, "dns", 16).map((d, i) =>
    formatIp(parseIp(d, `dns[${i}]`))
  );
  const obfuscation = validateObfuscation(config.obfuscation, {
    allowNeutral: options.allowNeutral,
  });
  const peer = config.peer;
  if (typeof peer !== "object" || peer === null) {
    throw new DataplaneError("bad-peer", "peer", "expected an object");
  }
  // A device's MTU may be a deep cascade's (down to 576); IPv6 then cannot pass.
  const mtu = config.mtu === undefined || config.mtu === 0
    ? DEFAULT_MTU
    : checkInt(config.mtu, "mtu", CLIENT_MTU_MIN, MTU_MAX);
  if (mtu < MTU_MIN && addresses.some((a) => a.includes(":"))) {
    options.onWarning?.({
      code: "ipv6-mtu",
      field: "mtu",
      message: `MTU ${mtu} is below ${MTU_MIN}: IPv6 cannot run in this tunnel`,
    });
  }
  const lines = [
    "[Interface]",
    keyLine("Address", addresses.join(", ")),
  ];
  if (dns.length > 0) lines.push(keyLine("DNS", dns.join(", ")));
  lines.push(
    keyLine("PrivateKey", checkWgKey(config.privateKey, "privateKey")),
    keyLine("MTU", mtu),
    ...obfuscationLines(obfuscation),
    "",
    ...peerLines({
      publicKey: peer.publicKey,
      presharedKey: peer.presharedKey,
      allowedIps: peer.allowedIps ?? CLIENT_DEFAULTS.allowedIps,
      endpoint: canonicalEndpoint(peer.endpoint, "peer.endpoint", { allowHostname: true }),
    }, "peer"),
    keyLine(
      "PersistentKeepalive",
      checkKeepalive(
        peer.persistentKeepalive ?? CLIENT_DEFAULTS.persistentKeepalive,
        "peer.persistentKeepalive",
      ),
    ),
  );
  return lines.join("\n") + "\n";
}

/** Keys only AmneziaWG understands (compared case-insensitively). */
const AWG_ONLY_KEYS = new Set<string>([...OBFUSCATION_NUMBER_KEYS, ...OBFUSCATION_TEMPLATE_KEYS]);
/** Keys wg-quick handles itself and `wg setconf` rejects. */
const WG_QUICK_KEYS = new Set([
  "address",
  "dns",
  "mtu",
  "table",
  "preup",
  "postup",
  "predown",
  "postdown",
  "saveconfig",
]);

/**
 * Removes the AmneziaWG-only lines (Jc…H4, I1–I5) from a config so plain
 * WireGuard tooling accepts it. For `"wg-setconf"` it also removes the keys
 * only wg-quick understands (Address, DNS, MTU, Table, Pre/PostUp/Down,
 * SaveConfig), like `wg-quick strip`. `"awg-setconf"` removes only those
 * wg-quick keys and keeps the AmneziaWG ones, for `awg setconf`. Comments,
 * sections and other lines are kept as they are.
 */
export function stripAwgKeys(
  text: string,
  target: "wg-quick" | "wg-setconf" | "awg-setconf",
): string {
  if (typeof text !== "string") {
    throw new DataplaneError("not-a-string", "config", "expected config text");
  }
  return text.split("\n").filter((line) => {
    const eq = line.indexOf("=");
    if (eq < 0 || line.trimStart().startsWith("#")) return true;
    const key = line.slice(0, eq).trim().toLowerCase();
    if (AWG_ONLY_KEYS.has(key) && target !== "awg-setconf") return false;
    return !(target !== "wg-quick" && WG_QUICK_KEYS.has(key));
  }).join("\n");
}
