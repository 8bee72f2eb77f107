/**
 * The transparent gRPC proxy. Every call arriving on the client listener is
 * forwarded to the same method on the controller without decoding a single
 * message: headers (minus every client-supplied `x-pharos-*` key, plus the
 * verified device fingerprint), DATA and trailers pass through, statuses and
 * trailers come back as the controller sent them.
 */
import http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import type { Logger } from "../core/log.ts";
import { PkiError, type VerifiedCertificate } from "../core/pki/mod.ts";
import { type Backend, CONTROLLER_SERVER_NAME } from "./backend.ts";
import type { DeviceAuth } from "./device_auth.ts";
import { encodeGrpcMessage, Status } from "./grpc_status.ts";
import { MessageScanner, MessageTooLarge, RELAY_MAX_MESSAGE } from "./message_limit.ts";

/** The one method a client may call without a device certificate. */
export const CLAIM_METHOD = "/pharos.account.v1.AccountSync/ClaimEnrollment";
/** The only metadata key the relay writes; clients can never set it. */
export const DEVICE_FP_HEADER = "x-pharos-device-fp";

const METHOD_PATH = /^\/[A-Za-z0-9_.]{1,200}\/[A-Za-z0-9_]{1,100}$/;
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "host",
  "http2-settings",
]);

export interface ProxyOptions {
  backend: Backend;
  devices: DeviceAuth;
  log: Logger;
  maxMessageBytes?: number;
}

type Headers = http2.IncomingHttpHeaders | http2.OutgoingHttpHeaders;

/** Copies forwardable headers: no pseudo-headers, no hop-by-hop, no x-pharos-*. */
export function forwardableHeaders(h: Headers): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    const key = k.toLowerCase();
    if (
      key.startsWith(":") || HOP_BY_HOP.has(key) || key.startsWith("x-pharos-") || v === undefined
    ) continue;
    out[key] = v;
  }
  return out;
}

/** Returns the handler for the client listener's `stream` events. */
export function createProxy(
  opts: ProxyOptions,
): (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void {
  const max = opts.maxMessageBytes ?? RELAY_MAX_MESSAGE;
  return (stream, headers) => {
    void proxyCall(stream, headers, opts, max);
  };
}

async function proxyCall(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  opts: ProxyOptions,
  max: number,
): Promise<void> {
  const started = performance.now();
  const method = String(headers[":path"] ?? "");
  let device: VerifiedCertificate | null = null;
  let trailers: Record<string, string> | undefined;
  let logged = false;
  const finish = (status: number | string, extra: Record<string, unknown> = {}) => {
    if (logged) return;
    logged = true;
    opts.log.info("call", {
      method: method.slice(0, 120),
      status: Number(status),
      ms: Math.round((performance.now() - started) * 100) / 100,
      device: device ? device.fingerprint.slice(0, 19) : null,
      ...extra,
    });
  };
  const fail = (code: number, message: string) => {
    finish(code);
    if (stream.destroyed || stream.closed) return;
    const status = { "grpc-status": String(code), "grpc-message": encodeGrpcMessage(message) };
    if (!stream.headersSent) {
      stream.respond({ ":status": 200, "content-type": "application/grpc", ...status }, {
        endStream: true,
      });
    } else {
      trailers = status;
      stream.end();
    }
  };
  stream.on("error", () => {}); // a client reset surfaces through "close"
  stream.on(
    "wantTrailers",
    () => stream.sendTrailers(trailers ?? { "grpc-status": String(Status.UNKNOWN) }),
  );

  if (headers[":method"] !== "POST" || !METHOD_PATH.test(method)) {
    return fail(Status.UNIMPLEMENTED, `relay: "${method.slice(0, 80)}" is not a gRPC method path`);
  }
  try {
    device = await opts.devices.identify(stream.session!.socket as TLSSocket);
  } catch (e) {
    return fail(
      Status.UNAUTHENTICATED,
      `relay: device certificate refused: ${e instanceof PkiError ? e.message : "invalid"}`,
    );
  }
  if (!device && method !== CLAIM_METHOD) {
    return fail(Status.UNAUTHENTICATED, `relay: ${method} requires a device certificate`);
  }

  const out: http2.OutgoingHttpHeaders = {
    ":method": "POST",
    ":path": method,
    ":scheme": "https",
    // The controller's service name (CONTRACTS 3.3), never the client's value.
    ":authority": CONTROLLER_SERVER_NAME,
    ...forwardableHeaders(headers),
  };
  if (device) out[DEVICE_FP_HEADER] = device.fingerprint;

  let session: http2.ClientHttp2Session;
  let req: http2.ClientHttp2Stream;
  try {
    session = await opts.backend.session();
    if (stream.destroyed) return finish(Status.CANCELLED);
    req = session.request(out);
  } catch (e) {
    opts.log.warn("controller unreachable", { error: e });
    return fail(Status.UNAVAILABLE, "relay: the controller is unreachable; try again shortly");
  }
  req.on("error", () => {}); // handled on "close"

  // Client → controller, with the size cap and backpressure.
  const upScan = new MessageScanner(max);
  stream.on("data", (chunk: Uint8Array) => {
    try {
      upScan.feed(chunk);
    } catch (e) {
      req.close(http2.constants.NGHTTP2_CANCEL);
      return fail(Status.RESOURCE_EXHAUSTED, `relay: ${(e as MessageTooLarge).message}`);
    }
    if (!req.write(chunk)) {
      stream.pause();
      req.once("drain", () => stream.resume());
    }
  });
  stream.on("end", () => req.end());
  stream.on("close", () => {
    if (!req.closed) req.close(http2.constants.NGHTTP2_CANCEL);
    if (!logged) finish(Status.CANCELLED);
  });

  // Controller → client. Trailers wait for the last DATA write to flush:
  // ending the stream earlier can drop queued DATA on some HTTP/2 stacks.
  let lastWrite: Promise<void> = Promise.resolve();
  const downScan = new MessageScanner(max);
  req.on("response", (h) => {
    if (stream.destroyed) return;
    const fwd = { ":status": Number(h[":status"] ?? 200), ...forwardableHeaders(h) };
    if (h["grpc-status"] !== undefined) {
      // Trailers-only response: the status travels in the headers.
      stream.respond(fwd, { endStream: true });
      finish(String(h["grpc-status"]));
      return;
    }
    stream.respond(fwd, { waitForTrailers: true });
  });
  req.on("data", (chunk: Uint8Array) => {
    if (stream.destroyed || !stream.headersSent) return;
    try {
      downScan.feed(chunk);
    } catch (e) {
      req.close(http2.constants.NGHTTP2_CANCEL);
      return fail(Status.RESOURCE_EXHAUSTED, `relay: ${(e as MessageTooLarge).message}`);
    }
    let flushed!: () => void;
    lastWrite = new Promise((resolve) => (flushed = resolve));
    if (!stream.write(chunk, () => flushed())) {
      req.pause();
      stream.once("drain", () => req.resume());
    }
  });
  // The call is complete once every DATA byte was passed on ("end") AND the
  // trailers arrived; "close" can come first while paused data is pending.
  let ended = false;
  const complete = () => {
    if (logged || stream.destroyed || !ended || !trailers || !stream.headersSent) return;
    finish(trailers["grpc-status"] ?? Status.UNKNOWN);
    void lastWrite.then(() => stream.end());
  };
  req.on("trailers", (t) => {
    trailers = forwardableHeaders(t) as Record<string, string>;
    complete();
  });
  req.on("end", () => {
    ended = true;
    complete();
  });
  req.on("close", () => {
    if (logged || stream.destroyed) return;
    if (trailers && req.rstCode === http2.constants.NGHTTP2_NO_ERROR) return complete();
    fail(Status.UNAVAILABLE, "relay: the connection to the controller was lost during the call");
  });
}
