/**
 * The `.pharosid` device identity bundle of CONTRACTS.md §4.7: compact JSON
 * with the relay address, the Fleet CA, the device certificate and key, the
 * pinned profile-signing key and (per-device identities) the X25519
 * encryption key. The private keys are in clear in this format; keep the
 * file in the OS keystore or encrypted storage (§7.7).
 */
import { fromBase64, toBase64 } from "../encoding.ts";
import { isJsonObject, parseBoundedJson } from "../seal/bounded_json.ts";
import { ProfileError, ProfileFieldError } from "./errors.ts";
import { goJson } from "./fields.ts";
import { splitHostPort } from "./net_syntax.ts";

/** The `fmt` value of a `.pharosid` file. */
export const DEVICE_IDENTITY_FORMAT = "pharos-device";
/** Upper bound of a `.pharosid` file, checked before parsing. */
export const MAX_DEVICE_IDENTITY_BYTES = 256 * 1024;
/** PEM block type of the raw X25519 encryption key. */
export const X25519_PEM_LABEL = "X25519 PRIVATE KEY";

/** A device identity; optional fields are omitted from the file when empty. */
export interface DeviceIdentity {
  user?: string;
  alias?: string;
  /** `host:port` of the relay. */
  relay_addr: string;
  /** TLS server name / SAN to verify on the relay ("" when not given). */
  relay_server_name: string;
  /** Root CA fingerprint, same form as the join link's `ca`. */
  ca_fingerprint?: string;
  /** Fleet CA PEM (the relay trust anchor). */
  fleet_ca: string;
  /** Device-CA leaf PEM. */
  device_cert: string;
  /** PKCS#8 PEM `PRIVATE KEY`. */
  device_key: string;
  /** Raw 32-byte Ed25519 key pinned at enrollment. */
  signing_public_key?: Uint8Array;
  /** Raw 32-byte X25519 scalar; present = per-device (passphrase-less) identity. */
  encryption_key?: Uint8Array;
}

/** The file text: compact JSON in the field order of §4.7. */
export function writeDeviceIdentity(id: DeviceIdentity): string {
  const out: [string, unknown][] = [["fmt", DEVICE_IDENTITY_FORMAT], ["v", 1]];
  const put = (key: string, value: string | undefined, omitEmpty: boolean) => {
    if (!omitEmpty || value) out.push([key, value ?? ""]);
  };
  put("user", id.user, true);
  put("alias", id.alias, true);
  put("relay_addr", id.relay_addr, false);
  put("relay_server_name", id.relay_server_name, false);
  put("ca_fingerprint", id.ca_fingerprint, true);
  put("fleet_ca", id.fleet_ca, false);
  put("device_cert", id.device_cert, false);
  put("device_key", id.device_key, false);
  put("signing_public_key", id.signing_public_key && toBase64(id.signing_public_key), true);
  put("encryption_key", id.encryption_key && encodeX25519Pem(id.encryption_key), true);
  return goJson(Object.fromEntries(out));
}

/**
 * Parses a `.pharosid` file. Required: `fmt`, `v == 1`, `relay_addr`,
 * `fleet_ca`, `device_cert`, `device_key`; unknown fields are ignored.
 */
export function readDeviceIdentity(input: string | Uint8Array): DeviceIdentity {
  const value = parseBoundedJson(
    input,
    MAX_DEVICE_IDENTITY_BYTES,
    (reason, detail) =>
      new ProfileError(
        reason === "too-large" ? "input-too-large" : "not-json",
        `.pharosid file: ${detail}`,
      ),
  );
  if (!isJsonObject(value) || value.fmt !== DEVICE_IDENTITY_FORMAT) {
    throw new ProfileError(
      "wrong-format",
      `not a device identity (fmt must be "${DEVICE_IDENTITY_FORMAT}")`,
    );
  }
  if (value.v !== 1) {
    throw new ProfileError(
      "unknown-version",
      `.pharosid version ${JSON.stringify(value.v)} is not supported (only 1)`,
    );
  }
  const str = (key: string, required: boolean): string | undefined => {
    const v = value[key];
    if (v === undefined || v === null || v === "") {
      if (required) throw new ProfileFieldError(key, "is required");
      return undefined;
    }
    if (typeof v !== "string") throw new ProfileFieldError(key, "must be a string");
    return v;
  };
  const pem = (key: string, label: string): string => {
    const v = str(key, true)!;
    if (!v.includes(`-----BEGIN ${label}-----`)) {
      throw new ProfileFieldError(key, `must be a PEM ${label}`);
    }
    return v;
  };
  const relay = str("relay_addr", true)!;
  if (!splitHostPort(relay)) throw new ProfileFieldError("relay_addr", "must be host:port");
  const id: DeviceIdentity = {
    relay_addr: relay,
    relay_server_name: str("relay_server_name", false) ?? "",
    fleet_ca: pem("fleet_ca", "CERTIFICATE"),
    device_cert: pem("device_cert", "CERTIFICATE"),
    device_key: pem("device_key", "PRIVATE KEY"),
  };
  const user = str("user", false);
  if (user !== undefined) id.user = user;
  const alias = str("alias", false);
  if (alias !== undefined) id.alias = alias;
  const fp = str("ca_fingerprint", false);
  if (fp !== undefined) id.ca_fingerprint = fp;
  const spk = str("signing_public_key", false);
  if (spk !== undefined) {
    try {
      id.signing_public_key = fromBase64(spk, "signing_public_key", 32);
    } catch {
      throw new ProfileFieldError("signing_public_key", "must be base64 of a 32-byte Ed25519 key");
    }
  }
  const ek = str("encryption_key", false);
  if (ek !== undefined) id.encryption_key = decodeX25519Pem(ek, "encryption_key");
  return id;
}

/** PEM `X25519 PRIVATE KEY` wrapping the raw 32-byte scalar. */
export function encodeX25519Pem(key: Uint8Array): string {
  if (key.length !== 32) throw new ProfileFieldError("encryption_key", "must be 32 bytes");
  return `-----BEGIN ${X25519_PEM_LABEL}-----\n${
    toBase64(key)
  }\n-----END ${X25519_PEM_LABEL}-----\n`;
}

/** Reads the raw scalar back from {@link encodeX25519Pem} output. */
export function decodeX25519Pem(pem: string, field = "encryption_key"): Uint8Array {
  const m = new RegExp(
    `^\\s*-----BEGIN ${X25519_PEM_LABEL}-----\\r?\\n([A-Za-z0-9+/=\\r\\n]+?)\\r?\\n-----END ${X25519_PEM_LABEL}-----\\s*$`,
  ).exec(pem);
  if (!m) throw new ProfileFieldError(field, `must be a PEM ${X25519_PEM_LABEL} block`);
  try {
    return fromBase64(m[1].replace(/\r?\n/g, ""), field, 32);
  } catch {
    throw new ProfileFieldError(field, "must hold base64 of a 32-byte X25519 key");
  }
}
