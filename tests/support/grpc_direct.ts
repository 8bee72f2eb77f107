/**
 * Raw gRPC straight into the controller's gRPC server (its `accept` of
 * streams the relays hand over), with a chosen leaf as the TLS client: for
 * tests of who gets in and of which certificate the server presents.
 */
// deno-lint-ignore-file no-explicit-any
import http2 from "node:http2";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { duplexPair } from "../../relay/transport.ts";
import { CALL_DEADLINE_MS } from "./relay_harness.ts";
import { WAIT_MS, within } from "./wait.ts";

export interface Leaf {
  keyPem: string;
  chainPem: string;
}

/** A TLS connection into `accept` with `leaf` as the client (the handshake not awaited). */
export function directTls(accept: (c: Duplex) => void, caPem: string, leaf: Leaf): tls.TLSSocket {
  const [mine, theirs] = duplexPair();
  accept(theirs);
  const socket = tls.connect({
    socket: mine as any,
    servername: "coxswain-grpc",
    ca: caPem,
    key: leaf.keyPem,
    cert: leaf.chainPem,
    ALPNProtocols: ["h2"],
  });
  socket.on("error", () => {});
  return socket;
}

/** An HTTP/2 session over `socket`. */
export function sessionOver(socket: tls.TLSSocket): http2.ClientHttp2Session {
  const session = http2.connect("https://coxswain-grpc", { createConnection: () => socket });
  session.on("error", () => {});
  return session;
}

/** One Echo/Unary call on `session`: its grpc-status and grpc-message (none when refused). */
export async function echoOn(
  session: http2.ClientHttp2Session,
): Promise<{ status?: string; message?: string }> {
  const req = session.request({
    ":method": "POST",
    ":path": "/pharos.test.v1.Echo/Unary",
    "content-type": "application/grpc",
    te: "trailers",
    // The call's deadline (the wait for the stream below is bounded too).
    "grpc-timeout": `${CALL_DEADLINE_MS}m`,
  });
  req.end(new Uint8Array(5));
  req.on("data", () => {});
  req.on("error", () => {});
  let out: { status?: string; message?: string } = {};
  const grab = (h: http2.IncomingHttpHeaders) => {
    if (h["grpc-status"] !== undefined) {
      out = {
        status: String(h["grpc-status"]),
        message: decodeURIComponent(String(h["grpc-message"] ?? "")),
      };
    }
  };
  req.on("response", grab);
  req.on("trailers", grab);
  await within(
    new Promise((r) => req.on("close", r)),
    CALL_DEADLINE_MS + WAIT_MS,
    "the direct call's stream to close",
  );
  return out;
}

/** One call on a new connection with `leaf`, closed afterwards. */
export async function directCall(
  accept: (c: Duplex) => void,
  caPem: string,
  leaf: Leaf,
): Promise<{ status?: string; message?: string }> {
  const session = sessionOver(directTls(accept, caPem, leaf));
  try {
    return await echoOn(session);
  } finally {
    session.destroy();
  }
}
