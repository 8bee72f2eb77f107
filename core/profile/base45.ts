/**
 * Base45 (RFC 9285): bytes as characters of the QR alphanumeric set, so a QR
 * code can carry binary data in its dense alphanumeric mode.
 */
import { PharosError } from "../errors.ts";

/** The 45 characters, value order. */
export const BASE45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
const VALUE = new Map([...BASE45_ALPHABET].map((c, i) => [c, i]));

/** Error of {@link fromBase45}. */
export class Base45Error extends PharosError {
  constructor(message: string) {
    super("bad-base45", message);
  }
}

/** Encodes bytes: each pair → 3 characters, a final odd byte → 2 characters. */
export function toBase45(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    const n = bytes[i] * 256 + bytes[i + 1];
    out += BASE45_ALPHABET[n % 45] + BASE45_ALPHABET[Math.floor(n / 45) % 45] +
      BASE45_ALPHABET[Math.floor(n / 2025)];
  }
  if (bytes.length % 2 === 1) {
    const n = bytes[bytes.length - 1];
    out += BASE45_ALPHABET[n % 45] + BASE45_ALPHABET[Math.floor(n / 45)];
  }
  return out;
}

/** Decodes strictly: unknown characters, a dangling character and out-of-range groups are errors. */
export function fromBase45(text: string): Uint8Array {
  if (text.length % 3 === 1) {
    throw new Base45Error("base45 length leaves a single dangling character");
  }
  const out = new Uint8Array(Math.floor(text.length / 3) * 2 + (text.length % 3 === 2 ? 1 : 0));
  let o = 0;
  for (let i = 0; i < text.length; i += 3) {
    const group = text.slice(i, i + 3);
    let n = 0;
    for (let j = group.length - 1; j >= 0; j--) {
      const v = VALUE.get(group[j]);
      if (v === undefined) {
        throw new Base45Error(`character ${JSON.stringify(group[j])} at ${i + j} is not base45`);
      }
      n = n * 45 + v;
    }
    if (group.length === 3) {
      if (n > 0xffff) throw new Base45Error(`group at ${i} exceeds 65535`);
      out[o++] = n >> 8;
      out[o++] = n & 0xff;
    } else {
      if (n > 0xff) throw new Base45Error(`final group at ${i} exceeds 255`);
      out[o++] = n;
    }
  }
  return out;
}
