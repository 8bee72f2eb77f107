/**
 * The client-facing listener: TLS ≥ 1.2 with ALPN h2 (the original Go
 * clients require it), the relay certificate, and an optional device
 * certificate that, when given, must be a valid Device-CA leaf — otherwise
 * the connection is closed right after the handshake.
 */
import http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import type { Logger } from "../core/log.ts";
import { STREAM_WINDOW } from "./backend.ts";
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
  log: Logger;
  handshakeTimeoutMs?: number;
}

export function createClientServer(opts: ClientListenerOptions): http2.Http2SecureServer {
  const server = http2.createSecureServer({
    cert: opts.certPem,
    key: opts.keyPem,
    ca: opts.deviceCaPem,
    requestCert: true,
    rejectUnauthorized: false, // a certificate is optional; checked below when given
    minVersion: "TLSv1.2",
    ALPNProtocols: ["h2"],
    // Bounds for a public listener: a client that never finishes its
    // handshake, opens endless streams or sends huge headers is cut off.
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
      opts.log.warn("device certificate refused", { remote: socket.remoteAddress, error: e });
    });
  });
  server.on("stream", opts.onStream);
  server.on("sessionError", () => {});
  return server;
}
