/**
 * Reads frames off a byte stream without copying payloads: headers are
 * decoded in place when they sit inside one chunk, bodies are handed out as
 * views of the chunks the transport produced.
 */
import { MuxError } from "./errors.ts";
import { type FrameHeader, HEADER_LENGTH, readHeader } from "./frame.ts";

const EMPTY = new Uint8Array(0);

export class FrameInput {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #chunk: Uint8Array = EMPTY;
  #pos = 0;
  #scratch = new Uint8Array(HEADER_LENGTH);

  constructor(readable: ReadableStream<Uint8Array>) {
    this.#reader = readable.getReader();
  }

  /** Makes unread bytes available; false at end of input. */
  async #fill(): Promise<boolean> {
    while (this.#pos >= this.#chunk.length) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await this.#reader.read();
      } catch (e) {
        throw new MuxError("connection-error", `reading from the transport failed: ${e}`, {
          cause: e,
        });
      }
      if (r.done) return false;
      if (!(r.value instanceof Uint8Array)) {
        throw new MuxError(
          "connection-error",
          "the transport produced a chunk that is not a Uint8Array",
        );
      }
      this.#chunk = r.value;
      this.#pos = 0;
    }
    return true;
  }

  /** The next header (unvalidated), or null if input ended between frames. */
  async header(): Promise<FrameHeader | null> {
    if (this.#pos >= this.#chunk.length && !(await this.#fill())) return null;
    if (this.#chunk.length - this.#pos >= HEADER_LENGTH) {
      const h = readHeader(this.#chunk, this.#pos);
      this.#pos += HEADER_LENGTH;
      return h;
    }
    let filled = 0;
    while (filled < HEADER_LENGTH) {
      if (!(await this.#fill())) {
        throw new MuxError("truncated-frame", "the connection ended inside a yamux frame header");
      }
      const take = Math.min(HEADER_LENGTH - filled, this.#chunk.length - this.#pos);
      this.#scratch.set(this.#chunk.subarray(this.#pos, this.#pos + take), filled);
      this.#pos += take;
      filled += take;
    }
    return readHeader(this.#scratch, 0);
  }

  /** Up to `max` (> 0) body bytes, as a view; throws if input ends first. */
  async piece(max: number): Promise<Uint8Array> {
    if (this.#pos >= this.#chunk.length && !(await this.#fill())) {
      throw new MuxError("truncated-frame", "the connection ended inside a yamux data frame");
    }
    const end = Math.min(this.#chunk.length, this.#pos + max);
    const out = this.#chunk.subarray(this.#pos, end);
    this.#pos = end;
    return out;
  }

  /** Stops reading; a pending header()/piece() sees the end of input. */
  async cancel(reason: unknown): Promise<void> {
    try {
      await this.#reader.cancel(reason);
    } catch {
      // the transport already failed; nothing more to release
    }
  }
}
