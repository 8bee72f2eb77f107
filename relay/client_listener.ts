/**
 * The client-facing listener: TLS ≥ 1.2 with ALPN h2 (the original Go
 * clients require it), the relay certificate, and an optional device
 * certificate that, when given, must be a valid Device-CA leaf — otherwise
 * the connection is closed right after the handshake.
 *
 * The HTTP/2 server never listens itself: a GuardedListener (conn_guard.ts)
 * accepts, applies the connection caps and hands connections over;
 * `guardClientServer` reports each connection's steps to it — TLS done,
 * HTTP/2 preface (the client's first SETTINGS) received, calls starting and
 * ending — so handshake, preface and idle limits apply.
 */
import http2 from "node:http2";
import type { SecureContextOptions, TLSSocket } from "node:tls";
import type { Logger } from "../core/log.ts";
import { STREAM_WINDOW } from "./backend.ts";
import { type GuardedListener, rawSocketOf } from "./conn_guard.ts";
import type { DeviceAuth } from "./device_auth.ts";

export const CLIENT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Concurrent calls per client connection. */
export const CLIENT_MAX_STREAMS = 128;
/** Largest header block (metadata) a client may send. */
export const CLIENT_MAX_HEADER_BYTES = 64 * 1024;

export interface ClientListenerOptions {
  /** Relay leaf + Fleet CA, PEM. */
  certPem: string;
  keyPem: string;
  /** Device CA PEM: the only issuer of client certificates. */
  deviceCaPem: string;
  devices: DeviceAuth;
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;
  /** Per-connection lines (a refused certificate): pass a rate-limited logger. */
  log: Logger;
  handshakeTimeoutMs?: number;
}

/**
 * The listener's certificate, key and trust: what `createClientServer`
 * starts with and what `server.setSecureContext` takes to switch to a
 * renewed certificate while running (new connections get it, open ones
 * keep theirs).
 */
export function clientSecureContext(
  opts: Pick<ClientListenerOptions, "certPem" | "keyPem" | "deviceCaPem">,
): SecureContextOptions {
  return { cert: opts.certPem, key: opts.keyPem, ca: opts.deviceCaPem, minVersion: "TLSv1.2" };
}

export function createClientServer(opts: ClientListenerOptions): http2.Http2SecureServer {
  const server = http2.createSecureServer({
    ...clientSecureContext(opts),
    requestCert: true,
    rejectUnauthorized: false, // a certificate is optional; checked below when given
    ALPNProtocols: ["h2"],
    // The guard enforces the handshake limit itself (Deno reports this
    // timeout without closing the socket); kept as a second line.
    handshakeTimeout: opts.handshakeTimeoutMs ?? CLIENT_HANDSHAKE_TIMEOUT_MS,
    settings: {
      maxConcurrentStreams: CLIENT_MAX_STREAMS,
      maxHeaderListSize: CLIENT_MAX_HEADER_BYTES,
      initialWindowSize: STREAM_WINDOW,
    },
  });
  // A refused certificate does not close the connection: every call on it
  // is answered UNAUTHENTICATED with the reason, which tells the user more
  // than a failed handshake would. Nothing is forwarded for it.
  server.on("secureConnection", (socket: TLSSocket) => {
    opts.devices.identify(socket).catch((e) => {
      opts.log.warn("device certificate refused", {
        code: "device-cert-refused",
        remote: socket.remoteAddress,
        error: e,
      });
    });
  });
  server.on("stream", opts.onStream);
  server.on("sessionError", () => {});
  return server;
}

/** Reports the steps of every connection of `server` to `guard` (see the module comment). */
export function guardClientServer(server: http2.Http2SecureServer, guard: GuardedListener): void {
  server.on("secureConnection", (socket: TLSSocket) => guard.handshakeDone(socket));
  // A failed or timed-out handshake: Deno does not close the socket itself.
  server.on("tlsClientError", (_e: Error, socket: TLSSocket) => socket?.destroy());
  server.on("session", (session: http2.ServerHttp2Session) => {
    // The raw socket, taken now: the session's socket (a proxy) throws once
    // the session is gone, and calls end after that.
    const socket = rawSocketOf(session.socket);
    if (!socket) return;
    session.once("remoteSettings", () => {
      guard.handshakeDone(socket);
      guard.established(socket, () => session.close());
    });
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      guard.activity(socket, 1);
      stream.once("close", () => guard.activity(socket, -1));
    });
  });
}
