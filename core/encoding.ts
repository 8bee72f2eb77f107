/**
 * Byte encodings used on the wire: standard base64 with padding (Go's
 * encoding/json for []byte), base64url without padding, lowercase hex.
 * Decoders are strict and throw EncodingError naming the field.
 */
import { PharosError } from "./errors.ts";

export class EncodingError extends PharosError {}

/** Standard base64 with `=` padding (RFC 4648 §4). */
export function toBase64(bytes: Uint8Array): string {
  return bytes.toBase64();
}

/**
 * Decodes standard padded base64. `expectLength`, when given, is enforced.
 * @example fromBase64("AAE=", "salt") // Uint8Array [0, 1]
 */
export function fromBase64(text: string, field = "value", expectLength?: number): Uint8Array {
  let out: Uint8Array;
  if (typeof text !== "string" || text.length % 4 !== 0) {
    throw new EncodingError("bad-base64", `${field}: not padded standard base64`);
  }
  try {
    out = Uint8Array.fromBase64(text, { alphabet: "base64", lastChunkHandling: "strict" });
  } catch (e) {
    throw new EncodingError(
      "bad-base64",
      `${field}: not standard base64 (${(e as Error).message})`,
    );
  }
  checkLength(out, field, expectLength);
  return out;
}

/** base64url without padding (RFC 4648 §5). */
export function toBase64Url(bytes: Uint8Array): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

export function fromBase64Url(text: string, field = "value", expectLength?: number): Uint8Array {
  if (typeof text !== "string" || text.includes("=")) {
    throw new EncodingError("bad-base64url", `${field}: not unpadded base64url`);
  }
  let out: Uint8Array;
  try {
    // Re-pad so that strict mode also rejects non-zero trailing bits.
    const padded = text + "=".repeat((4 - (text.length % 4)) % 4);
    out = Uint8Array.fromBase64(padded, { alphabet: "base64url", lastChunkHandling: "strict" });
  } catch (e) {
    throw new EncodingError("bad-base64url", `${field}: not base64url (${(e as Error).message})`);
  }
  checkLength(out, field, expectLength);
  return out;
}

/** Lowercase hex. */
export function toHex(bytes: Uint8Array): string {
  return bytes.toHex();
}

export function fromHex(text: string, field = "value", expectLength?: number): Uint8Array {
  let out: Uint8Array;
  try {
    out = Uint8Array.fromHex(text);
  } catch {
    throw new EncodingError("bad-hex", `${field}: not hex`);
  }
  checkLength(out, field, expectLength);
  return out;
}

function checkLength(out: Uint8Array, field: string, expect?: number): void {
  if (expect !== undefined && out.length !== expect) {
    throw new EncodingError("bad-length", `${field}: expected ${expect} bytes, got ${out.length}`);
  }
}

export const utf8 = {
  encode: (s: string): Uint8Array => new TextEncoder().encode(s),
  decode: (b: Uint8Array): string => new TextDecoder("utf-8", { fatal: true }).decode(b),
};

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** SHA-256 via WebCrypto. */
export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
}

/**
 * A byte stream decoded as UTF-8 text. (Typed here once: a program that also
 * loads the DOM library types TextDecoderStream's input as any BufferSource,
 * which `pipeThrough` then refuses for a Uint8Array stream.)
 *
 * @example for await (const text of decodeText(child.stdout)) console.log(text);
 */
export function decodeText(stream: ReadableStream<Uint8Array>): ReadableStream<string> {
  return stream.pipeThrough(new TextDecoderStream() as TransformStream<Uint8Array, string>);
}
