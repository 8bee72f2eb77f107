/**
 * The SSH wire encoding of strings (RFC 4251 §5: uint32 length + bytes),
 * as public key blobs and the OpenSSH private key format use it.
 */
import { concat, utf8 } from "../../core/encoding.ts";
import { SshError } from "./errors.ts";

export function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

export function sshString(data: Uint8Array | string): Uint8Array {
  const bytes = typeof data === "string" ? utf8.encode(data) : data;
  return concat(u32(bytes.length), bytes);
}

/** Reads consecutive SSH strings from a blob. */
export class WireReader {
  #at = 0;
  constructor(readonly bytes: Uint8Array) {}

  get done(): boolean {
    return this.#at === this.bytes.length;
  }

  u32(): number {
    if (this.#at + 4 > this.bytes.length) throw new SshError("bad-key", "truncated SSH data");
    const v = new DataView(this.bytes.buffer, this.bytes.byteOffset + this.#at, 4).getUint32(0);
    this.#at += 4;
    return v;
  }

  string(): Uint8Array {
    const n = this.u32();
    if (n > this.bytes.length - this.#at) throw new SshError("bad-key", "truncated SSH data");
    const out = this.bytes.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }

  text(): string {
    return utf8.decode(this.string());
  }
}
