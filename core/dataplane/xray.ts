/**
 * Xray VLESS + REALITY (CONTRACTS.md §5.4): the REALITY X25519 keypair, the
 * node's server config and a device's client config, as JSON text.
 *
 * Departures from the originals, per §7.12: the server routes every private,
 * loopback, link-local and CGNAT destination (the node's LAN, the cloud
 * metadata service) to a blackhole outbound, and resolves names first so a
 * domain pointing there is caught too; the access log is off. The client's
 * local SOCKS inbound requires a user name and password.
 */
import { x25519 } from "@noble/curves/ed25519.js";
import { fromBase64Url, toBase64Url } from "../encoding.ts";
import { DataplaneError } from "./errors.ts";
import {
  canonicalHost,
  formatEndpoint,
  NON_PUBLIC_DESTINATIONS,
  parseEndpoint,
  parseHostname,
} from "./ip.ts";
import { checkArray, checkPort } from "./validate.ts";

/** The only VLESS flow besides none. */
export const VISION_FLOW = "xtls-rprx-vision";
/** uTLS fingerprints Xray accepts for REALITY clients. */
export const FINGERPRINTS = [
  "chrome",
  "firefox",
  "safari",
  "ios",
  "android",
  "edge",
  "360",
  "qq",
  "random",
  "randomized",
] as const;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SHORT_ID = /^(?:[0-9a-f]{2}){0,8}$/;
const SOCKS_CREDENTIAL = /^[A-Za-z0-9._~-]{8,128}$/;

/** A REALITY keypair, both halves base64url without padding. */
export interface RealityKeyPair {
  privateKey: string;
  publicKey: string;
}

function clamp(scalar: Uint8Array): Uint8Array {
  const k = scalar.slice();
  k[0] &= 248;
  k[31] &= 127;
  k[31] |= 64;
  return k;
}

/** Generates a REALITY keypair: 32 random bytes, clamped, and its X25519 public key. */
export function generateRealityKeyPair(): RealityKeyPair {
  const privateKey = clamp(crypto.getRandomValues(new Uint8Array(32)));
  return {
    privateKey: toBase64Url(privateKey),
    publicKey: toBase64Url(x25519.getPublicKey(privateKey)),
  };
}

function realityKeyBytes(value: unknown, field: string): Uint8Array {
  if (typeof value !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(value)) {
    throw new DataplaneError("bad-key", field, "expected base64url (no padding) of 32 bytes");
  }
  return fromBase64Url(value, field, 32);
}

/** The public key belonging to a REALITY private key (both base64url, no padding). */
export function realityPublicKey(privateKey: string): string {
  return toBase64Url(x25519.getPublicKey(realityKeyBytes(privateKey, "privateKey")));
}

function checkUuid(value: unknown, field: string): string {
  if (typeof value !== "string" || !UUID.test(value.toLowerCase())) {
    throw new DataplaneError("bad-uuid", field, `${JSON.stringify(value)} is not a UUID`);
  }
  return value.toLowerCase();
}

function checkFlow(value: unknown, field: string): string {
  if (value === undefined || value === "") return "";
  if (value !== VISION_FLOW) {
    throw new DataplaneError("bad-flow", field, `must be empty or ${VISION_FLOW}`);
  }
  return value;
}

function checkShortId(value: unknown, field: string): string {
  if (typeof value !== "string" || !SHORT_ID.test(value)) {
    throw new DataplaneError(
      "bad-short-id",
      field,
      "expected 0-16 lowercase hex digits, even in number",
    );
  }
  return value;
}

/** A VLESS client the server admits. */
export interface XrayClient {
  /** VLESS UUID. */
  id: string;
  /** Empty/absent or `xtls-rprx-vision`. */
  flow?: string;
}

/** Server-side inputs (the node's XRayRealityConfig plus its key). */
export interface XrayServerConfig {
  /** TCP listen port. */
  port: number;
  /** The node's REALITY private key, base64url. */
  privateKey: string;
  /** Decoy `host:port`, e.g. `www.microsoft.com:443`. */
  dest: string;
  /** SNI values admitted; must include the decoy host when it is a name. */
  serverNames: readonly string[];
  /** Hex short ids; `""` admits an empty one. */
  shortIds: readonly string[];
  clients: readonly XrayClient[];
  /**
   * The agent's live-change API: when given, the inbound is tagged
   * {@link XRAY_INBOUND_TAG}, every client carries its id as `email` (the
   * handle Xray removes users by) and Xray's gRPC HandlerService listens on
   * 127.0.0.1:`port` (plaintext, loopback only).
   */
  api?: { port: number };
}

/** Tag of the VLESS inbound when the API is on (AlterInbound names it). */
export const XRAY_INBOUND_TAG = "vless-in";

/**
 * Renders the node's Xray config: one VLESS inbound with REALITY, a
 * `freedom` outbound and a blackhole for {@link NON_PUBLIC_DESTINATIONS}.
 */
export function renderXrayServerConfig(config: XrayServerConfig): string {
  const port = checkPort(config.port, "port");
  const privateKey = toBase64Url(realityKeyBytes(config.privateKey, "privateKey"));
  const destEp = parseEndpoint(config.dest, "dest", { allowHostname: true });
  const dest = formatEndpoint(destEp);
  const serverNames = checkArray(config.serverNames, "serverNames", 64).map((n, i) =>
    parseHostname(n, `serverNames[${i}]`)
  );
  if (destEp.host.kind === "name" && !serverNames.includes(destEp.host.name)) {
    throw new DataplaneError(
      "bad-server-names",
      "serverNames",
      `must include the decoy host ${destEp.host.name}`,
    );
  }
  if (serverNames.length === 0) {
    throw new DataplaneError("bad-server-names", "serverNames", "at least one name is needed");
  }
  const shortIds = checkArray(config.shortIds, "shortIds", 64).map((s, i) =>
    checkShortId(s, `shortIds[${i}]`)
  );
  if (shortIds.length === 0) {
    throw new DataplaneError("bad-short-id", "shortIds", "at least one short id is needed");
  }
  const seen = new Set<string>();
  const clients = checkArray(config.clients, "clients", 65536).map((c, i) => {
    const client = c as XrayClient;
    if (typeof client !== "object" || client === null) {
      throw new DataplaneError("bad-client", `clients[${i}]`, "expected an object");
    }
    const id = checkUuid(client.id, `clients[${i}].id`);
    if (seen.has(id)) throw new DataplaneError("duplicate", `clients[${i}].id`, "listed twice");
    seen.add(id);
    const flow = checkFlow(client.flow, `clients[${i}].flow`);
    const entry: Record<string, string> = flow ? { id, flow } : { id };
    if (config.api !== undefined) entry.email = id;
    return entry;
  });
  const api = config.api === undefined ? undefined : {
    tag: "api",
    listen: `127.0.0.1:${checkPort(config.api?.port, "api.port")}`,
    services: ["HandlerService"],
  };
  if (api && api.listen === `127.0.0.1:${port}`) {
    throw new DataplaneError("bad-port", "api.port", "must differ from the VLESS port");
  }
  const doc = {
    log: { access: "none", loglevel: "warning" },
    ...(api ? { api } : {}),
    inbounds: [{
      ...(api ? { tag: XRAY_INBOUND_TAG } : {}),
      port,
      protocol: "vless",
      settings: { clients, decryption: "none" },
      streamSettings: {
        network: "tcp",
        security: "reality",
        realitySettings: { dest, serverNames, privateKey, shortIds },
      },
    }],
    outbounds: [
      { protocol: "freedom", tag: "direct" },
      { protocol: "blackhole", tag: "blocked" },
    ],
    routing: {
      domainStrategy: "IPOnDemand",
      rules: [{ type: "field", ip: [...NON_PUBLIC_DESTINATIONS], outboundTag: "blocked" }],
    },
  };
  return JSON.stringify(doc, null, 2) + "\n";
}

/** Client-side inputs (one xray-reality protocol entry of a profile). */
export interface XrayClientConfig {
  /** Node address, IP or host name. */
  address: string;
  port: number;
  uuid: string;
  flow?: string;
  /** SNI to present (the decoy host). */
  serverName: string;
  /** Default `chrome`. */
  fingerprint?: string;
  /** The node's REALITY public key, base64url. */
  publicKey: string;
  shortId: string;
  /** Local SOCKS listener on 127.0.0.1 and its credentials. */
  socks: { port: number; user: string; pass: string };
}

/**
 * Renders a device's Xray config: an authenticated SOCKS inbound on
 * 127.0.0.1 (UDP on) and a VLESS + REALITY outbound to the node.
 */
export function renderXrayClientConfig(config: XrayClientConfig): string {
  const address = canonicalHost(config.address, "address");
  const fingerprint = config.fingerprint ?? "chrome";
  if (!(FINGERPRINTS as readonly string[]).includes(fingerprint)) {
    throw new DataplaneError(
      "bad-fingerprint",
      "fingerprint",
      `must be one of ${FINGERPRINTS.join(", ")}`,
    );
  }
  const socks = config.socks;
  if (typeof socks !== "object" || socks === null) {
    throw new DataplaneError("bad-socks", "socks", "expected {port, user, pass}");
  }
  for (const k of ["user", "pass"] as const) {
    if (typeof socks[k] !== "string" || !SOCKS_CREDENTIAL.test(socks[k])) {
      throw new DataplaneError("bad-socks", `socks.${k}`, "8-128 characters of [A-Za-z0-9._~-]");
    }
  }
  const flow = checkFlow(config.flow, "flow");
  const doc = {
    log: { loglevel: "warning" },
    inbounds: [{
      listen: "127.0.0.1",
      port: checkPort(socks.port, "socks.port"),
      protocol: "socks",
      settings: { auth: "password", accounts: [{ user: socks.user, pass: socks.pass }], udp: true },
    }],
    outbounds: [{
      protocol: "vless",
      settings: {
        vnext: [{
          address,
          port: checkPort(config.port, "port"),
          users: [{ id: checkUuid(config.uuid, "uuid"), flow, encryption: "none" }],
        }],
      },
      streamSettings: {
        network: "tcp",
        security: "reality",
        realitySettings: {
          serverName: parseHostname(config.serverName, "serverName"),
          fingerprint,
          publicKey: toBase64Url(realityKeyBytes(config.publicKey, "publicKey")),
          shortId: checkShortId(config.shortId, "shortId"),
          spiderX: "/",
        },
      },
    }],
  };
  return JSON.stringify(doc, null, 2) + "\n";
}
