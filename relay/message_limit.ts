/**
 * Enforces the gRPC message size cap on a byte stream of length-prefixed
 * messages (1 flag byte + 4-byte big-endian length + body) without decoding
 * bodies: a message over the cap is rejected at its 5-byte header, before
 * any of its body is forwarded.
 */
import { PharosError } from "../core/errors.ts";

export class MessageTooLarge extends PharosError {}

/** 16 MiB, the relay's cap in both directions (CONTRACTS.md §3.2). */
export const RELAY_MAX_MESSAGE = 16 * 1024 * 1024;

export class MessageScanner {
  #header = new Uint8Array(5);
  #have = 0; // header bytes collected
  #remaining = 0; // body bytes left in the current message

  constructor(private readonly max: number) {}

  /** Follows the framing through `chunk`; throws MessageTooLarge. */
  feed(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#remaining > 0) {
        const n = Math.min(this.#remaining, chunk.length - i);
        this.#remaining -= n;
        i += n;
        continue;
      }
      this.#header[this.#have++] = chunk[i++];
      if (this.#have === 5) {
        this.#have = 0;
        const len = new DataView(this.#header.buffer).getUint32(1);
        if (len > this.max) {
          throw new MessageTooLarge(
            "too-large",
            `gRPC message of ${len} bytes exceeds the relay limit of ${this.max} bytes`,
          );
        }
        this.#remaining = len;
      }
    }
  }
}
