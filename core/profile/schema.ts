/**
 * The decrypted profile payload of CONTRACTS.md §4.6 (the `profiles[]`
 * layout the original client reads): typed reader with field-path errors and
 * a writer in the controller's field order.
 *
 * Forward compatibility: unknown fields are kept in each object's `extra`
 * and written back; protocol entries of unknown `type` (or an unknown `v` of
 * a known type) are kept verbatim as {@link OpaqueProtocol} and skipped by
 * {@link knownProtocols}. Nothing unknown is ever rejected.
 */
import {
  type AwgObfuscation,
  OBFUSCATION_NUMBER_KEYS,
  OBFUSCATION_TEMPLATE_KEYS,
} from "../dataplane/obfuscation.ts";
import { fromBase64, fromBase64Url } from "../encoding.ts";
import { isJsonObject, parseBoundedJson } from "../seal/bounded_json.ts";
import { ProfileError, ProfileFieldError } from "./errors.ts";
import {
  boolean,
  type Codec,
  decimal,
  type Field,
  goJson,
  integer,
  jsonValue,
  keyPath,
  list,
  oneOf,
  record,
  text,
  type WithExtra,
} from "./fields.ts";
import { isCidr, isHost } from "./net_syntax.ts";

/** Upper bound of a profile payload in bytes, checked before parsing. */
export const MAX_PROFILE_BYTES = 4 * 1024 * 1024;
const UINT32_MAX = 0xffffffff;

/** A UDP/TCP endpoint pool entry: one IP and a port range. */
export interface EndpointPool extends WithExtra {
  ip: string;
  /** ≤ 0 means 443 for the original client. */
  port_min: number;
  /** ≤ port_min means port_min for the original client. */
  port_max: number;
}

/** Endpoint rotation policy: re-pick every interval ± jitter. */
export interface Rotation extends WithExtra {
  enabled: boolean;
  interval_seconds: number;
  jitter_seconds: number;
}

/** A node's AmneziaWG obfuscation set (must equal the node's exactly). */
export interface Obfuscation extends AwgObfuscation, WithExtra {}

/** `amneziawg` v2 params. */
export interface AmneziaWgParams extends WithExtra {
  /** Device WireGuard private key, std base64 of 32 bytes. */
  private_key: string;
  /** Tunnel address, e.g. `10.7.0.3/32`. */
  address: string;
  /** Node WireGuard public key, std base64. */
  public_key: string;
  /** Per device×node preshared key, std base64 of 32 bytes. */
  preshared_key?: string;
  endpoints?: EndpointPool[];
  rotation?: Rotation;
  allowed_ips?: string[];
  obfuscation: Obfuscation;
}

/** `xray-reality` v1 params. */
export interface XrayRealityParams extends WithExtra {
  uuid: string;
  flow?: string;
  address?: string;
  /** Node REALITY public key, base64url without padding. */
  public_key: string;
  server_name: string;
  short_id?: string;
  fingerprint?: string;
  endpoints?: EndpointPool[];
  allowed_ips?: string[];
}

/** A typed `{"type":"amneziawg","v":2,"params":{…}}` entry. */
export interface AmneziaWgProtocol extends WithExtra {
  type: "amneziawg";
  v: 2;
  params: AmneziaWgParams;
}

/** A typed `{"type":"xray-reality","v":1,"params":{…}}` entry. */
export interface XrayRealityProtocol extends WithExtra {
  type: "xray-reality";
  v: 1;
  params: XrayRealityParams;
}

/** A protocol entry this reader does not know, kept verbatim. */
export interface OpaqueProtocol {
  opaque: Record<string, unknown>;
}

/** A protocol entry this reader understands. */
export type KnownProtocol = AmneziaWgProtocol | XrayRealityProtocol;
/** One entry of a node's `protocols[]`; tell them apart with `"opaque" in entry`. */
export type ProtocolEntry = KnownProtocol | OpaqueProtocol;

/** One node of a profile. */
export interface ProfileNode extends WithExtra {
  id: string;
  name?: string;
  region?: string;
  /** Bare IPs (flat pool); always an array. */
  endpoints: string[];
  protocols: ProtocolEntry[];
}

/** One hop of a cascade path (display). */
export interface CascadeHop extends WithExtra {
  id: string;
  name?: string;
  region?: string;
  role: "entry" | "mid" | "exit";
  ips: string[];
}

/** Optional cascade path of a profile (display; the client dials `entry`). */
export interface CascadePath extends WithExtra {
  name?: string;
  hops: CascadeHop[];
}

/** One selectable profile. */
export interface ProfileEntry extends WithExtra {
  id: string;
  name?: string;
  /** `amneziawg` | `xray-reality` | `both` (other values kept as given). */
  protocol?: string;
  nodes: ProfileNode[];
  path?: CascadePath;
  /** 0 / absent = client default 1420. */
  mtu?: number;
}

/** Optional controller location shown by clients. */
export interface ControlInfo extends WithExtra {
  label?: string;
  city?: string;
  lat?: number;
  lon?: number;
}

/** The whole decrypted payload. */
export interface ProfileDocument extends WithExtra {
  fleet_id: string;
  user: string;
  revision: number;
  /** RFC 3339. */
  issued_at?: string;
  /** RFC 3339; the original leaves `0001-01-01T00:00:00Z`. */
  expires_at?: string;
  profiles: ProfileEntry[];
  control?: ControlInfo;
}

const id = text({ nonEmpty: true, max: 128 });
const label = text({ max: 256 });
const host = text({
  max: 253,
  check: (s) => (isHost(s) ? undefined : "must be an IP address or host name"),
});
const cidr = text({
  max: 64,
  check: (s) => (isCidr(s) ? undefined : "must be a CIDR like 10.0.0.2/32"),
});
const rfc3339 = text({
  max: 40,
  check: (s) =>
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/.test(s)
      ? undefined
      : "must be an RFC 3339 time",
});
const wgKey = text({ max: 44, check: (s) => decodes(() => fromBase64(s, "key", 32)) });
const realityKey = text({ max: 43, check: (s) => decodes(() => fromBase64Url(s, "key", 32)) });
const uint32 = integer(0, UINT32_MAX);
const port = integer(0, 65535);
const template = text({ max: 4096 });

function decodes(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch {
    return "must be base64 of a 32-byte key";
  }
}

const f = (key: string, codec: Codec<unknown>, optional = false, omitEmpty = false): Field => ({
  key,
  codec,
  optional,
  omitEmpty,
});

const endpointPool = record<EndpointPool>([
  f("ip", host),
  f("port_min", port),
  f("port_max", port),
]);

const rotation = record<Rotation>([
  f("enabled", boolean),
  f("interval_seconds", integer(0, 31_536_000)),
  f("jitter_seconds", integer(0, 31_536_000)),
]);

const obfuscation = record<Obfuscation>([
  ...OBFUSCATION_NUMBER_KEYS.map((k) => f(k, uint32)),
  ...OBFUSCATION_TEMPLATE_KEYS.map((k) => f(k, template, true, true)),
]);

const awgParams = record<AmneziaWgParams>([
  f("private_key", wgKey),
  f("address", cidr),
  f("public_key", wgKey),
  f("preshared_key", wgKey, true),
  f("endpoints", list(endpointPool, 64), true),
  f("rotation", rotation, true),
  f("allowed_ips", list(cidr, 64), true),
  f("obfuscation", obfuscation),
]);

const xrayParams = record<XrayRealityParams>([
  f(
    "uuid",
    text({
      max: 36,
      check: (s) =>
        /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s)
          ? undefined
          : "must be a UUID",
    }),
  ),
  f("flow", label, true),
  f("address", label, true),
  f("public_key", realityKey),
  f("server_name", text({ nonEmpty: true, max: 253 })),
  f(
    "short_id",
    text({ max: 16, check: (s) => (/^(?:[0-9a-f]{2})*$/i.test(s) ? undefined : "must be hex") }),
    true,
  ),
  f("fingerprint", label, true),
  f("endpoints", list(endpointPool, 64), true),
  f("allowed_ips", list(cidr, 64), true),
]);

const awgEntry = record<AmneziaWgProtocol>([
  f("type", oneOf("amneziawg")),
  f("v", oneOf(2)),
  f("params", awgParams),
]);
const xrayEntry = record<XrayRealityProtocol>([
  f("type", oneOf("xray-reality")),
  f("v", oneOf(1)),
  f("params", xrayParams),
]);

/** Tagged, versioned protocol entry; unknown type or version → opaque. */
const protocolEntry: Codec<ProtocolEntry> = {
  read(value, path) {
    if (!isJsonObject(value)) {
      throw new ProfileFieldError(path, "protocol entry must be an object");
    }
    if (typeof value.type !== "string" || value.type === "") {
      throw new ProfileFieldError(keyPath(path, "type"), "must be a non-empty string");
    }
    if (value.type === "amneziawg" && value.v === 2) return awgEntry.read(value, path);
    if (value.type === "xray-reality" && value.v === 1) return xrayEntry.read(value, path);
    return { opaque: jsonValue(value, path) as Record<string, unknown> };
  },
  write(entry) {
    if ("opaque" in entry) return entry.opaque;
    return entry.type === "amneziawg" ? awgEntry.write(entry) : xrayEntry.write(entry);
  },
};

const node = record<ProfileNode>([
  f("id", id),
  f("name", label, true),
  f("region", label, true),
  f("endpoints", list(host, 64)),
  f("protocols", list(protocolEntry, 16)),
]);

const hop = record<CascadeHop>([
  f("id", id),
  f("name", label, true),
  f("region", label, true),
  f("role", oneOf("entry", "mid", "exit")),
  f("ips", list(host, 64)),
]);

const path = record<CascadePath>([f("name", label, true), f("hops", list(hop, 8))]);

const mtu: Codec<number> = {
  read(value, p) {
    const n = integer(0, 65535).read(value, p);
    if (n !== 0 && n < 1280) throw new ProfileFieldError(p, "must be 0 (default) or at least 1280");
    return n;
  },
  write: (n) => n,
};

const profile = record<ProfileEntry>([
  f("id", id),
  f("name", label, true),
  f("protocol", label, true),
  f("nodes", list(node, 256)),
  f("path", path, true),
  f("mtu", mtu, true),
]);

const control = record<ControlInfo>([
  f("label", label, true),
  f("city", label, true),
  f("lat", decimal(-90, 90), true),
  f("lon", decimal(-180, 180), true),
]);

const documentCodec = record<ProfileDocument>([
  f("fleet_id", text({ max: 128 })),
  f("user", text({ max: 128 })),
  f("revision", integer(0, Number.MAX_SAFE_INTEGER)),
  f("issued_at", rfc3339, true),
  f("expires_at", rfc3339, true),
  f("profiles", list(profile, 64)),
  f("control", control, true),
]);

/**
 * Validates a parsed payload. Errors are {@link ProfileFieldError}s whose
 * `path` names the field, e.g. `profiles[0].nodes[1].endpoints`.
 */
export function parseProfileDocument(value: unknown): ProfileDocument {
  return documentCodec.read(value, "");
}

/** Parses payload JSON text or UTF-8 bytes (bounded) and validates it. */
export function decodeProfileDocument(input: string | Uint8Array): ProfileDocument {
  const value = parseBoundedJson(input, MAX_PROFILE_BYTES, (reason, detail) =>
    new ProfileError(
      reason === "too-large" ? "input-too-large" : "not-json",
      `profile payload: ${detail}`,
    ));
  return parseProfileDocument(value);
}

/** The payload as an ordered JSON object (controller field order, extras last). */
export function profileDocumentToJson(doc: ProfileDocument): Record<string, unknown> {
  return documentCodec.write(doc) as Record<string, unknown>;
}

/** Compact payload JSON as the controller writes it (what gets sealed). */
export function encodeProfileDocument(doc: ProfileDocument): string {
  return goJson(profileDocumentToJson(doc));
}

/** The node's protocol entries this reader understands, in order. */
export function knownProtocols(node: ProfileNode): KnownProtocol[] {
  return node.protocols.filter((p): p is KnownProtocol => !("opaque" in p));
}
