/**
 * The decrypted profile payload of CONTRACTS.md §4.6 (the `profiles[]`
 * layout the original client reads): typed readers with field-path errors and
 * a writer in the controller's field order.
 *
 * Two readers:
 * - {@link readProfileDocument} / {@link readProfilePayload} (what a client
 *   uses): one unusable `profiles[]` entry — a bad field, or no node with a
 *   protocol this reader supports — is left out and reported in `skipped`;
 *   the other entries are kept. Only document-level problems throw (see
 *   there).
 * - {@link parseProfileDocument} / {@link decodeProfileDocument} (strict, for
 *   writers, the offline QR and tests): every entry must be usable, else the
 *   first problem is thrown.
 *
 * Go compatibility: `null` reads as an empty list for every list field (Go
 * writes nil slices as `null`) and as "absent" for every optional field.
 *
 * Forward compatibility: unknown fields are kept in each object's `extra`
 * and written back; protocol entries of unknown `type` (or an unknown `v` of
 * a known type) are kept verbatim as {@link OpaqueProtocol} and skipped by
 * {@link knownProtocols}. Unknown things are never an error by themselves; a
 * profile whose nodes offer only unknown protocols is skipped as unusable.
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
/** Most `profiles[]` entries in one document (more is a document-level error). */
export const MAX_PROFILES = 64;
/** MTU a client uses when a profile's `mtu` is 0 or absent. */
export const DEFAULT_PROFILE_MTU = 1420;
/**
 * Smallest non-zero profile `mtu` accepted: the IPv4 minimum datagram size,
 * and the floor of the original controller's cascade MTU
 * (1420 − 80 × (hops − 1)). Below 1280 IPv6 cannot run in the tunnel.
 */
export const PROFILE_MTU_MIN = 576;
/** Largest profile `mtu` accepted. */
export const PROFILE_MTU_MAX = 65535;
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
  /** Per device×node preshared key, std base64 of 32 bytes; "" = none. */
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
  /**
   * 0 / absent = client default {@link DEFAULT_PROFILE_MTU}; otherwise
   * {@link PROFILE_MTU_MIN}–{@link PROFILE_MTU_MAX}. The original controller
   * writes 1420 − 80 × (hops − 1) for cascades (1260 for 3 hops, 1180 for 4).
   */
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
  /** The usable entries, in input order (a reader leaves unusable ones out). */
  profiles: ProfileEntry[];
  control?: ControlInfo;
}

/** Why a `profiles[]` entry was left out: the codes of {@link ProfileFieldError}. */
export type ProfileSkipCode = "invalid-field" | "no-usable-node";

/** A `profiles[]` entry the reader left out, and why. */
export interface SkippedProfile {
  /** Position of the entry in the input `profiles[]`. */
  index: number;
  /** The entry's `id`, when it is a displayable string. */
  id?: string;
  /** The entry's `name`, when it is a displayable string. */
  name?: string;
  /**
   * The field the problem is in, e.g. `profiles[2].mtu`, or
   * `profiles[2].nodes` for `no-usable-node`.
   */
  path: string;
  /** `invalid-field`: a field is missing or has a bad value; `no-usable-node`: nothing to dial. */
  code: ProfileSkipCode;
  /**
   * Human-readable, starting with `path`, e.g.
   * `profiles[2].mtu: must be 0 (default 1420) or an integer in 576-65535, got 500`.
   */
  reason: string;
}

/** What {@link readProfileDocument} returns. */
export interface ProfileReadResult {
  /** The document with only the usable `profiles[]` entries, in input order. */
  document: ProfileDocument;
  /** Entries left out, in input order; empty when every entry was usable. */
  skipped: SkippedProfile[];
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
/** A key, or "" for none (Go writes an unset string as ""). */
const optionalWgKey = text({
  max: 44,
  check: (s) => (s === "" ? undefined : decodes(() => fromBase64(s, "key", 32))),
});
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
  f("preshared_key", optionalWgKey, true),
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

const path = record<CascadePath>([f("name", label, true), f("hops", list(hop, 16))]);

const mtu: Codec<number> = {
  read(value, p) {
    if (
      typeof value !== "number" || !Number.isInteger(value) ||
      (value !== 0 && (value < PROFILE_MTU_MIN || value > PROFILE_MTU_MAX))
    ) {
      throw new ProfileFieldError(
        p,
        `must be 0 (default ${DEFAULT_PROFILE_MTU}) or an integer in ${PROFILE_MTU_MIN}-${PROFILE_MTU_MAX}, got ${
          JSON.stringify(value)?.slice(0, 40)
        }`,
      );
    }
    return value;
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

/** Why no node of `entry` can be dialled, or undefined when one can. */
function unusable(entry: ProfileEntry, p: string): ProfileFieldError | undefined {
  const at = keyPath(p, "nodes");
  if (entry.nodes.length === 0) return new ProfileFieldError(at, "has no nodes", "no-usable-node");
  if (entry.nodes.some((n) => knownProtocols(n).length > 0)) return undefined;
  const found = new Set<string>();
  for (const n of entry.nodes) {
    for (const e of n.protocols) {
      if ("opaque" in e) {
        found.add(
          `${JSON.stringify(e.opaque.type)?.slice(0, 40)} v${
            JSON.stringify(e.opaque.v)?.slice(0, 12)
          }`,
        );
      }
    }
  }
  return new ProfileFieldError(
    at,
    found.size === 0
      ? "no node lists a protocol"
      : `no node has a protocol this reader supports (found ${[...found].join(", ")})`,
    "no-usable-node",
  );
}

/** `value` when it is a string safe to show (no control characters, bounded), else undefined. */
function displayable(value: unknown, max: number): string | undefined {
  try {
    return value === "" ? undefined : text({ max }).read(value, "");
  } catch {
    return undefined;
  }
}

/**
 * `profiles[]`: each entry read on its own. Strict: the first problem is
 * thrown. Lenient: an entry with a bad field or no usable node is reported
 * to `skip` and left out. Beyond {@link MAX_PROFILES} entries, or not a
 * list, is a document-level error either way.
 */
function profileList(skip?: (s: SkippedProfile) => void): Codec<ProfileEntry[]> {
  const raw: Codec<unknown> = { read: (v) => v, write: (v) => v };
  return {
    read(value, p) {
      const out: ProfileEntry[] = [];
      list(raw, MAX_PROFILES).read(value, p).forEach((item, index) => {
        const at = `${p}[${index}]`;
        try {
          const entry = profile.read(item, at);
          const problem = unusable(entry, at);
          if (problem) throw problem;
          out.push(entry);
        } catch (e) {
          if (!skip || !(e instanceof ProfileFieldError)) throw e;
          const who: { id?: string; name?: string } = {};
          if (isJsonObject(item)) {
            const id = displayable(item.id, 128);
            const name = displayable(item.name, 256);
            if (id !== undefined) who.id = id;
            if (name !== undefined) who.name = name;
          }
          skip({ index, ...who, path: e.path, code: e.code, reason: e.message });
        }
      });
      return out;
    },
    write: (entries) => entries.map((e) => profile.write(e)),
  };
}

function documentCodec(skip?: (s: SkippedProfile) => void): Codec<ProfileDocument> {
  return record<ProfileDocument>([
    f("fleet_id", text({ max: 128 })),
    f("user", text({ max: 128 })),
    f("revision", integer(0, Number.MAX_SAFE_INTEGER)),
    f("issued_at", rfc3339, true),
    f("expires_at", rfc3339, true),
    f("profiles", profileList(skip)),
    f("control", control, true),
  ]);
}

const strictDocument = documentCodec();

function checkTopLevel(value: unknown): void {
  if (!isJsonObject(value)) {
    throw new ProfileError(
      "wrong-format",
      `profile payload must be a JSON object, got ${
        value === null
          ? "null"
          : Array.isArray(value)
          ? "an array"
          : typeof value === "object"
          ? "a non-JSON object"
          : `a ${typeof value}`
      }`,
    );
  }
}

/**
 * Reads a parsed payload the way a client must: every `profiles[]` entry is
 * read on its own, and one that is unusable (a missing or bad field, an
 * out-of-range `mtu`, no node with a protocol this reader supports) is left
 * out of `document.profiles` and listed in `skipped` with its index, id,
 * name, field path and reason. Skipped entries are not written back by
 * {@link profileDocumentToJson}.
 *
 * Still thrown (the whole document is unusable): a payload that is not a
 * JSON object (`wrong-format`), and a missing or bad document-level field —
 * `fleet_id`, `user`, `revision`, `issued_at`, `expires_at`, `control`, or
 * `profiles` not a list or longer than {@link MAX_PROFILES}
 * (`invalid-field`, {@link ProfileFieldError}).
 *
 * A document whose every entry was skipped is returned, not thrown: its
 * `document.profiles` is empty and `skipped` says why, so the caller can
 * show the reasons. It is not an error here because an empty `profiles`
 * (`null` from Go) is a legitimate state too; a client that caches
 * profiles should keep its cached copy rather than replace it with a
 * document that has `skipped` entries and no usable one.
 */
export function readProfileDocument(value: unknown): ProfileReadResult {
  checkTopLevel(value);
  const skipped: SkippedProfile[] = [];
  const document = documentCodec((s) => skipped.push(s)).read(value, "");
  return { document, skipped };
}

/**
 * {@link readProfileDocument} on payload JSON text or UTF-8 bytes (bounded
 * by {@link MAX_PROFILE_BYTES}): `input-too-large` and `not-json` are thrown
 * before anything is read.
 */
export function readProfilePayload(input: string | Uint8Array): ProfileReadResult {
  return readProfileDocument(parsePayload(input));
}

/**
 * Strict reader: like {@link readProfileDocument}, but the first unusable
 * entry is thrown as a {@link ProfileFieldError} (`invalid-field` or
 * `no-usable-node`) whose `path` names the field, e.g.
 * `profiles[0].nodes[1].endpoints`. For documents that must be complete
 * (what we write, the offline QR); clients use {@link readProfileDocument}.
 */
export function parseProfileDocument(value: unknown): ProfileDocument {
  checkTopLevel(value);
  return strictDocument.read(value, "");
}

/** Strict {@link parseProfileDocument} on payload JSON text or UTF-8 bytes (bounded). */
export function decodeProfileDocument(input: string | Uint8Array): ProfileDocument {
  return parseProfileDocument(parsePayload(input));
}

function parsePayload(input: string | Uint8Array): unknown {
  return parseBoundedJson(input, MAX_PROFILE_BYTES, (reason, detail) =>
    new ProfileError(
      reason === "too-large" ? "input-too-large" : "not-json",
      `profile payload: ${detail}`,
    ));
}

/** The payload as an ordered JSON object (controller field order, extras last). */
export function profileDocumentToJson(doc: ProfileDocument): Record<string, unknown> {
  return strictDocument.write(doc) as Record<string, unknown>;
}

/** Compact payload JSON as the controller writes it (what gets sealed). */
export function encodeProfileDocument(doc: ProfileDocument): string {
  return goJson(profileDocumentToJson(doc));
}

/** The node's protocol entries this reader understands, in order. */
export function knownProtocols(node: ProfileNode): KnownProtocol[] {
  return node.protocols.filter((p): p is KnownProtocol => !("opaque" in p));
}
