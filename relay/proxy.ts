/**
 * The transparent gRPC proxy. Every call arriving on the client listener is
 * forwarded to the same method on the controller without decoding a single
 * message: headers (minus every client-supplied `x-pharos-*` key, plus the
 * verified device fingerprint), DATA and trailers pass through, statuses and
 * trailers come back as the controller sent them.
 *
 * One client only ever affects itself (stream_limits.ts): every call is
 * admitted against per-connection, per-peer and relay-wide limits (refused
 * alone with REFUSED_STREAM beyond them) and holds its slots until both of
 * its streams are closed; resets towards the controller are paced. A
 * certificate-less claim is read whole (one message of at most 64 KiB)
 * before anything reaches the controller, travels on its own session, and
 * once sent is left to finish rather than reset when its client leaves.
 * Buffering follows the slowest side: the relay stops reading from one side
 * while the other is full, so a call whose client stops reading holds at
 * most the controller leg's stream window. Calls of a device whose
 * certificate gets revoked end at once with UNAUTHENTICATED.
 */
import http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import type { Logger } from "../core/log.ts";
import { PkiError, type VerifiedCertificate } from "../core/pki/mod.ts";
import { type Backend, CONTROLLER_SERVER_NAME } from "./backend.ts";
import type { DeviceAuth } from "./device_auth.ts";
import { encodeGrpcMessage, Status } from "./grpc_status.ts";
import { MessageScanner, MessageTooLarge, RELAY_MAX_MESSAGE } from "./message_limit.ts";
import {
  addressKey,
  CLAIM_METHOD,
  METHOD_CAPS,
  type ResetPacer,
  StreamLimits,
  type StreamLimitSettings,
  type StreamSlot,
} from "./stream_limits.ts";

export { CLAIM_METHOD };
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
  /** Stream limits (an instance to share, or settings over the defaults). */
  limits?: StreamLimits | Partial<StreamLimitSettings>;
  /** A certificate-less client must send its whole request within this (default 10 s). */
  claimRequestTimeoutMs?: number;
  /** A sent claim whose client left is reset if still open after this (default 15 s). */
  abandonedClaimMs?: number;
  /** How often open calls are checked against the revocation list (default 2 s). */
  revocationSweepMs?: number;
}

/** The stream handler, with its limits and open calls for inspection. */
export interface ProxyHandler {
  (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void;
  readonly limits: StreamLimits;
  /** Calls of certificate holders open now, by certificate serial. */
  readonly deviceCalls: ReadonlyMap<string, ReadonlySet<unknown>>;
}

const CLAIM_REQUEST_TIMEOUT_MS = 10_000;
const ABANDONED_CLAIM_MS = 15_000;
const REVOCATION_SWEEP_MS = 2000;

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

/** `address:port` of the client of `stream` (`[v6]:port`), or null once its connection is gone. */
export function remoteOf(stream: http2.ServerHttp2Stream): string | null {
  try {
    const socket = stream.session?.socket;
    const addr = socket?.remoteAddress;
    if (!addr) return null;
    return `${addr.includes(":") ? `[${addr}]` : addr}:${socket.remotePort}`;
  } catch {
    return null; // the session's socket proxy throws once the session is gone
  }
}

/** Returns the handler for the client listener's `stream` events. */
export function createProxy(opts: ProxyOptions): ProxyHandler {
  const max = opts.maxMessageBytes ?? RELAY_MAX_MESSAGE;
  const limits = opts.limits instanceof StreamLimits
    ? opts.limits
    : new StreamLimits(opts.limits, opts.log);
  const calls = new RevocationTracker(opts.devices, opts.revocationSweepMs ?? REVOCATION_SWEEP_MS);
  const ctx: CallContext = { opts, max, limits, calls };
  const handler = ((stream, headers) => {
    proxyCall(stream, headers, ctx).catch((e) => {
      // E.g. the connection went away mid-call ("socket disconnected from the Http2Session").
      try {
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      } catch {
        // already gone
      }
      opts.log.warn("call aborted", { code: "proxy-aborted", error: e });
    });
  }) as ProxyHandler;
  Object.defineProperty(handler, "limits", { value: limits });
  Object.defineProperty(handler, "deviceCalls", { get: () => calls.bySerial });
  return handler;
}

interface CallContext {
  opts: ProxyOptions;
  max: number;
  limits: StreamLimits;
  calls: RevocationTracker;
}

/**
 * Open calls of certificate holders by serial. A revocation ends them: at
 * once when a relay policy replaces the list, otherwise (a list shared with
 * the controller) at the next sweep. The watcher and the sweep run only
 * while such calls are open.
 */
class RevocationTracker {
  readonly bySerial = new Map<string, Set<() => void>>();
  #timer?: ReturnType<typeof setInterval>;
  #unwatch?: () => void;

  constructor(private readonly devices: DeviceAuth, private readonly sweepMs: number) {}

  add(serial: string, revoke: () => void): () => void {
    let set = this.bySerial.get(serial);
    if (!set) this.bySerial.set(serial, set = new Set());
    set.add(revoke);
    if (!this.#timer) {
      this.#timer = setInterval(() => this.sweep(), this.sweepMs);
      this.#unwatch = this.devices.watch(() => this.sweep());
    }
    return () => {
      set.delete(revoke);
      if (set.size === 0 && this.bySerial.get(serial) === set) this.bySerial.delete(serial);
      if (this.bySerial.size === 0) this.#stop();
    };
  }

  sweep(): void {
    for (const [serial, set] of [...this.bySerial]) {
      if (!this.devices.isRevoked(serial)) continue;
      for (const revoke of [...set]) revoke();
    }
  }

  #stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#unwatch?.();
    this.#unwatch = undefined;
  }
}

/** Reads a certificate-less request whole: one capped message, within a deadline. */
function readWholeRequest(
  stream: http2.ServerHttp2Stream,
  scan: MessageScanner,
  timeoutMs: number,
): Promise<Uint8Array | "cancelled" | "timeout" | MessageTooLarge> {
  return new Promise((resolve) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    const done = (r: Uint8Array | "cancelled" | "timeout" | MessageTooLarge) => {
      clearTimeout(timer);
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("close", onClose);
      resolve(r);
    };
    const timer = setTimeout(() => done("timeout"), timeoutMs);
    const onData = (chunk: Uint8Array) => {
      try {
        scan.feed(chunk);
      } catch (e) {
        return done(e as MessageTooLarge);
      }
      chunks.push(chunk);
      size += chunk.length;
    };
    const onEnd = () => {
      // A reset stream also ends its readable side: only a real END_STREAM counts.
      setTimeout(() => {
        if (stream.destroyed || stream.closed || (stream.rstCode ?? 0) !== 0) {
          return done("cancelled");
        }
        if (!scan.atBoundary) {
          return done(new MessageTooLarge("truncated", "the request ended inside a message"));
        }
        const all = new Uint8Array(size);
        let off = 0;
        for (const c of chunks) {
          all.set(c, off);
          off += c.length;
        }
        done(all);
      }, 0);
    };
    const onClose = () => done("cancelled");
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("close", onClose);
  });
}

/**
 * Ends a connection that cancels or overruns calls beyond its budget, or of
 * a calmed peer (stream_limits.ts CANCEL_BUDGET, CALM_MS).
 */
function endAbusive(session: http2.Http2Session, remote: string | null, log: Logger): void {
  if (session.destroyed || session.closed) return;
  log.warn("connection ended: too many cancelled or refused calls (rapid reset)", {
    code: "rapid-reset",
    remote,
  });
  session.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  session.destroy();
}

async function proxyCall(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  ctx: CallContext,
): Promise<void> {
  const { opts, max } = ctx;
  const started = performance.now();
  const method = String(headers[":path"] ?? "");
  const remote = remoteOf(stream);
  const connection = stream.session;
  let device: VerifiedCertificate | null = null;
  let trailers: Record<string, string> | undefined;
  let logged = false;
  let slot: StreamSlot | undefined = undefined;
  /** The peer key the call was admitted under (certificate or source address). */
  let peer = "";
  let untrack: (() => void) | undefined;
  let req: http2.ClientHttp2Stream | undefined;
  let pacer: ResetPacer | undefined;
  /** The request went to the controller whole (a claim): no reset when the client leaves. */
  let sentWhole = false;
  let abandonTimer: ReturnType<typeof setTimeout> | undefined;
  /** The controller sent its status: nothing of the call is left to cancel there. */
  let backendFinished = false;

  // One line per call; relay.ts passes the per-source rate-limited logger.
  const finish = (status: number | string, extra: Record<string, unknown> = {}) => {
    if (logged) return;
    logged = true;
    opts.log.info("call", {
      method: method.slice(0, 120),
      status: Number(status),
      ms: Math.round((performance.now() - started) * 100) / 100,
      device: device ? device.fingerprint.slice(0, 19) : null,
      remote,
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
      // The answer is complete: a client still sending is told to stop
      // (RST_STREAM NO_ERROR, RFC 9113 §8.1), which frees the call's slots.
      if (!stream.readableEnded) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    } else {
      trailers = status;
      stream.end();
    }
  };
  const backendOpen = () => req !== undefined && !req.closed && !req.destroyed;
  /** Frees the call's slots once both of its streams are closed. */
  const releaseIfDone = () => {
    if (!(stream.closed || stream.destroyed) || backendOpen()) return;
    clearTimeout(abandonTimer);
    slot?.release();
    untrack?.();
  };
  /** Resets the controller's side of the call within the reset budget. */
  const resetBackend = () => {
    if (!req || !backendOpen()) return;
    if (backendFinished) {
      // Ending our half closes the stream without a RST_STREAM (which would cost budget).
      if (!req.writableEnded) req.end();
      return;
    }
    req.pause();
    pacer!.reset(slot?.owner ?? "relay", req, http2.constants.NGHTTP2_CANCEL);
  };
  stream.on("error", () => {}); // a client reset surfaces through "close"
  stream.on(
    "wantTrailers",
    () => stream.sendTrailers(trailers ?? { "grpc-status": String(Status.UNKNOWN) }),
  );
  stream.on("close", () => {
    if (backendOpen()) {
      if (sentWhole) {
        // A claim the controller is answering: let it finish (no reset), within a bound.
        abandonTimer = setTimeout(resetBackend, opts.abandonedClaimMs ?? ABANDONED_CLAIM_MS);
      } else {
        resetBackend();
      }
    }
    if (slot && !logged) {
      finish(Status.CANCELLED);
      // The client reset it (a lost connection closes every call: not counted).
      const reset = connection && !connection.destroyed && !connection.closed;
      if (reset && ctx.limits.misbehaved(connection, slot.cls, peer)) {
        endAbusive(connection, remote, opts.log);
      }
    }
    releaseIfDone();
  });

  if (headers[":method"] !== "POST" || !METHOD_PATH.test(method)) {
    return fail(Status.UNIMPLEMENTED, `relay: "${method.slice(0, 80)}" is not a gRPC method path`);
  }
  const session = stream.session;
  if (!session || stream.destroyed || stream.closed) return;
  try {
    device = await opts.devices.identify(session.socket as TLSSocket);
  } catch (e) {
    return fail(
      Status.UNAUTHENTICATED,
      `relay: device certificate refused: ${e instanceof PkiError ? e.message : "invalid"}`,
    );
  }
  if (!device && method !== CLAIM_METHOD) {
    return fail(Status.UNAUTHENTICATED, `relay: ${method} requires a device certificate`);
  }
  // A stream the client already reset costs nothing more.
  if (stream.destroyed || stream.closed) return;

  const cls = device ? "device" : "certless";
  peer = device ? `cert:${device.serial}` : addressKey(session.socket?.remoteAddress);
  const admitted = ctx.limits.admit(cls, session, peer);
  if (typeof admitted === "string") {
    // Refused alone: the connection and its other calls go on, unless the
    // peer was calmed or keeps calling past its limits. Counted, not logged per call.
    stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    // A full relay (total-concurrent) is not the client's doing: not counted.
    const abusive = admitted === "peer-calm" ||
      (admitted !== "total-concurrent" && ctx.limits.misbehaved(session, cls, peer));
    if (abusive) {
      endAbusive(session, remote, opts.log);
    }
    return;
  }
  slot = admitted;
  if (device) {
    const serial = device.serial;
    untrack = ctx.calls.add(serial, () => {
      resetBackend();
      fail(Status.UNAUTHENTICATED, `relay: device certificate (serial ${serial}) has been revoked`);
    });
  }

  const cap = METHOD_CAPS[method];
  const upScan = new MessageScanner(
    Math.min(max, cap?.maxMessageBytes ?? max),
    cap?.maxMessages ?? Infinity,
  );
  let whole: Uint8Array | undefined;
  if (!device) {
    const r = await readWholeRequest(
      stream,
      upScan,
      opts.claimRequestTimeoutMs ?? CLAIM_REQUEST_TIMEOUT_MS,
    );
    if (r === "cancelled") return releaseIfDone();
    if (r === "timeout") {
      return fail(Status.DEADLINE_EXCEEDED, "relay: the request did not arrive in time");
    }
    if (r instanceof MessageTooLarge) return fail(Status.RESOURCE_EXHAUSTED, `relay: ${r.message}`);
    whole = r;
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

  let backendSession: http2.ClientHttp2Session;
  try {
    backendSession = await opts.backend.session(device ? "device" : "certless");
    if (stream.destroyed || stream.closed) return releaseIfDone();
    if (logged) return; // revoked while connecting
    req = backendSession.request(out);
    pacer = opts.backend.pacer(backendSession);
  } catch (e) {
    opts.log.warn("controller unreachable", { error: e });
    return fail(Status.UNAVAILABLE, "relay: the controller is unreachable; try again shortly");
  }
  const r = req;
  r.on("error", () => {}); // handled on "close"

  if (whole) {
    // The whole claim in one go; from here on it is the controller's to finish.
    sentWhole = true;
    r.end(whole);
  } else {
    // Client → controller, with the size cap and backpressure.
    stream.on("data", (chunk: Uint8Array) => {
      try {
        upScan.feed(chunk);
      } catch (e) {
        resetBackend();
        return fail(Status.RESOURCE_EXHAUSTED, `relay: ${(e as MessageTooLarge).message}`);
      }
      if (!r.write(chunk)) {
        stream.pause();
        r.once("drain", () => stream.resume());
      }
    });
    stream.on("end", () => r.end());
  }

  // Controller → client. Trailers wait for the last DATA write to flush:
  // ending the stream earlier can drop queued DATA on some HTTP/2 stacks.
  let lastWrite: Promise<void> = Promise.resolve();
  const downScan = new MessageScanner(max);
  r.on("response", (h) => {
    if (stream.destroyed || logged) return;
    const fwd = { ":status": Number(h[":status"] ?? 200), ...forwardableHeaders(h) };
    if (h["grpc-status"] !== undefined) {
      // Trailers-only response: the status travels in the headers.
      backendFinished = true;
      stream.respond(fwd, { endStream: true });
      finish(String(h["grpc-status"]));
      return;
    }
    stream.respond(fwd, { waitForTrailers: true });
  });
  r.on("data", (chunk: Uint8Array) => {
    if (logged || stream.destroyed || !stream.headersSent) return;
    try {
      downScan.feed(chunk);
    } catch (e) {
      resetBackend();
      return fail(Status.RESOURCE_EXHAUSTED, `relay: ${(e as MessageTooLarge).message}`);
    }
    let flushed!: () => void;
    lastWrite = new Promise((resolve) => (flushed = resolve));
    if (!stream.write(chunk, () => flushed())) {
      // Read no more from the controller until the client has taken this.
      r.pause();
      stream.once("drain", () => r.resume());
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
  r.on("trailers", (t) => {
    backendFinished = true;
    trailers = forwardableHeaders(t) as Record<string, string>;
    complete();
  });
  r.on("end", () => {
    ended = true;
    complete();
  });
  r.on("close", () => {
    releaseIfDone();
    if (logged || stream.destroyed) return;
    if (trailers && r.rstCode === http2.constants.NGHTTP2_NO_ERROR) return complete();
    fail(Status.UNAVAILABLE, "relay: the connection to the controller was lost during the call");
  });
}
