/**
 * Ed25519 SSH keys in OpenSSH's formats: the public line
 * (`ssh-ed25519 AAAA… comment`) and the unencrypted `openssh-key-v1`
 * private key (`-----BEGIN OPENSSH PRIVATE KEY-----`), which ssh2 and
 * `ssh-keygen` read. The controller stores only the 32-byte seed, sealed
 * (controller_key.ts); the PEM is rebuilt in memory when a connection needs it.
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { concat, toBase64 } from "../../core/encoding.ts";
import { SshError } from "./errors.ts";
import { blobFingerprint } from "./host_key.ts";
import { sshString, u32 } from "./wire.ts";

const TYPE = "ssh-ed25519";

export interface SshKeyPair {
  /** The 32-byte Ed25519 seed: the secret. */
  seed: Uint8Array;
  publicKey: Uint8Array;
  /** `ssh-ed25519 AAAA… comment` */
  publicLine: string;
  /** `SHA256:…` as `ssh-keygen -lf` prints it. */
  fingerprint: string;
  /** OpenSSH private key PEM (unencrypted: it only ever lives in memory). */
  privatePem: string;
}

function publicBlob(pub: Uint8Array): Uint8Array {
  return concat(sshString(TYPE), sshString(pub));
}

/** The key pair for a seed (a new random one when omitted). */
export function sshKeyPair(seed?: Uint8Array, comment = "pharos-controller"): SshKeyPair {
  const s = seed ?? crypto.getRandomValues(new Uint8Array(32));
  if (s.length !== 32) throw new SshError("bad-key", "an Ed25519 seed is 32 bytes");
  if (!/^[\x21-\x7e]{0,64}$/.test(comment)) {
    throw new SshError("bad-key", "a key comment is 0-64 printable characters without spaces");
  }
  const pub = ed25519.getPublicKey(s);
  const blob = publicBlob(pub);
  return {
    seed: s,
    publicKey: pub,
    publicLine: `${TYPE} ${toBase64(blob)}${comment ? " " + comment : ""}`,
    fingerprint: blobFingerprint(blob),
    privatePem: privatePem(s, pub, comment),
  };
}

function privatePem(seed: Uint8Array, pub: Uint8Array, comment: string): string {
  const check = crypto.getRandomValues(new Uint8Array(4));
  let inner = concat(
    check,
    check,
    sshString(TYPE),
    sshString(pub),
    sshString(concat(seed, pub)),
    sshString(comment),
  );
  const pad = (8 - (inner.length % 8)) % 8;
  inner = concat(inner, Uint8Array.from({ length: pad }, (_, i) => i + 1));
  const body = concat(
    new TextEncoder().encode("openssh-key-v1\0"),
    sshString("none"),
    sshString("none"),
    sshString(new Uint8Array(0)),
    u32(1),
    sshString(publicBlob(pub)),
    sshString(inner),
  );
  const b64 = toBase64(body).match(/.{1,70}/g)!.join("\n");
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`;
}
