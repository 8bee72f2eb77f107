/**
 * Enrollment tickets as join links (CONTRACTS.md §4.8):
 * `pharosvpn://enroll?ca=<root fp>&relay=<host:port>&token=<token>`, encoded
 * exactly like Go's `url.Values.Encode()` (keys sorted, query escaping) so
 * the original clients accept them. The same string is what the QR carries.
 * A bound ticket's link adds `bind` (claim_binding.ts), which original
 * clients ignore: `pharosvpn://enroll?bind=…&ca=…&relay=…&token=…`.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { fromBase64Url, toBase64Url, toHex, utf8 } from "../encoding.ts";
import { PharosError } from "../errors.ts";
import { drawRandom, type RandomSource, systemRandom } from "../seal/random.ts";
import { splitHostPort } from "./net_syntax.ts";

/** Stable codes of {@link JoinLinkError}; each names the bad part. */
export type JoinLinkErrorCode =
  | "link-too-long"
  | "bad-syntax"
  | "wrong-scheme"
  | "wrong-host"
  | "bad-path"
  | "bad-query"
  | "missing-parameter"
  | "duplicate-parameter"
  | "bad-ca"
  | "bad-relay"
  | "bad-token"
  | "bad-bind";

/** Error of the join-link builder and parser. */
export class JoinLinkError extends PharosError {
  declare readonly code: JoinLinkErrorCode;
  constructor(code: JoinLinkErrorCode, message: string) {
    super(code, message);
  }
}

/** The parameters of a join link. */
export interface JoinLink {
  /** Lowercase hex SHA-256 of the root CA certificate DER (64 chars). */
  ca: string;
  /** Public relay endpoint `host:port`. */
  relay: string;
  /** base64url (no padding) of 32 random bytes: 43 chars. */
  token: string;
  /**
   * Link secret of a bound ticket (base64url of 32 bytes), never sent: it
   * keys the claim MAC. Absent for an unbound ticket (the original form).
   */
  bind?: string;
}

/** Links longer than this are rejected before parsing; a typical one is ~170. */
export const MAX_JOIN_LINK_LENGTH = 1024;
const SCHEME = "pharosvpn";
const HOST = "enroll";

/** A fresh one-time token: base64url of 32 random bytes (`random` purpose `"token"`). */
export function newEnrollmentToken(random: RandomSource = systemRandom): string {
  return toBase64Url(drawRandom(random, 32, "token"));
}

/** What the controller stores instead of the token: lowercase hex SHA-256 of its ASCII. */
export function enrollmentTokenHash(token: string): string {
  return toHex(sha256(utf8.encode(token)));
}

/** The `ca` value for a root certificate: lowercase hex SHA-256 of its DER. */
export function rootFingerprint(rootDer: Uint8Array): string {
  return toHex(sha256(rootDer));
}

/**
 * Canonical fingerprint form: lowercase, optional `sha256:` prefix and `:`
 * separators removed.
 */
export function normalizeFingerprint(fp: string): string {
  return fp.trim().toLowerCase().replace(/^sha256:/, "").replaceAll(":", "");
}

/** Case-insensitive fingerprint comparison after {@link normalizeFingerprint}. */
export function fingerprintsMatch(a: string, b: string): boolean {
  const x = normalizeFingerprint(a);
  return x !== "" && x === normalizeFingerprint(b);
}

/**
 * Go's `url.QueryEscape`: everything except `A–Z a–z 0–9 - _ . ~` becomes
 * `%XX` (upper-case hex, per UTF-8 byte); space becomes `+`.
 */
export function queryEscape(s: string): string {
  let out = "";
  for (const byte of utf8.encode(s)) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c;
    else if (byte === 0x20) out += "+";
    else out += "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** Go's `url.QueryUnescape`; undefined on a malformed escape. */
export function queryUnescape(s: string): string | undefined {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "%") {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (c === "+") {
      bytes.push(0x20);
    } else {
      bytes.push(...utf8.encode(c));
    }
  }
  try {
    return utf8.decode(new Uint8Array(bytes));
  } catch {
    return undefined;
  }
}

/** Builds the link (keys sorted as Go does); validates the values first. */
export function buildJoinLink(link: JoinLink): string {
  const checked = checkValues(link.ca, link.relay, link.token, link.bind);
  const keys = checked.bind === undefined
    ? (["ca", "relay", "token"] as const)
    : (["bind", "ca", "relay", "token"] as const);
  const query = keys
    .map((k) => `${k}=${queryEscape(checked[k]!)}`)
    .join("&");
  return `${SCHEME}://${HOST}?${query}`;
}

/**
 * Parses a join link. Rejects (naming the bad part): too long, wrong scheme,
 * wrong host, a path, malformed query escapes, a missing/empty/duplicate
 * parameter, and a `ca`, `relay`, `token` or (when present) `bind` of the
 * wrong shape. Unknown parameters are ignored.
 */
export function parseJoinLink(input: string): JoinLink {
  if (typeof input !== "string") {
    throw new JoinLinkError("bad-syntax", "join link must be a string");
  }
  if (input.length > MAX_JOIN_LINK_LENGTH) {
    throw new JoinLinkError(
      "link-too-long",
      `join link longer than ${MAX_JOIN_LINK_LENGTH} characters`,
    );
  }
  const s = input.trim();
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u0020\u007f]/.test(s)) {
    throw new JoinLinkError("bad-syntax", "join link contains whitespace or control characters");
  }
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#.*)?$/.exec(s);
  if (!m) {
    throw new JoinLinkError(
      "bad-syntax",
      `not a link of the form ${SCHEME}://${HOST}?ca=…&relay=…&token=…`,
    );
  }
  const [, scheme, host, path, query = ""] = m;
  if (scheme.toLowerCase() !== SCHEME) {
    throw new JoinLinkError("wrong-scheme", `scheme "${scheme}" is not "${SCHEME}"`);
  }
  if (host !== HOST) throw new JoinLinkError("wrong-host", `host "${host}" is not "${HOST}"`);
  if (path !== "" && path !== "/") throw new JoinLinkError("bad-path", `unexpected path "${path}"`);
  const params = new Map<string, string>();
  for (const pair of query.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const key = queryUnescape(eq < 0 ? pair : pair.slice(0, eq));
    const value = queryUnescape(eq < 0 ? "" : pair.slice(eq + 1));
    if (key === undefined || value === undefined || pair.includes(";")) {
      throw new JoinLinkError("bad-query", `malformed query parameter "${pair.slice(0, 100)}"`);
    }
    if (params.has(key)) {
      throw new JoinLinkError("duplicate-parameter", `parameter "${key}" given twice`);
    }
    params.set(key, value.trim());
  }
  for (const k of ["ca", "relay", "token"]) {
    if (!params.get(k)) {
      throw new JoinLinkError("missing-parameter", `parameter "${k}" is missing or empty`);
    }
  }
  return checkValues(
    params.get("ca")!,
    params.get("relay")!,
    params.get("token")!,
    params.get("bind"),
  );
}

function checkValues(ca: string, relay: string, token: string, bind?: string): JoinLink {
  if (!/^[0-9a-f]{64}$/.test(normalizeFingerprint(ca ?? ""))) {
    throw new JoinLinkError(
      "bad-ca",
      "ca must be the 64-hex-digit SHA-256 of the root CA certificate",
    );
  }
  if (typeof relay !== "string" || !splitHostPort(relay)) {
    throw new JoinLinkError("bad-relay", `relay "${String(relay).slice(0, 80)}" is not host:port`);
  }
  try {
    fromBase64Url(token, "token", 32);
  } catch {
    throw new JoinLinkError("bad-token", "token must be base64url of 32 bytes (43 characters)");
  }
  if (bind === undefined) return { ca, relay, token };
  try {
    fromBase64Url(bind, "bind", 32);
  } catch {
    throw new JoinLinkError(
      "bad-bind",
      "bind must be base64url of 32 bytes (43 characters); copy the whole link",
    );
  }
  return { ca, relay, token, bind };
}
