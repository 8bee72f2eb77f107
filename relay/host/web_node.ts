/** Bridges between Node streams (TLS, http2, grpc-js) and WHATWG duplexes (core/mux). */
import { Duplex, finished, Readable } from "node:stream";
import type { Duplex as WebDuplex } from "../../core/mux/mod.ts";

/** A Node duplex (e.g. a TLS socket) as WHATWG readable/writable (what Duplex.toWeb gives). */
export function nodeToWeb(socket: Duplex): WebDuplex {
  if (socket.destroyed) return Duplex.toWeb(socket) as WebDuplex;
  return {
    readable: Readable.toWeb(socket) as ReadableStream<Uint8Array>,
    writable: writableOf(socket),
  };
}

/**
 * The writable side of `socket`, as Duplex.toWeb builds it minus its crash:
 * closing it after the socket ended on its own (a socket without half-open
 * ends its side when the peer's FIN arrives) must not throw when the socket
 * then finishes. Deno's adapter drops its controller in that case and its
 * end-of-stream callback then calls `undefined.error(...)` inside the
 * "finish" event, an uncaught TypeError that kills the process (Node issue
 * 64120, same code).
 */
function writableOf(socket: Duplex): WritableStream<Uint8Array> {
  if (!socket.writable) {
    const closed = new WritableStream<Uint8Array>();
    closed.close();
    return closed;
  }
  let controller: WritableStreamDefaultController | undefined;
  let drained: PromiseWithResolvers<void> | undefined;
  let closing: PromiseWithResolvers<void> | undefined;
  socket.on("drain", () => drained?.resolve());
  const cleanup = finished(socket, (err) => {
    cleanup();
    // Legacy streams may emit "error" again after finishing.
    socket.on("error", () => {});
    if (err == null && closing !== undefined) {
      closing.resolve();
      closing = undefined;
      return;
    }
    const e = err ?? new Error("the socket closed before the stream was closed");
    drained?.reject(e);
    closing?.reject(e);
    closing = undefined;
    controller?.error(e);
    controller = undefined;
  });
  return new WritableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    write(chunk) {
      if (socket.writableNeedDrain || !socket.write(chunk)) {
        drained = Promise.withResolvers();
        return drained.promise.finally(() => drained = undefined);
      }
    },
    abort(reason) {
      socket.destroy(reason instanceof Error ? reason : undefined);
    },
    close() {
      if (closing === undefined && !socket.writableEnded) {
        closing = Promise.withResolvers();
        socket.end();
        return closing.promise;
      }
      // Already ended (e.g. by the peer's FIN): nothing left to do.
      controller = undefined;
    },
  }, { highWaterMark: socket.writableHighWaterMark });
}

/** A WHATWG duplex (e.g. a mux stream) as a Node duplex for TLS / grpc-js. */
export function webToNode(stream: WebDuplex): Duplex {
  return Duplex.fromWeb(stream as unknown as Parameters<typeof Duplex.fromWeb>[0]);
}
