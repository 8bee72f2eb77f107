import { PharosError } from "../errors.ts";

/**
 * Every multiplexer failure. Codes are stable.
 *
 * Protocol errors (the peer broke the yamux wire rules; the session is closed
 * after a go-away with the protocol-error code): bad-version, bad-type,
 * bad-flags, bad-stream-id, wrong-parity, duplicate-stream (a SYN for a stream
 * that is open), unknown-stream (a frame for an id never opened),
 * frame-too-large, window-exceeded, window-overflow, data-after-fin,
 * bad-go-away-code, truncated-frame.
 *
 * Session ends: remote-closed (the connection ended between frames),
 * remote-go-away-protocol-error, remote-go-away-internal-error,
 * keepalive-timeout, write-timeout, connection-error (the transport failed),
 * internal (a bug; go-away code 2 is sent), session-closed.
 *
 * Per call or per stream: go-away (no new streams after a go-away),
 * too-many-streams, ping-timeout, stream-reset (the peer reset the stream),
 * stream-reset-local, stream-open-timeout, stream-cancelled, bad-chunk,
 * bad-options, bad-transport, bad-frame-field (encoding), stream-ids-exhausted.
 */
export class MuxError extends PharosError {}

/** Codes that mean the peer violated the protocol (go-away code 1 is sent). */
export const PROTOCOL_ERROR_CODES: ReadonlySet<string> = new Set([
  "bad-version",
  "bad-type",
  "bad-flags",
  "bad-stream-id",
  "wrong-parity",
  "duplicate-stream",
  "unknown-stream",
  "frame-too-large",
  "window-exceeded",
  "window-overflow",
  "data-after-fin",
  "bad-go-away-code",
  "truncated-frame",
]);
