/**
 * Self-contained offline profile QR for one node: the single-node profile
 * payload (§4.6 JSON data) → CBOR → raw deflate → base45, split into parts
 * that each fit one QR code in alphanumeric mode.
 *
 * Part format (ours; no compatibility constraint, CONTRACTS.md §6), all
 * characters from the QR alphanumeric set:
 *
 *     PV1:<index>/<total>:<digest>:<data>
 *
 * - `PV1` — format tag and version.
 * - `<index>/<total>` — decimal, 1 ≤ index ≤ total ≤ 16, no leading zeros.
 * - `<digest>` — first 4 bytes of SHA-256 over the complete base45 payload,
 *   8 upper-case hex digits: ties the parts of one payload together and
 *   checks the reassembled string.
 * - `<data>` — the index-th consecutive slice of the base45 payload.
 *
 * A payload that fits one code is a single `PV1:1/1:…` part. Decoding takes
 * the parts in any order and rejects missing, duplicate and mismatched
 * parts; inflation is capped at {@link MAX_OFFLINE_PROFILE_BYTES}.
 */
import { decode as cborDecode, encode as cborEncode } from "cbor2";
import { sha256 } from "@noble/hashes/sha2.js";
import { toHex, utf8 } from "../encoding.ts";
import { PharosError } from "../errors.ts";
import { BASE45_ALPHABET, fromBase45, toBase45 } from "./base45.ts";
import { CompressionError, deflate, inflateBounded } from "./compression.ts";
import { parseProfileDocument, type ProfileDocument, profileDocumentToJson } from "./schema.ts";

/** Stable codes of {@link OfflineQrError}. */
export type OfflineQrErrorCode =
  | "not-single-node"
  | "node-not-found"
  | "too-many-parts"
  | "bad-part"
  | "mismatched-parts"
  | "duplicate-part"
  | "missing-part"
  | "corrupt-payload"
  | "payload-too-large";

/** Error of the offline QR encoder and decoder. */
export class OfflineQrError extends PharosError {
  declare readonly code: OfflineQrErrorCode;
  constructor(code: OfflineQrErrorCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** Most parts one payload may be split into. */
export const MAX_QR_PARTS = 16;
/** Most characters in one part (QR version 40-L alphanumeric capacity). */
export const MAX_QR_PART_CHARS = 4296;
/**
 * Default characters per part: well under half the alphanumeric capacity of
 * the largest code at error-correction level M (3,391), a density phone
 * cameras read from a screen. A single node with AmneziaWG and Xray entries
 * takes about 1,250.
 */
export const DEFAULT_QR_PART_CHARS = 1500;
/** Cap on the inflated CBOR of one offline profile. */
export const MAX_OFFLINE_PROFILE_BYTES = 64 * 1024;

const TAG = "PV1";
const PART = /^PV1:([1-9]\d?)\/([1-9]\d?):([0-9A-F]{8}):(.*)$/s;

/**
 * A copy of `doc` holding only profile `profileId` with only node `nodeId`
 * (the profile's path and other fields are kept).
 */
export function selectOfflineNode(
  doc: ProfileDocument,
  profileId: string,
  nodeId: string,
): ProfileDocument {
  const profile = doc.profiles.find((p) => p.id === profileId);
  const node = profile?.nodes.find((n) => n.id === nodeId);
  if (!profile || !node) {
    throw new OfflineQrError("node-not-found", `no node "${nodeId}" in profile "${profileId}"`);
  }
  return { ...doc, profiles: [{ ...profile, nodes: [node] }] };
}

/**
 * Encodes a single-node document into QR payload strings of at most
 * `maxChars` characters each (header included).
 */
export async function encodeOfflineProfile(
  doc: ProfileDocument,
  maxChars = DEFAULT_QR_PART_CHARS,
): Promise<string[]> {
  if (doc.profiles.length !== 1 || doc.profiles[0].nodes.length !== 1) {
    throw new OfflineQrError(
      "not-single-node",
      "an offline QR carries exactly one profile with one node; use selectOfflineNode",
    );
  }
  if (!Number.isInteger(maxChars) || maxChars < 64 || maxChars > MAX_QR_PART_CHARS) {
    throw new OfflineQrError("bad-part", `maxChars must be an integer in 64..${MAX_QR_PART_CHARS}`);
  }
  const cbor = cborEncode(profileDocumentToJson(doc));
  const payload = toBase45(await deflate(cbor, "deflate-raw"));
  const digest = payloadDigest(payload);
  const room = maxChars - `${TAG}:99/99:${digest}:`.length;
  const total = Math.max(1, Math.ceil(payload.length / room));
  if (total > MAX_QR_PARTS) {
    throw new OfflineQrError(
      "too-many-parts",
      `profile needs ${total} QR codes of ${maxChars} characters; at most ${MAX_QR_PARTS} are allowed`,
    );
  }
  const size = Math.ceil(payload.length / total);
  return Array.from(
    { length: total },
    (_, i) => `${TAG}:${i + 1}/${total}:${digest}:${payload.slice(i * size, (i + 1) * size)}`,
  );
}

/**
 * Reassembles parts (any order) and decodes the profile. Errors:
 * `bad-part`, `mismatched-parts`, `duplicate-part`, `missing-part`,
 * `corrupt-payload`, `payload-too-large`, `too-many-parts`, and the strict schema's errors
 * (`wrong-format`, ProfileFieldError `invalid-field` / `no-usable-node`).
 */
export async function decodeOfflineProfile(parts: readonly string[]): Promise<ProfileDocument> {
  if (!Array.isArray(parts) || parts.length === 0) {
    throw new OfflineQrError("missing-part", "no QR parts given");
  }
  if (parts.length > MAX_QR_PARTS) {
    throw new OfflineQrError("too-many-parts", `more than ${MAX_QR_PARTS} QR parts given`);
  }
  const slices = new Map<number, string>();
  let total = 0;
  let digest = "";
  for (const [i, part] of parts.entries()) {
    if (typeof part !== "string" || part.length > MAX_QR_PART_CHARS) {
      throw new OfflineQrError(
        "bad-part",
        `part ${i + 1} is not a QR payload string of at most ${MAX_QR_PART_CHARS} characters`,
      );
    }
    const m = PART.exec(part);
    if (!m) {
      throw new OfflineQrError(
        "bad-part",
        `part ${i + 1} does not start with "${TAG}:<i>/<n>:<digest>:"`,
      );
    }
    const index = Number(m[1]);
    const count = Number(m[2]);
    if (index > count || count > MAX_QR_PARTS) {
      throw new OfflineQrError("bad-part", `part ${i + 1} claims to be ${index} of ${count}`);
    }
    if (i === 0) {
      total = count;
      digest = m[3];
    } else if (count !== total || m[3] !== digest) {
      throw new OfflineQrError(
        "mismatched-parts",
        `part ${i + 1} (${index} of ${count}, ${
          m[3]
        }) belongs to another code set than ${total} parts ${digest}`,
      );
    }
    if (slices.has(index)) {
      throw new OfflineQrError("duplicate-part", `part ${index} of ${total} given twice`);
    }
    if ([...m[4]].some((c) => !BASE45_ALPHABET.includes(c))) {
      throw new OfflineQrError(
        "bad-part",
        `part ${index} of ${total} contains non-base45 characters`,
      );
    }
    slices.set(index, m[4]);
  }
  const missing = Array.from({ length: total }, (_, i) => i + 1).filter((i) => !slices.has(i));
  if (missing.length > 0) {
    throw new OfflineQrError("missing-part", `missing part(s) ${missing.join(", ")} of ${total}`);
  }
  const payload = Array.from({ length: total }, (_, i) => slices.get(i + 1)).join("");
  if (payloadDigest(payload) !== digest) {
    throw new OfflineQrError("corrupt-payload", "reassembled QR payload does not match its digest");
  }
  let value: unknown;
  try {
    const cbor = await inflateBounded(
      fromBase45(payload),
      "deflate-raw",
      MAX_OFFLINE_PROFILE_BYTES,
    );
    value = cborDecode(cbor, {
      rejectDuplicateKeys: true,
      rejectUndefined: true,
      rejectBigInts: true,
      ignoreGlobalTags: true,
      maxDepth: 64,
    });
  } catch (e) {
    if (e instanceof CompressionError && e.code === "inflate-too-large") {
      throw new OfflineQrError(
        "payload-too-large",
        `QR payload inflates past ${MAX_OFFLINE_PROFILE_BYTES} bytes`,
      );
    }
    throw new OfflineQrError(
      "corrupt-payload",
      `QR payload does not decode: ${(e as Error).message}`,
      { cause: e },
    );
  }
  return parseProfileDocument(value);
}

function payloadDigest(payload: string): string {
  return toHex(sha256(utf8.encode(payload)).subarray(0, 4)).toUpperCase();
}
