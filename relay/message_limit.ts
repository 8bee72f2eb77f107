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
  #messages = 0;

  /** `maxMessages`: most messages allowed in the stream (a unary request has one). */
  constructor(private readonly max: number, private readonly maxMessages = Infinity) {}

  /** Messages whose header has been seen. */
  get messages(): number {
    return this.#messages;
  }

  /** True between messages (no header or body bytes outstanding). */
  get atBoundary(): boolean {
    return this.#have === 0 && this.#remaining === 0;
  }

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
        if (++this.#messages > this.maxMessages) {
          throw new MessageTooLarge(
            "too-many-messages",
            `more than ${this.maxMessages} gRPC message(s) in one call to this method`,
          );
        }
        this.#remaining = len;
      }
    }
  }
}
