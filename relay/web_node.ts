/** Bridges between Node streams (TLS, http2, grpc-js) and WHATWG duplexes (core/mux). */
import { Duplex } from "node:stream";
import type { Duplex as WebDuplex } from "../core/mux/mod.ts";

/** A Node duplex (e.g. a TLS socket) as WHATWG readable/writable. */
export function nodeToWeb(socket: Duplex): WebDuplex {
  const web = Duplex.toWeb(socket);
  return {
    readable: web.readable as ReadableStream<Uint8Array>,
    writable: web.writable as WritableStream<Uint8Array>,
  };
}

/** A WHATWG duplex (e.g. a mux stream) as a Node duplex for TLS / grpc-js. */
export function webToNode(stream: WebDuplex): Duplex {
  return Duplex.fromWeb(stream as unknown as Parameters<typeof Duplex.fromWeb>[0]);
}
