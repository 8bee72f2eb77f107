/**
 * core/mux: a yamux-compatible stream multiplexer (hashicorp/yamux wire
 * format, CONTRACTS.md §3.4) on WHATWG streams, for the relay's reverse
 * tunnel and control-plane egress.
 */
export * from "./errors.ts";
export * from "./frame.ts";
export { type Duplex, memoryDuplexPair } from "./pipe.ts";
export { MAX_SEND_WINDOW, type MuxOptions, MuxSession } from "./session.ts";
export { PeerIds } from "./ids.ts";
export { MuxStream } from "./stream.ts";
