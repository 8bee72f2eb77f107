/**
 * Export of one AmneziaWG node entry to the Amnezia client's `vpn://` format
 * (CONTRACTS.md §6): `"vpn://" + base64url_nopad(uint32_BE(len(J)) || zlib(J))`
 * — Qt's qCompress framing — where J is the Amnezia server JSON with one
 * `amnezia-awg` container whose `last_config` is a JSON document holding the
 * wg-quick style client config. Objects are written with sorted keys, as
 * Qt's QJsonObject does. Every value that lands in the config text is
 * re-validated so no line can be injected.
 */
import { x25519 } from "@noble/curves/ed25519.js";
import { fromBase64, fromBase64Url, toBase64, toBase64Url, utf8 } from "../encoding.ts";
import { PharosError } from "../errors.ts";
import { isJsonObject } from "../seal/bounded_json.ts";
import { CompressionError, deflate, inflateBounded } from "./compression.ts";
import { isCidr, isHost, isIpv4, isIpv6, joinHostPort } from "./net_syntax.ts";
import {
  type AmneziaWgProtocol,
  DEFAULT_PROFILE_MTU,
  knownProtocols,
  PROFILE_MTU_MAX,
  PROFILE_MTU_MIN,
  type ProfileNode,
} from "./schema.ts";

/** Stable codes of {@link AmneziaVpnError}. */
export type AmneziaVpnErrorCode =
  | "no-amneziawg"
  | "no-endpoint"
  | "unsafe-value"
  | "not-vpn-link"
  | "too-large"
  | "corrupt";

/** Error of the `vpn://` exporter and decoder. */
export class AmneziaVpnError extends PharosError {
  declare readonly code: AmneziaVpnErrorCode;
  constructor(code: AmneziaVpnErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** Container name of AmneziaWG in the Amnezia client. */
export const AMNEZIA_AWG_CONTAINER = "amnezia-awg";
/** Upper bound of a `vpn://` link, checked before decoding. */
export const MAX_VPN_LINK_CHARS = 64 * 1024;
/** Upper bound of the inflated JSON of a `vpn://` link. */
export const MAX_VPN_JSON_BYTES = 256 * 1024;
const DEFAULT_DNS = ["1.1.1.1", "1.0.0.1"] as const;
const KEEPALIVE = 25;

/** Options of {@link exportAmneziaVpn}. */
export interface AmneziaExportOptions {
  /** Server name shown by the app; default the node's name, else its id. */
  description?: string;
  /** Primary and secondary DNS; default 1.1.1.1, 1.0.0.1. */
  dns?: readonly [string, string];
  /**
   * Endpoint to dial. Default: the first pool entry with the original
   * client's port rule (`port_min ≤ 0` → 443), else the first node IP at 443.
   */
  endpoint?: { host: string; port: number };
  /**
   * Tunnel MTU; pass the profile's `mtu` (0 / absent = 1420). Like the
   * profile reader it admits 576–65535; below 1280 IPv6 cannot run in the
   * tunnel (the original controller's 3- and 4-hop cascades use 1260 and 1180).
   */
  mtu?: number;
}

/** What {@link decodeAmneziaVpn} returns. */
export interface AmneziaVpnImport {
  /** The server JSON J. */
  config: Record<string, unknown>;
  /** The parsed `last_config` document of the AWG container. */
  lastConfig: Record<string, unknown>;
  /** The wg-quick style text (`lastConfig.config`). */
  configText: string;
}

/** The node's first `amneziawg` v2 entry, or `no-amneziawg`. */
function awgOf(node: ProfileNode): AmneziaWgProtocol {
  const awg = knownProtocols(node).find((p): p is AmneziaWgProtocol => p.type === "amneziawg");
  if (!awg) {
    throw new AmneziaVpnError("no-amneziawg", `node "${node.id}" has no amneziawg v2 entry`);
  }
  return awg;
}

/** The wg-quick style client config text for one node (what `last_config.config` holds). */
export function amneziaConfigText(node: ProfileNode, opts: AmneziaExportOptions = {}): string {
  return render(node, opts).text;
}

/** Builds the `vpn://` link for the node's AmneziaWG entry. */
export async function exportAmneziaVpn(
  node: ProfileNode,
  opts: AmneziaExportOptions = {},
): Promise<string> {
  const r = render(node, opts);
  const p = r.awg.params;
  const o = p.obfuscation;
  const obf: Record<string, string> = {
    Jc: `${o.jc}`,
    Jmin: `${o.jmin}`,
    Jmax: `${o.jmax}`,
    S1: `${o.s1}`,
    S2: `${o.s2}`,
    S3: `${o.s3}`,
    S4: `${o.s4}`,
    H1: `${o.h1}`,
    H2: `${o.h2}`,
    H3: `${o.h3}`,
    H4: `${o.h4}`,
  };
  for (const k of ["i1", "i2", "i3", "i4", "i5"] as const) {
    if (o[k]) obf[k.toUpperCase()] = o[k]!;
  }
  const lastConfig = {
    ...obf,
    allowed_ips: r.allowedIps,
    client_ip: p.address.split("/")[0],
    client_priv_key: p.private_key,
    client_pub_key: toBase64(x25519.getPublicKey(fromBase64(p.private_key, "private_key", 32))),
    config: r.text,
    hostName: r.host,
    mtu: `${r.mtu}`,
    port: r.port,
    psk_key: p.preshared_key ?? "",
    server_pub_key: p.public_key,
  };
  const config = {
    containers: [{
      awg: {
        ...obf,
        last_config: qtJson(lastConfig, 4) + "\n",
        port: `${r.port}`,
        transport_proto: "udp",
      },
      container: AMNEZIA_AWG_CONTAINER,
    }],
    defaultContainer: AMNEZIA_AWG_CONTAINER,
    description: opts.description ?? node.name ?? node.id,
    dns1: r.dns[0],
    dns2: r.dns[1],
    hostName: r.host,
  };
  const json = utf8.encode(qtJson(config));
  const z = await deflate(json, "deflate");
  const out = new Uint8Array(4 + z.length);
  new DataView(out.buffer).setUint32(0, json.length);
  out.set(z, 4);
  return "vpn://" + toBase64Url(out);
}

/** Decodes a `vpn://` link (bounded) back to its JSON and config text. */
export async function decodeAmneziaVpn(link: string): Promise<AmneziaVpnImport> {
  if (typeof link !== "string" || !link.startsWith("vpn://")) {
    throw new AmneziaVpnError("not-vpn-link", 'an Amnezia link starts with "vpn://"');
  }
  if (link.length > MAX_VPN_LINK_CHARS) {
    throw new AmneziaVpnError(
      "too-large",
      `vpn:// link longer than ${MAX_VPN_LINK_CHARS} characters`,
    );
  }
  let bytes: Uint8Array;
  try {
    bytes = fromBase64Url(link.slice(6).replace(/=+$/, ""), "vpn:// payload");
  } catch (e) {
    throw new AmneziaVpnError("corrupt", (e as Error).message, { cause: e });
  }
  if (bytes.length < 4) {
    throw new AmneziaVpnError("corrupt", "vpn:// payload shorter than its length header");
  }
  const declared = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0);
  if (declared > MAX_VPN_JSON_BYTES) {
    throw new AmneziaVpnError(
      "too-large",
      `vpn:// payload declares ${declared} bytes (limit ${MAX_VPN_JSON_BYTES})`,
    );
  }
  let json: Uint8Array;
  try {
    json = await inflateBounded(bytes.subarray(4), "deflate", declared);
  } catch (e) {
    const code = e instanceof CompressionError && e.code === "inflate-too-large"
      ? "too-large"
      : "corrupt";
    throw new AmneziaVpnError(code, (e as Error).message, { cause: e });
  }
  if (json.length !== declared) {
    throw new AmneziaVpnError(
      "corrupt",
      `vpn:// payload inflates to ${json.length} bytes, header says ${declared}`,
    );
  }
  const config = parseObject(json, "vpn:// JSON");
  const containers = Array.isArray(config.containers) ? config.containers : [];
  const awg = containers.find((c) => isJsonObject(c) && c.container === AMNEZIA_AWG_CONTAINER);
  const last = isJsonObject(awg) && isJsonObject(awg.awg) ? awg.awg.last_config : undefined;
  if (typeof last !== "string") {
    throw new AmneziaVpnError(
      "no-amneziawg",
      "vpn:// JSON has no amnezia-awg container with last_config",
    );
  }
  const lastConfig = parseObject(utf8.encode(last), "last_config");
  if (typeof lastConfig.config !== "string") {
    throw new AmneziaVpnError("corrupt", "last_config has no config text");
  }
  return { config, lastConfig, configText: lastConfig.config };
}

interface Rendered {
  awg: AmneziaWgProtocol;
  text: string;
  host: string;
  port: number;
  mtu: number;
  dns: readonly [string, string];
  allowedIps: string[];
}

function render(node: ProfileNode, opts: AmneziaExportOptions): Rendered {
  const awg = awgOf(node);
  const p = awg.params;
  const o = p.obfuscation;
  const pool = p.endpoints?.[0];
  const endpoint = opts.endpoint ??
    (pool
      ? { host: pool.ip, port: pool.port_min <= 0 ? 443 : pool.port_min }
      : node.endpoints[0] !== undefined
      ? { host: node.endpoints[0], port: 443 }
      : undefined);
  if (!endpoint) throw new AmneziaVpnError("no-endpoint", `node "${node.id}" has no endpoint`);
  const dns = opts.dns ?? DEFAULT_DNS;
  const mtu = opts.mtu && opts.mtu > 0 ? opts.mtu : DEFAULT_PROFILE_MTU;
  const allowedIps = p.allowed_ips?.length ? p.allowed_ips : ["0.0.0.0/0", "::/0"];

  check("address", p.address, isCidr(p.address));
  check("private_key", p.private_key, isKey(p.private_key));
  check("public_key", p.public_key, isKey(p.public_key));
  if (p.preshared_key) check("preshared_key", p.preshared_key, isKey(p.preshared_key));
  for (const a of allowedIps) check("allowed_ips", a, isCidr(a));
  for (const d of dns) check("dns", d, isIpv4(d) || isIpv6(d));
  check("endpoint host", endpoint.host, isHost(endpoint.host));
  check(
    "endpoint port",
    `${endpoint.port}`,
    Number.isInteger(endpoint.port) && endpoint.port >= 1 && endpoint.port <= 65535,
  );
  check(
    "mtu",
    `${mtu}`,
    Number.isInteger(mtu) && mtu >= PROFILE_MTU_MIN && mtu <= PROFILE_MTU_MAX,
  );

  const lines = [
    "[Interface]",
    `Address = ${p.address}`,
    `DNS = ${dns[0]}, ${dns[1]}`,
    `PrivateKey = ${p.private_key}`,
    `MTU = ${mtu}`,
  ];
  for (const k of ["jc", "jmin", "jmax", "s1", "s2", "s3", "s4", "h1", "h2", "h3", "h4"] as const) {
    check(k, `${o[k]}`, Number.isInteger(o[k]) && o[k] >= 0 && o[k] <= 0xffffffff);
    lines.push(`${k[0].toUpperCase()}${k.slice(1)} = ${o[k]}`);
  }
  for (const k of ["i1", "i2", "i3", "i4", "i5"] as const) {
    const t = o[k];
    if (!t) continue;
    // deno-lint-ignore no-control-regex
    check(k, t, !/[\u0000-\u001f\u007f]/.test(t));
    lines.push(`${k.toUpperCase()} = ${t}`);
  }
  lines.push("", "[Peer]", `PublicKey = ${p.public_key}`);
  if (p.preshared_key) lines.push(`PresharedKey = ${p.preshared_key}`);
  lines.push(
    `AllowedIPs = ${allowedIps.join(", ")}`,
    `Endpoint = ${joinHostPort(endpoint.host, endpoint.port)}`,
    `PersistentKeepalive = ${KEEPALIVE}`,
  );
  return {
    awg,
    text: lines.join("\n") + "\n",
    host: endpoint.host,
    port: endpoint.port,
    mtu,
    dns,
    allowedIps,
  };
}

function isKey(s: string): boolean {
  try {
    fromBase64(s, "key", 32);
    return true;
  } catch {
    return false;
  }
}

function check(field: string, value: string, ok: boolean): void {
  if (!ok) {
    throw new AmneziaVpnError(
      "unsafe-value",
      `${field} ${JSON.stringify(String(value).slice(0, 60))} is not valid for an AmneziaWG config`,
    );
  }
}

function parseObject(bytes: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch (e) {
    throw new AmneziaVpnError("corrupt", `${what} is not JSON: ${(e as Error).message}`);
  }
  if (!isJsonObject(value)) throw new AmneziaVpnError("corrupt", `${what} is not a JSON object`);
  return value;
}

/** JSON with object keys sorted at every level, as Qt's QJsonDocument writes it. */
function qtJson(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    (_k, v) =>
      isJsonObject(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v,
    indent,
  );
}
