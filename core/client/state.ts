/**
 * What the reference client keeps between runs: the device's keys and
 * certificate, what it pinned at enrollment (root, Fleet CA, profile-signing
 * key), who it belongs to, the highest profile revision it accepted and its
 * session. Private keys are in it; the Deno side writes it 0600.
 */
import { fromBase64, toBase64 } from "../encoding.ts";
import { isJsonObject, parseBoundedJson } from "../seal/bounded_json.ts";
import { decodeWrappedKey } from "../seal/passphrase.ts";
import { ClientError } from "./errors.ts";

/** The `fmt` of a client state file. */
export const CLIENT_STATE_FORMAT = "pharos-client-state";
const MAX_STATE_BYTES = 256 * 1024;

/** Everything the client remembers. Keys are raw 32-byte values. */
export interface ClientState {
  /** Relay `host:port` the device was enrolled through and syncs through. */
  relay: string;
  /** Root CA fingerprint from the join link (hex SHA-256 of the DER). */
  caFingerprint: string;
  /** Root CA PEM, verified against {@link caFingerprint} at enrollment. */
  rootPem: string;
  /** Fleet CA PEM as the relay presented it at enrollment. */
  fleetCaPem: string;
  /** Device-CA leaf PEM. */
  deviceCertPem: string;
  /** PKCS#8 PEM of the device's TLS key (made on the device). */
  deviceKeyPem: string;
  /** X25519 private key the profile is sealed to. */
  encryptionKey: Uint8Array;
  /** WireGuard private key (made on the device; only its public half was sent). */
  wireguardKey: Uint8Array;
  /** The controller's Ed25519 profile-signing key, pinned at enrollment. */
  signingKey: Uint8Array;
  deviceName: string;
  /** User id, pinned at the first login. */
  user?: string;
  /** Fleet id, pinned from the first accepted profile. */
  fleetId?: string;
  /** Highest profile revision accepted (rollback guard). */
  lastRevision?: number;
  /** Session token from Authenticate. */
  session?: string;
  /**
   * The account key this device enrolled, passphrase-wrapped (§4.4 JSON, as
   * sent in EnrollKeys): what proves the old key when it is replaced.
   */
  accountWrappedKey?: string;
}

const KEYS = ["encryptionKey", "wireguardKey", "signingKey"] as const;
const STRINGS = [
  "relay",
  "caFingerprint",
  "rootPem",
  "fleetCaPem",
  "deviceCertPem",
  "deviceKeyPem",
  "deviceName",
] as const;

/** The state file text (JSON; keys in standard base64). */
export function encodeClientState(s: ClientState): string {
  const out: Record<string, unknown> = { fmt: CLIENT_STATE_FORMAT, v: 1 };
  for (const k of STRINGS) out[k] = s[k];
  for (const k of KEYS) out[k] = toBase64(s[k]);
  if (s.user !== undefined) out.user = s.user;
  if (s.fleetId !== undefined) out.fleetId = s.fleetId;
  if (s.lastRevision !== undefined) out.lastRevision = s.lastRevision;
  if (s.session !== undefined) out.session = s.session;
  if (s.accountWrappedKey !== undefined) out.accountWrappedKey = s.accountWrappedKey;
  return JSON.stringify(out, null, 2) + "\n";
}

/** Parses a state file; `bad-state` names what is wrong. */
export function decodeClientState(text: string | Uint8Array): ClientState {
  const bad = (why: string) =>
    new ClientError("bad-state", `client state: ${why} (enroll again to rebuild it)`);
  const v = parseBoundedJson(text, MAX_STATE_BYTES, (_r, detail) => bad(detail));
  if (!isJsonObject(v) || v.fmt !== CLIENT_STATE_FORMAT || v.v !== 1) {
    throw bad(`not a ${CLIENT_STATE_FORMAT} v1 file`);
  }
  const s: Record<string, unknown> = {};
  for (const k of STRINGS) {
    if (typeof v[k] !== "string" || v[k] === "") throw bad(`${k} is missing`);
    s[k] = v[k];
  }
  for (const k of KEYS) {
    try {
      s[k] = fromBase64(v[k] as string, k, 32);
    } catch {
      throw bad(`${k} must be base64 of 32 bytes`);
    }
  }
  for (const k of ["user", "fleetId", "session"] as const) {
    if (v[k] === undefined) continue;
    if (typeof v[k] !== "string") throw bad(`${k} must be a string`);
    s[k] = v[k];
  }
  if (v.accountWrappedKey !== undefined) {
    try {
      if (typeof v.accountWrappedKey !== "string") throw new TypeError();
      decodeWrappedKey(v.accountWrappedKey);
    } catch {
      throw bad("accountWrappedKey is not a wrapped key");
    }
    s.accountWrappedKey = v.accountWrappedKey;
  }
  if (v.lastRevision !== undefined) {
    if (!Number.isSafeInteger(v.lastRevision)) throw bad("lastRevision must be an integer");
    s.lastRevision = v.lastRevision;
  }
  return s as unknown as ClientState;
}
