/**
 * The byte duplex a multiplexer session runs over, and an in-memory pair of
 * connected duplexes for tests.
 */
import { MuxError } from "./errors.ts";

/** A bidirectional byte stream: TCP, TLS, an in-memory pipe, a mux stream. */
export interface Duplex {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
}

function oneWay(highWaterMark: number): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream<Uint8Array, Uint8Array>(
    {
      transform(chunk, controller) {
        if (!(chunk instanceof Uint8Array)) {
          throw new MuxError("bad-chunk", "memory pipe accepts only Uint8Array chunks");
        }
        // Copy: the writer may reuse its buffer once the write resolved.
        if (chunk.length > 0) controller.enqueue(chunk.slice());
      },
    },
    undefined,
    new ByteLengthQueuingStrategy({ highWaterMark }),
  );
}

/**
 * Two connected in-memory duplexes: bytes written to `a.writable` come out of
 * `b.readable` and the other way round. Each direction buffers at most
 * `highWaterMark` bytes (default 64 KiB) plus one chunk before writes wait,
 * like a socket buffer. Closing a writable ends the other side's readable;
 * cancelling a readable errors the other side's writable.
 */
export function memoryDuplexPair(highWaterMark = 64 * 1024): [Duplex, Duplex] {
  const ab = oneWay(highWaterMark);
  const ba = oneWay(highWaterMark);
  return [
    { readable: ba.readable, writable: ab.writable },
    { readable: ab.readable, writable: ba.writable },
  ];
}
