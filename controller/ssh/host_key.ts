/**
 * SSH host keys: the line form the controller pins (`ssh-ed25519 AAAA…`,
 * as in known_hosts), the `SHA256:…` fingerprint OpenSSH prints
 * (`ssh-keygen -lf`), and the trust-on-first-use decision.
 *
 * Decision (`checkHostKey`):
 * - nothing pinned: the presented key is accepted and pinned ("pinned"),
 *   unless the operator named the fingerprint to expect and it differs;
 * - pinned and equal: accepted ("matches");
 * - pinned and different: refused (`host-key-changed`) unless the operator
 *   passed `--accept-new-host-key` with exactly the presented fingerprint
 *   ("re-pinned"). A wrong expected fingerprint is `host-key-mismatch`.
 * The refusal happens in the transport's host-key check, before any
 * credential (key signature or password) is sent.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { fromBase64, toBase64 } from "../../core/encoding.ts";
import { SshError } from "./errors.ts";
import { WireReader } from "./wire.ts";

const KEY_TYPE =
  /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|ssh-dss|sk-[a-z0-9@.-]{1,60})$/;
const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;

export interface HostKey {
  /** Key type, e.g. `ssh-ed25519`. */
  type: string;
  /** `type base64-blob`, the pinned form. */
  line: string;
  /** `SHA256:` + unpadded base64 of SHA-256(blob). */
  fingerprint: string;
}

/** `SHA256:…` over a public key blob, as OpenSSH prints it. */
export function blobFingerprint(blob: Uint8Array): string {
  return "SHA256:" + toBase64(sha256(blob)).replace(/=+$/, "");
}

/** Reads the key type from the blob and builds the pinned line and fingerprint. */
export function hostKeyFromBlob(blob: Uint8Array): HostKey {
  let type: string;
  try {
    type = new WireReader(blob).text();
  } catch {
    throw new SshError("bad-key", "the server sent a host key that is not an SSH public key blob");
  }
  if (!KEY_TYPE.test(type)) {
    throw new SshError(
      "bad-key",
      `the server sent a host key of unknown type "${type.slice(0, 40)}"`,
    );
  }
  return { type, line: `${type} ${toBase64(blob)}`, fingerprint: blobFingerprint(blob) };
}

/** Parses a pinned line (`type base64 [comment]`); checks that the blob names the same type. */
export function parseHostKeyLine(line: string): HostKey {
  const [type, b64] = line.trim().split(/\s+/);
  let blob: Uint8Array;
  try {
    blob = fromBase64(b64 ?? "", "host key");
  } catch {
    throw new SshError("bad-key", `pinned host key "${line.slice(0, 60)}" is not "type base64"`);
  }
  const key = hostKeyFromBlob(blob);
  if (key.type !== type) {
    throw new SshError("bad-key", `pinned host key says ${type} but holds a ${key.type} key`);
  }
  return key;
}

/** Checks and normalises an operator-typed fingerprint (`SHA256:` + 43 base64 characters). */
export function normalizeSshFingerprint(text: string): string {
  const t = text.trim().replace(/=+$/, "");
  const withPrefix = /^sha256:/i.test(t) ? "SHA256:" + t.slice(7) : "SHA256:" + t;
  if (!FINGERPRINT.test(withPrefix)) {
    throw new SshError(
      "bad-fingerprint",
      `"${
        text.slice(0, 80)
      }" is not an SSH SHA256 fingerprint (SHA256: and 43 base64 characters, as "ssh-keygen -lf" prints it)`,
    );
  }
  return withPrefix;
}

export type HostKeyDecision = "pinned" | "matches" | "re-pinned";

export interface HostKeyCheck {
  /** The pinned line, or null on first contact. */
  pinned: string | null;
  presented: HostKey;
  /** The fingerprint the operator told us to accept (`--accept-new-host-key`). */
  accept?: string;
  /** `host:port` for messages. */
  where: string;
  /** The command to re-run, for the message (e.g. `cox nodes add root@h`). */
  rerun: string;
}

export function checkHostKey(c: HostKeyCheck): HostKeyDecision {
  const accept = c.accept === undefined ? undefined : normalizeSshFingerprint(c.accept);
  const presented = c.presented.fingerprint;
  if (accept !== undefined && accept !== presented) {
    throw new SshError(
      "host-key-mismatch",
      `${c.where} presented host key ${presented}, not ${accept} as --accept-new-host-key expects; ` +
        "nothing was sent or changed. Check the fingerprint on the host itself " +
        '("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub" on its console)',
    );
  }
  if (c.pinned === null) return "pinned";
  const pinned = parseHostKeyLine(c.pinned);
  if (pinned.line === c.presented.line) return "matches";
  if (accept === presented) return "re-pinned";
  throw new SshError(
    "host-key-changed",
    `the SSH host key of ${c.where} changed: pinned ${pinned.fingerprint} (${pinned.type}), ` +
      `now ${presented} (${c.presented.type}); refused before logging in, nothing was changed. ` +
      "This is what a man-in-the-middle looks like. If the host was reinstalled on purpose, " +
      'check the new fingerprint on its console ("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub") ' +
      `and re-pin it deliberately: ${c.rerun} --accept-new-host-key ${presented}`,
  );
}

/** The key-type token of a pinned line (to prefer that algorithm when connecting). */
export function pinnedType(line: string | null): string | undefined {
  if (line === null) return undefined;
  const t = line.trim().split(/\s+/)[0];
  return KEY_TYPE.test(t) ? t : undefined;
}
